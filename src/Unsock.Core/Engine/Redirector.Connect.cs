using Unsock.Core.Addressing;
using Unsock.Core.ControlFiles;
using Unsock.Core.Filter;
using Unsock.Core.Policies;
using Sock = global::Interop.Socket;

namespace Unsock.Core.Engine;

internal sealed partial class Redirector
{
    private Outcome Connect(in SyscallRequest r)
    {
        var decided = DecideRedirect(r, RuleDirection.Connect, out int copy, out var endpoint, out var facts, out var rule);
        if (decided is { } outcome) return outcome;
        if (rule is null) return ConnectConverted(r, copy, endpoint, fastOpen: null);
        if (rule.Action is DestinationAction) return ConnectDestination(r, copy, endpoint, facts, rule);
        return ConnectRedirected(r, copy, endpoint, facts.Domain == Sock.AfInet6, facts.NonBlocking, rule, local: null, fastOpen: null);
    }

    /// <summary>
    /// Connects a fresh AF_UNIX socket to the rule's path for <paramref name="endpoint"/> and swaps it in.
    /// <paramref name="local"/> is the address a socket we swapped at bind keeps reporting; with
    /// <paramref name="fastOpen"/> the data is sent from the new socket and the answer is its byte count.
    /// Consumes <paramref name="copy"/>.
    /// </summary>
    private Outcome ConnectRedirected(in SyscallRequest r, int copy, InetEndpoint endpoint, bool ipv6, bool nonBlocking, PolicyRule rule,
        InetEndpoint? local, FastOpenSend? fastOpen)
    {
        int fd = (int)r.A0;
        int err;
        int dirFd = -1;
        bool keepCopy = false;
        string call = fastOpen is null ? "connect" : Syscalls.Name(r.Nr);
        try
        {
            using var identity = TargetIdentity.Assume(_target, r.Pid);
            if (identity.Errno != 0) return IdentityRefused(r, endpoint, rule.Index);
            string path = ResolvePath(rule, endpoint, RuleProtocol.Tcp);
            var peer = endpoint.InFamily(ipv6);
            var facts = new SocketFacts(Sock.AfInet, Sock.SockStream, nonBlocking);

            err = TakeSpareUnixSocket(out int unix, out ulong unixInode);
            if (err != 0) return Outcome.Fail(err);
            CopySocketOptions(copy, unix);
            Span<byte> sa = stackalloc byte[UnixAddress.MaxSize];
            err = UnixSockAddr(path, sa, out int size, out dirFd, out string sunPath);
            if (err == 0) err = Sock.Connect(unix, sa[..size]);
            // For a target with its own root, what is at the path is the file found in that root (open at dirFd), not ours.
            string found = TargetIdentity.ForeignRoot >= 0 && dirFd >= 0 ? sunPath : path;
            // A fast-open send is answered with its byte count, which the waiting workers below do not
            // give: EOPNOTSUPP makes TFO clients fall back to connect, which takes those paths.
            if (fastOpen is not null && (err == Errors.EAGAIN || err == Errors.ECONNREFUSED && IsOtherThanSocket(found)))
            {
                Sock.Close(unix);
                _log.Decision(r.Pid, call, endpoint.ToString(), $"rule {rule.Index} -> {path}: MSG_FASTOPEN to a full backlog or a control file: EOPNOTSUPP (the program falls back to connect)");
                return Outcome.Fail(Errors.EOPNOTSUPP);
            }
            if (err == Errors.EAGAIN)
            {
                // A full backlog. TCP programs read EAGAIN as "out of ports", and an event loop must not be held
                // in connect: a non-blocking socket is refused at once, as TCP does with tcp_abort_on_overflow.
                if (facts.NonBlocking)
                {
                    Sock.Close(unix);
                    _log.Decision(r.Pid, "connect", endpoint.ToString(), $"rule {rule.Index} -> {path}: backlog full, ECONNREFUSED (non-blocking)");
                    return Outcome.Fail(Errors.ECONNREFUSED);
                }
                // A blocking one waits for room on the poller, as long as its SO_SNDTIMEO allows.
                keepCopy = true;
                return ParkConnectWhenRoom(r, fd, copy, unix, path, facts, peer, local, rule.Index);
            }
            // A control file is a regular file where the socket should be, and connecting to it is refused:
            // only then is it worth reading.
            if (err == Errors.ECONNREFUSED && TryControlFile(r, endpoint, found, rule.Index, out var control, out var failure))
            {
                Sock.Close(unix);
                if (control is null) return failure;
                keepCopy = true;
                return ConnectThroughControlFile(r, fd, copy, facts, peer, control, path, rule.Index);
            }
            if (err != 0)
            {
                Sock.Close(unix);
                int mapped = MapUnixConnectError(err);
                _log.Decision(r.Pid, call, endpoint.ToString(), $"rule {rule.Index} -> {path}: {Errors.Name(mapped)}");
                return Outcome.Fail(mapped);
            }
            if (_log.Enabled) _log.Decision(r.Pid, call, endpoint.ToString(), $"rule {rule.Index} -> {path}: connected");
            keepCopy = true;
            return Swap(r, fd, unix, copy, nonBlocking, new ConvertedSocket(unixInode, Sock.AfUnix, ipv6) { Peer = peer, Local = local },
                fastOpen is null ? null : swapped => SendFastOpenData(swapped, fastOpen), replacementFlags: Sock.ORdwr | Sock.ONonblock);
        }
        finally
        {
            if (!keepCopy) CloseCopy(copy);
            Sock.Close(dirFd);
        }
    }

    /// <summary>The new socket is in place; what the program asked to send goes out on it, as the SYN's data would.</summary>
    private static Outcome SendFastOpenData(Outcome swapped, FastOpenSend fastOpen)
    {
        long sent = Sock.Send(swapped.CloseAfterAnswer1, fastOpen.Data, Sock.MsgDontWait | Sock.MsgNoSignal | (fastOpen.Flags & ~Sock.MsgFastOpen & ~Sock.MsgDontWait));
        return swapped with { Value = Math.Max(sent, 0) };
    }

    /// <summary>True when something that is not a socket is at <paramref name="path"/> (a /proc/self/fd link: the file it leads to).</summary>
    private static bool IsOtherThanSocket(string path) =>
        path.StartsWith("/proc/self/fd/", StringComparison.Ordinal)
            ? global::Interop.FileSystem.Stat(path, out var found) == 0 && !found.IsSocket
            : File.Exists(path) && !(global::Interop.FileSystem.Lstat(path, out var st) == 0 && st.IsSocket);

    /// <summary>
    /// connect on a socket that is not AF_INET/AF_INET6: one we swapped in (restarted after a signal, bound
    /// through us and now connecting, a listener) or the program's own (AF_UNIX, netlink...). For the
    /// program's own, no address can make it a TCP/IP connection, so the kernel may read it again.
    /// Consumes <paramref name="copy"/>.
    /// </summary>
    private Outcome ConnectConverted(in SyscallRequest r, int copy, InetEndpoint endpoint, FastOpenSend? fastOpen)
    {
        bool handedOver = false;
        try
        {
            var entry = _registry.Find(Sock.Inode(copy));
            // Guarded, DecideOn carried the program's own sockets out already; the record went away meanwhile (the
            // socket was closed): no CONTINUE, the kernel would look the fd number up again.
            if (entry is null)
            {
                if (_attachment.TookOver && !Guarded && RecoverLostSwap(r, copy, endpoint, RuleDirection.Connect) is { } recovered) return recovered;
                return Guarded ? Outcome.Fail(Errors.EINTR) : Outcome.Continue;
            }
            // A fromUnix socket (the program's own AF_UNIX one): only unguarded policies get here with it.
            if (entry.UnixName is not null) return Outcome.Continue;
            if (entry.Peer is not null) return fastOpen is null ? RestartedConnect(entry) : Outcome.Fail(Errors.EISCONN);
            // An accepted connection, or a listener: connected or listening TCP sockets say EISCONN.
            if (entry.AcceptedFromListener || entry.Local is null) return Outcome.Fail(Errors.EISCONN);
            if (Sock.GetInt(copy, Sock.SolSocket, Sock.SoAcceptConn, out int listening) == 0 && listening != 0)
                return Outcome.Fail(Errors.EISCONN);
            // Bound through us and not connected yet (nc -s, curl --interface, bind(127.0.0.1:0) first): connect it
            // by the connect rules, keeping the bound address for getsockname.
            int length = fastOpen?.AddressLength ?? (int)(uint)r.A2;
            if (endpoint.Address is null || endpoint.IsIPv6 != entry.IPv6)
                return Outcome.Fail(length < (entry.IPv6 ? InetEndpoint.SockAddrIn6MinSize : InetEndpoint.SockAddrInSize) ? Errors.EINVAL : Errors.EAFNOSUPPORT);
            string call = fastOpen is null ? "connect" : Syscalls.Name(r.Nr);
            var rule = _policy.Match(RuleDirection.Connect, RuleProtocol.Tcp, endpoint.MatchAddress, endpoint.Port);
            switch (rule?.Action)
            {
                case RejectAction reject:
                    _log.Decision(r.Pid, call, endpoint.ToString(), $"rule {rule.Index} rejects with {reject.Name}");
                    return Outcome.Fail(reject.Errno);
                case RedirectAction:
                    bool nonBlocking = Sock.GetFileFlags(copy, out int flags) == 0 && (flags & Sock.ONonblock) != 0;
                    handedOver = true;
                    return ConnectRedirected(r, copy, endpoint, entry.IPv6, nonBlocking, rule, entry.Local, fastOpen);
                default:
                    // The bound socket is AF_UNIX now; it cannot reach a TCP/IP peer from that address.
                    _log.Decision(r.Pid, call, endpoint.ToString(), $"socket was bound to {entry.Local} through a rule, and no rule redirects this destination: EADDRNOTAVAIL");
                    return Outcome.Fail(Errors.EADDRNOTAVAIL);
            }
        }
        finally
        {
            if (!handedOver) CloseCopy(copy);
        }
    }

    /// <summary>True when <paramref name="path"/> is a control file (or a corrupt one: then <paramref name="failure"/> says so).</summary>
    private bool TryControlFile(in SyscallRequest r, InetEndpoint endpoint, string path, int ruleIndex, out ControlFile? control, out Outcome failure)
    {
        failure = default;
        try
        {
            return ControlFile.TryLoad(path, out control);
        }
        catch (ControlFileException e)
        {
            _log.Decision(r.Pid, "connect", endpoint.ToString(), $"rule {ruleIndex}: {e.Message}");
            control = null;
            failure = Outcome.Fail(Errors.ECONNREFUSED);
            return true;
        }
    }

    /// <summary>The program's identity could not be taken: never connect as ourselves instead.</summary>
    private Outcome IdentityRefused(in SyscallRequest r, InetEndpoint endpoint, int ruleIndex)
    {
        _log.Decision(r.Pid, "connect", endpoint.ToString(), $"rule {ruleIndex}: cannot take the program's identity: EACCES");
        return Outcome.Fail(Errors.EACCES);
    }

    /// <summary>A connect restarted after a signal, on a socket we already swapped: finish it, do not fail it.</summary>
    /// <summary>
    /// A call the previous supervisor had swapped our socket in for and exited (SIGKILL) before answering comes again
    /// (<see cref="CallJournal"/>), and the record of that socket died with it: the socket is ours when it is AF_UNIX and
    /// named as the policy's redirect names the endpoint (connect: its peer; bind: its own name). Then the call is
    /// answered as a restarted one, and the record made again. Null: not such a socket, left to the caller.
    /// </summary>
    private Outcome? RecoverLostSwap(in SyscallRequest r, int copy, InetEndpoint endpoint, RuleDirection direction)
    {
        if (endpoint.Address is null) return null;
        var rule = _policy.Match(direction, RuleProtocol.Tcp, endpoint.MatchAddress, endpoint.Port);
        if (rule?.Action is not RedirectAction) return null;
        string path = ResolvePath(rule, endpoint, RuleProtocol.Tcp);
        Span<byte> name = stackalloc byte[UnixAddress.MaxSize];
        int length = direction == RuleDirection.Connect ? Sock.GetPeerName(copy, name) : Sock.GetName(copy, name);
        if (length <= 0 || UnixAddress.DecodePath(name[..length]) != path) return null;
        var entry = direction == RuleDirection.Connect
            ? ClientEntry(copy, Sock.AfUnix, endpoint)
            : new ConvertedSocket(Sock.Inode(copy), Sock.AfUnix, endpoint.IsIPv6) { Local = endpoint };
        _registry.Add(entry);
        _log.Decision(r.Pid, Syscalls.Name(r.Nr), endpoint.ToString(),
            $"rule {rule.Index} -> {path}: swapped in by the previous supervisor, which ended before answering; answered now");
        return Outcome.Succeed(0, entry);
    }

    private static Outcome RestartedConnect(ConvertedSocket entry)
    {
        if (entry.Answered) return Outcome.Fail(Errors.EISCONN);
        return Outcome.Succeed(0, entry);
    }

    /// <summary>
    /// Carries a decided bind/connect out on our copy of the program's socket (pidfd_getfd: the same open
    /// file), with the address as we read it: the kernel never reads the program's memory again for a
    /// decision that mattered. Consumes <paramref name="copy"/>.
    /// </summary>
    private Outcome CarryOut(in SyscallRequest r, RuleDirection direction, int copy, ReadOnlySpan<byte> sockaddr, SocketFacts facts,
        InetEndpoint? endpoint, FastOpenSend? fastOpen)
    {
        // Still the task we copied the fd from (a tid reused meanwhile would have us act on another's socket).
        if (!_listener.IsValid(r.Id)) return Closing(copy, Outcome.Answered);
        if (direction == RuleDirection.Bind)
        {
            try
            {
                // We bind as root: a port below ip_unprivileged_port_start needs the program's own CAP_NET_BIND_SERVICE.
                if (endpoint is { Port: > 0 } e && e.Port < UnprivilegedPortStart.Value && !HasBindService(r.Pid))
                    return Outcome.Fail(Errors.EACCES);
                int err = Sock.Bind(copy, sockaddr);
                return err == 0 ? Outcome.Succeed() : Outcome.Fail(err);
            }
            finally { CloseCopy(copy); }
        }
        Func<int, Outcome> afterConnect = fastOpen is null ? ConnectAnswer : err => SendAfterConnect(copy, fastOpen, err);
        return ConnectOnCopy(r, copy, sockaddr.ToArray(), facts, afterConnect);
    }

    private static Outcome ConnectAnswer(int err) => err == 0 ? Outcome.Succeed() : Outcome.Fail(err);

    /// <summary>A fast-open send allowed as made: once connected, the data goes out on the program's socket.</summary>
    private static Outcome SendAfterConnect(int copy, FastOpenSend fastOpen, int err)
    {
        if (err != 0) return Outcome.Fail(err);
        long sent = Sock.Send(copy, fastOpen.Data, Sock.MsgDontWait | Sock.MsgNoSignal | (fastOpen.Flags & ~Sock.MsgFastOpen & ~Sock.MsgDontWait));
        return sent >= 0 ? Outcome.Succeed(sent) : Outcome.Fail((int)-sent);
    }

    private static readonly Lazy<int> UnprivilegedPortStart = new(() =>
    {
        try { return int.Parse(File.ReadAllText("/proc/sys/net/ipv4/ip_unprivileged_port_start").Trim()); }
        catch (Exception e) when (e is IOException or FormatException or UnauthorizedAccessException) { return 1024; }
    });

    /// <summary>CAP_NET_BIND_SERVICE (10) in the thread's effective set; false when it cannot be read.</summary>
    private static bool HasBindService(int tid) =>
        TargetProcess.ReadStatus(tid, "CapEff:") is [{ } hex] && (Convert.ToUInt64(hex, 16) & (1UL << 10)) != 0;

    /// <summary>
    /// connect on our copy without ever blocking this thread: O_NONBLOCK is set on the shared open file just
    /// around the call (the program's thread is inside this very call meanwhile), so the kernel keeps TCP's
    /// own states (EINPROGRESS, EALREADY, EISCONN, the first connect after completion answering 0). A
    /// blocking program socket then waits on the poller. Consumes <paramref name="copy"/>.
    /// </summary>
    private Outcome ConnectOnCopy(in SyscallRequest r, int copy, byte[] sockaddr, SocketFacts facts, Func<int, Outcome> afterConnect)
    {
        bool keep = false;
        try
        {
            int err = ConnectNonBlocking(copy, sockaddr, facts.FileFlags);
            bool pending = err is Errors.EINPROGRESS or Errors.EALREADY;
            if (!pending) return afterConnect(err);
            if (facts.NonBlocking) return Outcome.Fail(err);
            keep = true;
            return Park(new ConnectOnCopyWait(_attachment, r, copy, sockaddr, afterConnect, DeadlineOf(copy, Sock.SoSndTimeo)), Errors.ETIMEDOUT);
        }
        finally
        {
            if (!keep) CloseCopy(copy);
        }
    }

    internal static int ConnectNonBlocking(int copy, byte[] sockaddr, int fileFlags)
    {
        if ((fileFlags & Sock.ONonblock) != 0) return Sock.Connect(copy, sockaddr);
        int err = Sock.SetFileFlags(copy, fileFlags | Sock.ONonblock);
        if (err != 0) return err;
        err = Sock.Connect(copy, sockaddr);
        Sock.SetFileFlags(copy, fileFlags);
        return err;
    }

    /// <summary>The record of a connected socket we are about to swap in.</summary>
    private static ConvertedSocket ClientEntry(int fd, int family, InetEndpoint peer) =>
        new(Sock.Inode(fd), family, peer.IsIPv6) { Peer = peer };

    private static int MapUnixConnectError(int err) => err switch
    {
        Errors.ENOENT or Errors.ENOTDIR or Errors.ECONNREFUSED or 91 /* EPROTOTYPE */ => Errors.ECONNREFUSED,
        Errors.EACCES or Errors.EPERM => Errors.EACCES,
        _ => err,
    };

    /// <summary>Applies a control file's socket parameters; 0 or the first errno.</summary>
    private static int ApplyParameters(ControlFile control, int sock)
    {
        foreach (var p in control.Parameters)
        {
            int err = p.TryApplyTo(sock);
            if (err != 0) return err;
        }
        return 0;
    }
}
