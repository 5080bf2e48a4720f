using System.Buffers.Binary;
using System.Net;
using Unsock.Core.Addressing;
using Unsock.Core.Filter;
using Unsock.Core.Policies;
using Sock = global::Interop.Socket;

namespace Unsock.Core.Engine;

internal sealed partial class Redirector
{
    /// <summary>sizeof(struct sockaddr_storage): the kernel refuses longer addresses (EINVAL).</summary>
    private const int MaxSockAddrSize = 128;

    /// <summary>
    /// True when the policy can refuse something. Then the kernel must never read a sockaddr again for a
    /// decision: CONTINUE would let a second thread flip the address between our read and the kernel's.
    /// </summary>
    private bool Guarded => _policy.HasRejectRules || _policy.BlockInet || _policy.BlockInet6;

    /// <summary>
    /// The front that bind and connect share: read the sockaddr once, match the policy, look at the
    /// program's socket. Returns the outcome when the call is decided here (not ours, rejected, carried out
    /// on our copy, left as UDP); otherwise null, with our copy of the socket (the caller closes it) and the
    /// redirecting rule, or a null rule when the socket is no longer AF_INET/AF_INET6 (a restarted call on a
    /// swapped socket, or a program's own non-IP socket).
    /// </summary>
    private Outcome? DecideRedirect(in SyscallRequest r, RuleDirection direction, out int copy, out InetEndpoint endpoint,
        out SocketFacts facts, out PolicyRule? rule)
    {
        copy = -1;
        facts = default;
        rule = null;
        endpoint = default;
        // addrlen is an int register, never read again from memory: a length the kernel refuses (or 0, no
        // address at all) cannot lead anywhere whatever the memory holds, so the kernel may answer it.
        int length = (int)(uint)r.A2;
        bool guarded = Guarded;
        if (length < 0 || length > MaxSockAddrSize) return guarded ? BadAddressLength(r, direction) : Outcome.Continue;
        // No address: nothing to flip, but the fd can still be swapped under a CONTINUE; guarded, we carry it out.
        if (length == 0 && !guarded) return Outcome.Continue;
        Span<byte> sa = stackalloc byte[MaxSockAddrSize];
        sa = sa[..length];
        if (length > 0 && TargetProcess.ReadMemory(r.Pid, r.A1, sa) != 0) return UnreadableAddress(r, direction);
        if (_policy.HasUnixMatches && DecideFromUnix(r, direction, sa) is { } fromUnix) return fromUnix;
        return DecideOn(r, direction, sa, fastOpen: null, out copy, out endpoint, out facts, out rule);
    }

    /// <summary>
    /// Decides on <paramref name="sa"/>, the sockaddr as we read it once. <paramref name="fastOpen"/> is the
    /// data of a sendto/sendmsg with MSG_FASTOPEN, which connects like connect and then sends it.
    /// </summary>
    private Outcome? DecideOn(in SyscallRequest r, RuleDirection direction, ReadOnlySpan<byte> sa, FastOpenSend? fastOpen,
        out int copy, out InetEndpoint endpoint, out SocketFacts facts, out PolicyRule? rule)
    {
        copy = -1;
        facts = default;
        rule = null;
        bool decoded = InetEndpoint.TryDecode(sa, out endpoint);
        bool guarded = Guarded;
        if (!guarded && !decoded) return Outcome.Continue; // nothing can be refused: nothing to bypass
        PolicyRule? tcpRule = null, udpRule = null;
        if (decoded)
        {
            var address = endpoint.MatchAddress;
            tcpRule = _policy.Match(direction, RuleProtocol.Tcp, address, endpoint.Port);
            udpRule = _policy.Match(direction, RuleProtocol.Udp, address, endpoint.Port);
            if (!guarded && tcpRule is null && udpRule is null)
            {
                if (_log.Enabled) _log.Decision(r.Pid, Syscalls.Name(r.Nr), endpoint.ToString(), "no rule matches: left to the kernel");
                return Outcome.Continue;
            }
        }
        if (!_listener.IsValid(r.Id)) return Outcome.Answered;

        int err = _target.CopyFd(r.Pid, (int)r.A0, out copy);
        if (err != 0) return Outcome.Fail(err);
        // The fd's flags from its fdinfo, which the swap needs anyway (FD_CLOEXEC): no F_GETFL of our own.
        err = ReadFacts(copy, out facts, tcpFirst: true, _target.TryReadFdFlags(r.Pid, (int)r.A0, out int fdinfoFlags) ? fdinfoFlags : -1);
        if (err == Errors.ENOTSOCK || err == Errors.ENOPROTOOPT) return Closing(copy, Outcome.Fail(Errors.ENOTSOCK));
        if (err != 0) return Closing(copy, Outcome.Fail(err));
        // A socket that is not AF_INET/AF_INET6 (the program's own AF_UNIX, netlink..., or one we swapped in)
        // never makes a TCP/IP connection, whatever the address says. Unguarded, the caller decides on the socket
        // alone (CONTINUE for the program's own). Guarded, a CONTINUE would let the kernel look the fd number up
        // again, after a second thread dup2()ed a TCP socket onto it: the call is carried out on our copy instead,
        // except on sockets of ours that the callers finish themselves (restarts, connects of sockets bound through us).
        if (facts.Domain is not (Sock.AfInet or Sock.AfInet6))
        {
            // A connect on a datagram socket we swapped in (UDP may connect again, or elsewhere): Redirector.Datagram.cs.
            if (facts.Type == Sock.SockDgram && direction == RuleDirection.Connect && fastOpen is null &&
                ConnectConvertedDatagram(r, copy, sa, decoded ? endpoint : null) is { } converted)
                return converted;
            if (!guarded) return null;
            var entry = _registry.Find(Sock.Inode(copy));
            bool callerFinishes = entry is not null && entry.UnixName is null && (direction == RuleDirection.Connect || entry.Local is not null);
            return callerFinishes ? null : CarryOutOnOwnSocket(r, direction, copy, sa, facts, fastOpen);
        }
        string call = Syscalls.Name(r.Nr);

        // Read the address as the kernel will for this socket's family; what it would refuse, it refuses
        // from our copy of the bytes (EINVAL, EAFNOSUPPORT), and an AF_UNSPEC connect only disconnects.
        if (!KernelReadsAs(facts.Domain, direction, sa, ref endpoint, ref decoded, ref tcpRule, ref udpRule))
            return guarded ? CarryOut(r, direction, copy, sa, facts, endpoint: null, fastOpen) : Closing(copy, Outcome.Continue);

        var protocol = ProtocolOf(facts.Type);
        var matched = protocol == RuleProtocol.Tcp ? tcpRule : protocol == RuleProtocol.Udp ? udpRule : null;
        switch (matched?.Action)
        {
            case null:
            case AllowAction:
                if (!guarded)
                {
                    if (_log.Enabled) _log.Decision(r.Pid, call, endpoint.ToString(), matched is null ? "no rule matches this socket's protocol: left to the kernel" : $"rule {matched.Index} allows: left to the kernel");
                    return Closing(copy, Outcome.Continue);
                }
                if (_log.Enabled) _log.Decision(r.Pid, call, endpoint.ToString(), matched is null ? "no rule: carried out as made" : $"rule {matched.Index} allows: carried out as made");
                return CarryOut(r, direction, copy, sa, facts, endpoint, fastOpen);
            case RejectAction reject:
                _log.Decision(r.Pid, call, endpoint.ToString(), $"rule {matched.Index} rejects with {reject.Name}");
                return Closing(copy, Outcome.Fail(reject.Errno));
        }
        if (protocol == RuleProtocol.Udp && fastOpen is null)
        {
            // UDP becomes an AF_UNIX datagram socket: connect here, bind by the caller as for TCP (Redirector.Datagram.cs).
            if (direction == RuleDirection.Connect) return ConnectDatagram(r, copy, endpoint, facts, matched!);
            if (!IsFresh(copy, direction, facts))
                return guarded ? CarryOut(r, direction, copy, sa, facts, endpoint, fastOpen) : Closing(copy, Outcome.Continue);
            rule = matched;
            return null;
        }
        if (protocol != RuleProtocol.Tcp)
        {
            _log.Decision(r.Pid, call, endpoint.ToString(), $"rule {matched!.Index} matches a socket that is neither TCP nor UDP: left as made");
            return guarded ? CarryOut(r, direction, copy, sa, facts, endpoint, fastOpen) : Closing(copy, Outcome.Continue);
        }
        // A TCP socket that is already bound (bind) or connecting/connected (connect) cannot be swapped:
        // the kernel's answer (EINVAL, EALREADY, EISCONN) comes from the socket itself.
        if (!IsFresh(copy, direction, facts))
            return guarded ? CarryOut(r, direction, copy, sa, facts, endpoint, fastOpen) : Closing(copy, Outcome.Continue);
        rule = matched;
        return null;
    }

    /// <summary>
    /// Decodes <paramref name="sa"/> the way the kernel does for a socket of <paramref name="domain"/>: false
    /// when the kernel will refuse it or it names no peer (AF_UNSPEC connect), so there is nothing to match.
    /// </summary>
    private bool KernelReadsAs(int domain, RuleDirection direction, ReadOnlySpan<byte> sa, ref InetEndpoint endpoint, ref bool decoded,
        ref PolicyRule? tcpRule, ref PolicyRule? udpRule)
    {
        if (sa.Length < 2) return false; // no family at all: the kernel refuses it (EINVAL)
        ushort family = BinaryPrimitives.ReadUInt16LittleEndian(sa);
        if (domain == Sock.AfInet6) return decoded && endpoint.IsIPv6; // tcp_v6_connect/inet6_bind: EINVAL or EAFNOSUPPORT
        if (decoded && !endpoint.IsIPv6) return true;
        // inet_bind accepts AF_UNSPEC with INADDR_ANY as AF_INET: match it as 0.0.0.0, as the kernel binds it.
        if (direction == RuleDirection.Bind && family == 0 && sa.Length >= InetEndpoint.SockAddrInSize &&
            BinaryPrimitives.ReadUInt32LittleEndian(sa[4..]) == 0)
        {
            endpoint = new InetEndpoint(IPAddress.Any, BinaryPrimitives.ReadUInt16BigEndian(sa[2..]));
            decoded = true;
            tcpRule = _policy.Match(direction, RuleProtocol.Tcp, endpoint.Address, endpoint.Port);
            udpRule = _policy.Match(direction, RuleProtocol.Udp, endpoint.Address, endpoint.Port);
            return true;
        }
        return false;
    }

    /// <summary>
    /// An address length the kernel refuses, whatever the fd is now: answered here (a CONTINUE would be
    /// harmless, but none is given under a guarded policy). connect checks the length before the socket
    /// (EBADF, EINVAL), bind after it (EBADF, ENOTSOCK, EINVAL).
    /// </summary>
    private Outcome BadAddressLength(in SyscallRequest r, RuleDirection direction)
    {
        int err = _target.CopyFd(r.Pid, (int)r.A0, out int copy);
        if (err != 0) return Outcome.Fail(err);
        bool socket = Sock.GetInt(copy, Sock.SolSocket, Sock.SoType, out _) == 0;
        CloseCopy(copy);
        return Outcome.Fail(socket || direction == RuleDirection.Connect ? Errors.EINVAL : Errors.ENOTSOCK);
    }

    /// <summary>True when a TCP socket can still take its first bind (no port yet) or connect (closed state).</summary>
    private static bool IsFresh(int copy, RuleDirection direction, in SocketFacts facts)
    {
        if (direction == RuleDirection.Bind)
        {
            Span<byte> buf = stackalloc byte[InetEndpoint.SockAddrIn6Size];
            int len = Sock.GetName(copy, buf);
            return len < 4 || BinaryPrimitives.ReadUInt16BigEndian(buf[2..]) == 0;
        }
        // tcp_info starts with tcpi_state (read with the facts); TCP_CLOSE (7) is the only state a connect may start from.
        return facts.TcpState < 0 || facts.TcpState == 7;
    }

    private Outcome Closing(int fd, Outcome outcome)
    {
        CloseCopy(fd);
        return outcome;
    }
}
