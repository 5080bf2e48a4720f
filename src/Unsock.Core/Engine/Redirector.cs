using Unsock.Core.Addressing;
using Unsock.Core.Filter;
using Unsock.Core.Policies;
using Native = global::Interop;
using Sock = global::Interop.Socket;

namespace Unsock.Core.Engine;

/// <summary>
/// Decides and carries out one trapped socket call: matches the policy, builds the replacement socket in
/// the supervisor, swaps it into the target, and answers the questions (getsockname, getsockopt...) that
/// would otherwise give the swap away. One instance per notification thread (its caches are its own);
/// slow work (a full backlog, a proxy handshake, a blocking accept) goes to worker threads.
/// </summary>
internal sealed partial class Redirector : IDisposable
{
    private readonly NotificationEngine _engine;
    private readonly TargetProcess _target;
    private readonly int _tcpDefaultSendBuffer, _tcpDefaultReceiveBuffer;
    private ListenerAttachment? _current;
    private long _nextPrune;
    private int _spareUnixSocket = -1;
    private ulong _spareUnixSocketInode;

    /// <param name="engine">The engine whose thread this handler serves on (each thread has its own handler and caches).</param>
    public Redirector(NotificationEngine engine)
    {
        _engine = engine;
        _target = new TargetProcess(engine.Options.MaxCachedFdsPerThread);
        _tcpDefaultSendBuffer = ReadSysctlSecond("/proc/sys/net/ipv4/tcp_wmem");
        _tcpDefaultReceiveBuffer = ReadSysctlSecond("/proc/sys/net/ipv4/tcp_rmem");
    }

    /// <summary>The attachment whose call this thread handles now: its policy, listener and registry are the ones below.</summary>
    public void Enter(ListenerAttachment attachment)
    {
        _current = attachment;
        _target.ForgetCallReads();
    }

    private ListenerAttachment _attachment => _current ?? throw new InvalidOperationException("no attachment entered");
    private Policy _policy => _attachment.Policy;
    private SeccompListener _listener => _attachment.Listener;
    private SocketRegistry _registry => _attachment.Registry;
    private EngineLog _log => _engine.Log;

    /// <summary>Closes an fd of ours that refers to a program's file, off this thread: see <see cref="CopyCloser"/>.</summary>
    private void CloseCopy(int fd) => CopyCloser.Close(_attachment, fd);

    /// <summary>A fresh AF_UNIX stream socket (non-blocking, close-on-exec) and its inode, made ahead of time when possible.</summary>
    private int TakeSpareUnixSocket(out int fd, out ulong inode)
    {
        fd = _spareUnixSocket;
        inode = _spareUnixSocketInode;
        _spareUnixSocket = -1;
        if (fd >= 0) return 0;
        int err = Sock.Create(Sock.AfUnix, Sock.SockStream | Sock.SockNonblock | Sock.SockCloexec, out fd);
        inode = err == 0 ? Sock.Inode(fd) : 0;
        return err;
    }

    /// <summary>Work that can wait until the target has its answer: the next connect's socket.</summary>
    public void AfterAnswer()
    {
        if (_spareUnixSocket >= 0 || _current is null || _registry.IsEmpty) return;
        if (Sock.Create(Sock.AfUnix, Sock.SockStream | Sock.SockNonblock | Sock.SockCloexec, out _spareUnixSocket) == 0)
            _spareUnixSocketInode = Sock.Inode(_spareUnixSocket);
    }

    public Outcome Handle(in SyscallRequest r)
    {
        if (Environment.TickCount64 >= _nextPrune)
        {
            _target.PruneExited();
            _nextPrune = Environment.TickCount64 + 1000;
        }
        if (r.Arch != AuditArch.X86_64) return Outcome.Fail(Errors.ENOSYS); // the filter already refuses these
        _target.BeginCall(r.Pid);
        return r.Nr switch
        {
            Syscalls.Connect => Connect(r),
            Syscalls.Bind => Bind(r),
            Syscalls.GetSockName => Name(r, peer: false),
            Syscalls.GetPeerName => Name(r, peer: true),
            Syscalls.GetSockOpt => GetSockOpt(r),
            Syscalls.SetSockOpt => SetSockOpt(r),
            Syscalls.Shutdown => Shutdown(r),
            Syscalls.Accept => Accept(r, flags: 0),
            Syscalls.Accept4 => Accept(r, flags: (int)r.A3),
            // Without datagram rules or UDP rejects the filter traps these only with MSG_FASTOPEN: a connect in disguise.
            Syscalls.SendTo or Syscalls.SendMsg or Syscalls.SendMmsg => FilterPlan.TrapsDatagramSends(_policy) ? DatagramSend(r) : FastOpen(r),
            Syscalls.RecvFrom or Syscalls.RecvMsg or Syscalls.RecvMmsg => DatagramReceive(r),
            Syscalls.Chroot or Syscalls.PivotRoot or Syscalls.SetNs or Syscalls.Unshare => RootMayChange(r),
            _ => Outcome.Continue,
        };
    }

    /// <summary>A change of root or mount namespace, about to run: what we remember of targets' trees is forgotten first.</summary>
    private Outcome RootMayChange(in SyscallRequest r)
    {
        TargetIdentity.RootMayChange(r.Pid, r.Nr);
        if (_log.Enabled) _log.Decision(r.Pid, Syscalls.Name(r.Nr), "", "may change the program's root or mount namespace: its socket paths are looked up in its tree again");
        return Outcome.Continue;
    }

    /// <summary>
    /// The program passed a sockaddr we cannot read. Never CONTINUE here (the kernel would read it again,
    /// perhaps readable by then, past a reject rule): answer what the kernel would. connect copies the
    /// address before it looks at the file (EBADF, then EFAULT); bind looks at the socket first (EBADF,
    /// ENOTSOCK, then EFAULT).
    /// </summary>
    private Outcome UnreadableAddress(in SyscallRequest r, RuleDirection direction)
    {
        int err = _target.CopyFd(r.Pid, (int)r.A0, out int copy);
        if (err != 0) return Outcome.Fail(err);
        bool socket = Sock.GetInt(copy, Sock.SolSocket, Sock.SoType, out _) == 0;
        CloseCopy(copy);
        return Outcome.Fail(socket || direction == RuleDirection.Connect ? Errors.EFAULT : Errors.ENOTSOCK);
    }

    /// <summary>
    /// What we looked at on the program's socket; <paramref name="FileFlags"/> is its F_GETFL, <paramref name="TcpState"/>
    /// its tcpi_state (-1 when it is not TCP).
    /// </summary>
    private readonly record struct SocketFacts(int Domain, int Type, bool NonBlocking, int FileFlags = 0, int TcpState = -1);

    /// <param name="tcpFirst">
    /// Asks an AF_INET/AF_INET6 socket for TCP_INFO first: one that answers is a TCP stream, and one getsockopt tells its
    /// type and its state (a connect may only start from TCP_CLOSE), where SO_TYPE and then TCP_INFO took two on every
    /// connect. For connect and bind, mostly TCP; a UDP socket then costs one getsockopt more.
    /// </param>
    /// <param name="fdinfoFlags">The flags of the program's fd from its fdinfo when read already (F_GETFL's, plus O_CLOEXEC), else -1.</param>
    private static int ReadFacts(int fd, out SocketFacts facts, bool tcpFirst = false, int fdinfoFlags = -1)
    {
        facts = default;
        int err = Sock.GetInt(fd, Sock.SolSocket, Sock.SoDomain, out int domain);
        if (err != 0) return err;
        int type = 0, tcpState = -1;
        if (tcpFirst && domain is Sock.AfInet or Sock.AfInet6)
        {
            Span<byte> state = stackalloc byte[1];
            if (Sock.GetRaw(fd, Sock.SolTcp, TcpInfo, state) == 1)
            {
                type = Sock.SockStream;
                tcpState = state[0];
            }
        }
        if (tcpState < 0)
        {
            err = Sock.GetInt(fd, Sock.SolSocket, Sock.SoType, out type);
            if (err != 0) return err;
        }
        int flags = fdinfoFlags & ~TargetProcess.CloseOnExec;
        if (fdinfoFlags < 0)
        {
            err = Sock.GetFileFlags(fd, out flags);
            if (err != 0) return err;
        }
        facts = new(domain, type & 0xF, (flags & Sock.ONonblock) != 0, flags, tcpState);
        return 0;
    }

    private const int SoOobInline = 10, SoPriority = 12, SoRcvLowat = 18;

    /// <summary>
    /// Copies what the program set on its TCP socket that also means something on the new one. Timeouts,
    /// SO_LINGER and SO_KEEPALIVE are read every time (programs set them on every connection, so they are not
    /// trapped); the others only when the program set them (<see cref="OptionMarks"/>).
    /// </summary>
    private void CopySocketOptions(int from, int to)
    {
        Span<byte> buf = stackalloc byte[16];
        foreach (int opt in (ReadOnlySpan<int>)[Sock.SoRcvTimeo, Sock.SoSndTimeo, Sock.SoLinger])
        {
            int len = Sock.GetRaw(from, Sock.SolSocket, opt, buf);
            if (len > 0 && buf[..len].ContainsAnyExcept((byte)0)) Sock.SetRaw(to, Sock.SolSocket, opt, buf[..len]);
        }
        if (Sock.GetInt(from, Sock.SolSocket, Sock.SoKeepAlive, out int keepAlive) == 0 && keepAlive != 0)
            Sock.SetInt(to, Sock.SolSocket, Sock.SoKeepAlive, 1);
        if (OptionMarks.Shared.IsEmpty) return;
        int marked = OptionMarks.Shared.Take(Sock.Inode(from));
        if (marked == 0) return;
        bool unknown = marked == OptionMarks.Unknown;
        // Options that mean the same on a Unix socket, copied when the program moved them off their defaults.
        foreach (var (opt, fresh) in (ReadOnlySpan<(int, int)>)[(SoOobInline, 0), (SoPriority, 0), (SoRcvLowat, 1)])
            if ((marked & OptionMarks.BitOf(opt)) != 0 && Sock.GetInt(from, Sock.SolSocket, opt, out int v) == 0 && v != fresh)
                Sock.SetInt(to, Sock.SolSocket, opt, v);
        // Buffer sizes only when the program chose them: TCP's defaults would shrink a Unix socket's. The kernel
        // stores twice what was asked; when marks were lost, one equal to TCP's default is taken as never set.
        if ((marked & (OptionMarks.BitOf(Sock.SoSndBuf) | OptionMarks.BitOf(SoSndBufForce))) != 0
            && Sock.GetInt(from, Sock.SolSocket, Sock.SoSndBuf, out int snd) == 0 && (!unknown || snd != _tcpDefaultSendBuffer))
            Sock.SetInt(to, Sock.SolSocket, Sock.SoSndBuf, snd / 2);
        if ((marked & (OptionMarks.BitOf(Sock.SoRcvBuf) | OptionMarks.BitOf(SoRcvBufForce))) != 0
            && Sock.GetInt(from, Sock.SolSocket, Sock.SoRcvBuf, out int rcv) == 0 && (!unknown || rcv != _tcpDefaultReceiveBuffer))
            Sock.SetInt(to, Sock.SolSocket, Sock.SoRcvBuf, rcv / 2);
    }

    private const int SoSndBufForce = 32, SoRcvBufForce = 33;

    /// <summary>
    /// Puts <paramref name="replacement"/> where the target's fd was, with what lives on the open file (status
    /// flags such as O_NONBLOCK and O_ASYNC, the F_SETOWN owner, the F_SETSIG signal) and FD_CLOEXEC, and
    /// records it. Consumes both fds (closed once the answer is out).
    /// </summary>
    /// <param name="finish">Applied to the successful outcome right before it is answered (after the epoll move).</param>
    /// <param name="replacementFlags">The replacement's status flags as made (F_GETFL), or -1 when not known: F_SETFL only when they differ.</param>
    /// <summary>Tests only: called once our socket is in the program and the call not yet answered (a supervisor killed right then).</summary>
    internal static Action<TargetContext, SyscallRequest>? AfterReplaceForTests;

    private Outcome Swap(in SyscallRequest r, int targetFd, int replacement, int oldCopy, bool nonBlocking, ConvertedSocket entry,
        Func<Outcome, Outcome>? finish = null, int replacementFlags = -1)
    {
        // The program may have closed the fd and opened another file at its number while we worked (Java
        // closes a socket to cancel its connect): never replace a file other than the one we looked at.
        int err = StillSameFile(r.Pid, targetFd, oldCopy);
        // One read of the target's fdinfo tells both its file's status flags and its FD_CLOEXEC (checked: same file).
        int fdFlags = 0;
        bool known = err == 0 && _target.TryReadFdFlags(r.Pid, targetFd, out fdFlags);
        if (err == 0) err = CarryOverFileState(r.Pid, oldCopy, replacement, nonBlocking, known ? fdFlags : -1, replacementFlags);
        if (err == 0 && EpollTransfer.RefusesSwaps(EpollTransfer.For(_attachment)) is { } refused)
        {
            // A connect fails as one that timed out, a bind as one short of resources: both handled by TCP programs.
            err = r.Nr == Syscalls.Bind ? Errors.ENOBUFS : Errors.ETIMEDOUT;
            _log.Decision(r.Pid, Syscalls.Name(r.Nr), $"fd {targetFd}", $"{Errors.Name(err)}: {refused}");
        }
        else if (err == 0)
        {
            bool cloexec = known && (fdFlags & Sock.OCloexec) != 0;
            _registry.Add(entry);
            _engine.BeforeWaitingOnTarget();
            err = _listener.ReplaceFd(r.Id, replacement, targetFd, cloexec);
            if (err == 0) AfterReplaceForTests?.Invoke(_attachment.Target, r);
            if (err == 0) return AnswerAfterEpollMove(r, targetFd, oldCopy, replacement, Outcome.AfterSwap(entry, replacement, oldCopy), finish);
            // The target was interrupted or killed before the fd went in: nothing changed on its side.
        }
        else if (err is Errors.EBADF or Errors.ENOTSOCK)
        {
            _log.Decision(r.Pid, Syscalls.Name(r.Nr), $"fd {targetFd}", $"the fd was closed or reopened during the call: {Errors.Name(err)}, nothing replaced");
        }
        // Nothing went in: the socket file bound for it would be left to nobody.
        if (entry.File is { } f) _registry.RemoveFile(f);
        Sock.Close(replacement);
        CloseCopy(oldCopy);
        return err == Errors.ENOENT ? Outcome.Answered : Outcome.Fail(err);
    }

    /// <summary>
    /// 0 when the target's <paramref name="targetFd"/> is still the open file <paramref name="oldCopy"/> copies;
    /// else what the kernel says for the fd now: EBADF (closed, or another socket), ENOTSOCK (another file).
    /// The ADDFD that follows is dup2-like, so this narrows the program's window to microseconds.
    /// </summary>
    private static int StillSameFile(int tid, int targetFd, int oldCopy)
    {
        int same = Native.FileOwner.SameFile(oldCopy, tid, targetFd);
        if (same == 0) return 0;
        if (same == -Errors.EBADF) return Errors.EBADF;
        int err = Native.FileOwner.Stat($"/proc/{tid}/fd/{targetFd}", out uint mode, out ulong inode);
        if (err != 0) return Errors.EBADF;
        bool isSocket = (mode & Native.FileSystem.TypeMask) == Native.FileSystem.TypeSocket;
        // Without kcmp (no CONFIG_KCMP) the socket inode tells the same: a socket has one open file per fd copy.
        if (same < 0 && isSocket && inode == Sock.Inode(oldCopy)) return 0;
        return isSocket ? Errors.EBADF : Errors.ENOTSOCK;
    }

    /// <summary>
    /// Copies the open file's status flags (<paramref name="fileFlags"/> from fdinfo, or -1 to ask F_GETFL), owner and
    /// signal from the program's old socket to the new one.
    /// </summary>
    private int CarryOverFileState(int tid, int oldCopy, int replacement, bool nonBlocking, int fileFlags, int replacementFlags)
    {
        int flags = fileFlags >= 0 ? fileFlags & Native.FileOwner.SettableStatusFlags
            : Sock.GetFileFlags(oldCopy, out int old) == 0 ? old & Native.FileOwner.SettableStatusFlags
            : nonBlocking ? Sock.ONonblock : 0;
        if (Native.FileOwner.GetOwner(oldCopy, out int ownerType, out int owner) == 0 && owner != 0)
        {
            // We set it as root: a root-owned F_SETOWN may signal anyone, the program's may not. Only owners the
            // program may signal anyway are carried over.
            if (MaySignal(tid, ownerType, owner)) Native.FileOwner.SetOwner(replacement, ownerType, owner);
            else _log.Message($"pid {tid}: F_SETOWN owner {owner} (type {ownerType}) not carried over to the swapped socket: not the program's own process");
        }
        if (owner != 0 || (flags & Native.FileOwner.OAsync) != 0)
        {
            int signal = Native.FileOwner.GetSignal(oldCopy);
            if (signal > 0) Native.FileOwner.SetSignal(replacement, signal);
        }
        // A socket's file flags are O_RDWR plus what we set: no F_GETFL, and no F_SETFL when they are already right.
        if ((Sock.ORdwr | flags) == replacementFlags) return 0;
        return Sock.SetFileFlags(replacement, Sock.ORdwr | flags);
    }

    /// <summary>True when <paramref name="tid"/> could signal the F_SETOWN owner itself: its own process or thread, or it is root.</summary>
    private static bool MaySignal(int tid, int ownerType, int owner)
    {
        if (TargetProcess.ReadStatus(tid, "Tgid:", "Uid:") is not [{ } tgidText, { } uids]) return false;
        var ids = uids.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
        if (ids.Length > 1 && (ids[0] == "0" || ids[1] == "0")) return true;
        return ownerType switch
        {
            Native.FileOwner.OwnerPid => owner.ToString() == tgidText,
            Native.FileOwner.OwnerTid => TargetProcess.ReadStatus(owner, "Tgid:") is [{ } ownerTgid] && ownerTgid == tgidText,
            _ => false,
        };
    }

    // The paths this thread resolved last: a program connects to the same few addresses over and over, and a new
    // string per call was most of what a connect allocated besides its record.
    private readonly (PolicyRule Rule, System.Net.IPAddress Address, int Port, RuleProtocol Protocol, string Path)?[] _paths = new (PolicyRule, System.Net.IPAddress, int, RuleProtocol, string)?[8];
    private int _nextPath;

    /// <summary><see cref="PolicyRule.ResolvePath"/> for a match of <paramref name="rule"/>, from this thread's last answers when it can.</summary>
    private string ResolvePath(PolicyRule rule, InetEndpoint endpoint, RuleProtocol protocol)
    {
        var address = endpoint.MatchAddress;
        foreach (var cached in _paths)
            if (cached is { } c && ReferenceEquals(c.Rule, rule) && c.Port == endpoint.Port && c.Protocol == protocol && c.Address.Equals(address))
                return c.Path;
        string path = rule.ResolvePath(address, endpoint.Port, protocol);
        _paths[_nextPath] = (rule, address, endpoint.Port, protocol, path);
        _nextPath = (_nextPath + 1) % _paths.Length;
        return path;
    }

    /// <summary>
    /// The sockaddr_un to connect or send to <paramref name="path"/>, through /proc/self/fd/DIRFD/NAME when it is
    /// longer than sun_path. For a target that sees another root or mount namespace
    /// (<see cref="TargetIdentity.ForeignRoot"/>) the whole path is resolved first in its root, as it would
    /// resolve it, and the address names the file found (/proc/self/fd/FD): a symlink there cannot lead
    /// to a socket of ours. On success the caller closes <paramref name="directoryFd"/> (-1 when none was
    /// needed); on failure nothing is left open.
    /// </summary>
    private static int UnixSockAddr(string path, Span<byte> sockaddr, out int size, out int directoryFd, out string sunPath)
    {
        directoryFd = -1;
        sunPath = path;
        int root = TargetIdentity.ForeignRoot;
        if (root >= 0)
        {
            size = 0;
            int failed = Native.FileSystem.OpenInRoot(root, path, directory: false, out directoryFd);
            if (failed != 0) return failed;
            sunPath = $"/proc/self/fd/{directoryFd}";
            if (UnixAddress.TryEncode(sunPath, sockaddr, out size)) return 0;
            Sock.Close(directoryFd);
            directoryFd = -1;
            return Errors.ENAMETOOLONG;
        }
        if (UnixAddress.TryEncode(path, sockaddr, out size)) return 0;
        string dir = Path.GetDirectoryName(path) ?? "/";
        int err = Native.FileSystem.OpenDirectoryPath(dir, out directoryFd);
        if (err != 0) return err;
        err = UnixSockAddrAt(directoryFd, path, Path.GetFileName(path), sockaddr, out size, out sunPath);
        if (err != 0)
        {
            Sock.Close(directoryFd);
            directoryFd = -1;
        }
        return err;
    }

    /// <summary>
    /// The sockaddr_un for entry <paramref name="name"/> of the open directory that <paramref name="path"/> names
    /// (always through the directory for a target with its own root: the path means something else to us).
    /// </summary>
    private static int UnixSockAddrAt(int directoryFd, string path, string name, Span<byte> sockaddr, out int size, out string sunPath)
    {
        sunPath = path;
        size = 0;
        if (TargetIdentity.ForeignRoot < 0 && UnixAddress.TryEncode(path, sockaddr, out size)) return 0;
        sunPath = $"/proc/self/fd/{directoryFd}/{name}";
        return UnixAddress.TryEncode(sunPath, sockaddr, out size) ? 0 : Errors.ENAMETOOLONG;
    }

    private static int ReadSysctlSecond(string path)
    {
        try
        {
            var parts = File.ReadAllText(path).Split((char[])['\t', ' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
            return parts.Length > 1 && int.TryParse(parts[1], out int v) ? v : -1;
        }
        catch (IOException) { return -1; }
    }

    private static RuleProtocol ProtocolOf(int type) =>
        type == Sock.SockStream ? RuleProtocol.Tcp : type == Sock.SockDgram ? RuleProtocol.Udp : RuleProtocol.Any;

    /// <summary>The address a converted peer is reported as, in the family of the program's socket.</summary>
    private InetEndpoint FakePeer(bool ipv6) => new InetEndpoint(_policy.FakeAddress, 0).InFamily(ipv6);

    public void Dispose()
    {
        Sock.Close(_spareUnixSocket);
        _peerDiag?.Dispose();
        _target.Dispose();
    }
}
