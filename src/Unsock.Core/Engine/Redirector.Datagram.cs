using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Runtime.CompilerServices;
using Unsock.Core.Addressing;
using Unsock.Core.Filter;
using Unsock.Core.Policies;
using Sock = global::Interop.Socket;

namespace Unsock.Core.Engine;

/// <summary>
/// UDP sockets that a unix/directory rule matches become AF_UNIX datagram sockets. bind goes through the
/// TCP path (a socket file, a datagram socket); connect and the first send to a redirected address swap in
/// a socket with an autobound (abstract) name, so that replies reach it. Sends that name an address and
/// receives that ask for one are trapped (see <see cref="FilterPlan"/>) and carried out here on our copy of
/// the socket: addresses are translated both ways, the data is read or written once, and a call that
/// would block waits on the poller.
/// </summary>
internal sealed partial class Redirector
{
    // What UDP carries at most; a larger datagram is EMSGSIZE, as UDP says.
    private const int MaxUdpPayload = 65535;
    private const int MaxMessages = 1024; // UIO_MAXIOV, also the kernel's cap on sendmmsg/recvmmsg's vlen
    private const int MmsgHdrSize = 64, MsgLenOffset = 56;
    private const int MaxControl = 20480; // net.core.optmem_max's default: longer control data is ENOBUFS
    private const int EnoBufs = 105, EMsgSizeErrno = 90;

    /// <summary>The largest datagram an AF_UNIX peer can send (twice wmem_max, the largest send buffer without privilege).</summary>
    private static readonly int MaxReceive = Math.Max(2 * ReadSysctlFirst("/proc/sys/net/core/wmem_max"), 2 * 212992);

    private static readonly ConditionalWeakTable<ConvertedSocket, DatagramState> DatagramStates = new();

    private DatagramPeers Peers => DatagramPeers.For(_registry);

    private static DatagramState StateOf(ConvertedSocket entry) => DatagramStates.GetValue(entry, _ => new DatagramState());

    // ---- connect and bind ----

    /// <summary>
    /// connect of a fresh UDP socket that a rule redirects: an autobound AF_UNIX datagram socket connected to the
    /// rule's path takes its place. Consumes <paramref name="copy"/>.
    /// </summary>
    private Outcome ConnectDatagram(in SyscallRequest r, int copy, InetEndpoint endpoint, SocketFacts facts, PolicyRule rule)
    {
        bool ipv6 = facts.Domain == Sock.AfInet6;
        string path = ResolvePath(rule, endpoint, RuleProtocol.Udp);
        int unix = -1;
        try
        {
            int err = NewAutoboundDatagram(copy, out unix, out string name);
            if (err != 0) return Outcome.Fail(err);
            Span<byte> sa = stackalloc byte[UnixAddress.MaxSize];
            err = ConnectAsTarget(r, unix, path, sa, out int size);
            if (err != 0)
            {
                int mapped = MapUnixConnectError(err);
                _log.Decision(r.Pid, "connect", endpoint.ToString(), $"rule {rule.Index} -> {path}: {Errors.Name(mapped)}");
                return Outcome.Fail(mapped);
            }
            var peer = endpoint.InFamily(ipv6);
            var entry = DatagramEntry(unix, ipv6, peer);
            if (DatagramPeers.NameKey(sa[..size]) is { } peerName) StateOf(entry).Sent(peerName, peer);
            if (_log.Enabled) _log.Decision(r.Pid, "connect", endpoint.ToString(), $"rule {rule.Index} -> {path}: datagram socket connected");
            var outcome = SwapDatagram(r, ref copy, ref unix, facts, entry, name);
            return outcome;
        }
        finally
        {
            Sock.Close(unix);
            CloseCopy(copy);
        }
    }

    /// <summary>
    /// connect on a datagram socket we swapped in: restarted after a signal, or connecting again (UDP may), or
    /// AF_UNSPEC, which dissolves the association. Null when the socket is not ours (<paramref name="copy"/> is
    /// then left open); otherwise consumes it.
    /// </summary>
    private Outcome? ConnectConvertedDatagram(in SyscallRequest r, int copy, ReadOnlySpan<byte> sa, InetEndpoint? endpoint)
    {
        var entry = _registry.Find(Sock.Inode(copy));
        if (entry is null) return null;
        try
        {
            if (endpoint is not { } to)
            {
                // The kernel reads our copy of the bytes: AF_UNSPEC disconnects, anything else it refuses.
                int err = Sock.Connect(copy, sa);
                if (err == 0) lock (entry) entry.Peer = null;
                return err == 0 ? Outcome.Succeed() : Outcome.Fail(err);
            }
            var peer = to.InFamily(entry.IPv6);
            if (!entry.Answered && PeerOf(entry) == peer) return Outcome.Succeed(0, entry); // restarted: already done
            if (to.IsIPv6 != entry.IPv6 && !entry.IPv6)
                return Outcome.Fail(sa.Length < InetEndpoint.SockAddrInSize ? Errors.EINVAL : Errors.EAFNOSUPPORT);
            var route = Route(r, "connect", to, isOurs: true);
            if (route.Kind == RouteKind.Refused) return Outcome.Fail(route.Errno);
            Span<byte> unixSa = stackalloc byte[UnixAddress.MaxSize];
            int connectErr;
            int size;
            if (route.Name is { } name)
            {
                size = DatagramPeers.EncodeName(name, unixSa);
                using var identity = TargetIdentity.Assume(_target, r.Pid);
                connectErr = identity.Errno != 0 ? Errors.EACCES : Sock.Connect(copy, unixSa[..size]);
            }
            else
            {
                connectErr = ConnectAsTarget(r, copy, route.Path!, unixSa, out size);
            }
            if (connectErr != 0) return Outcome.Fail(MapUnixConnectError(connectErr));
            lock (entry) entry.Peer = peer;
            if (DatagramPeers.NameKey(unixSa[..size]) is { } key) StateOf(entry).Sent(key, peer);
            return Outcome.Succeed();
        }
        finally { CloseCopy(copy); }
    }

    /// <summary>Connects <paramref name="socket"/> to <paramref name="path"/> with the program's identity; the sockaddr used stays in <paramref name="sa"/>.</summary>
    private int ConnectAsTarget(in SyscallRequest r, int socket, string path, Span<byte> sa, out int size)
    {
        using var identity = TargetIdentity.Assume(_target, r.Pid);
        size = 0;
        if (identity.Errno != 0) return Errors.EACCES; // never as ourselves instead
        int err = UnixSockAddr(path, sa, out size, out int dirFd, out _);
        if (err != 0) return err;
        err = Sock.Connect(socket, sa[..size]);
        Sock.Close(dirFd);
        return err;
    }

    /// <summary>A fresh AF_UNIX datagram socket carrying the program's options, autobound to an abstract name (its table key).</summary>
    private int NewAutoboundDatagram(int from, out int unix, out string name)
    {
        name = "";
        int err = Sock.Create(Sock.AfUnix, Sock.SockDgram | Sock.SockCloexec, out unix);
        if (err != 0) return err;
        CopySocketOptions(from, unix);
        // A sockaddr of the family alone: the kernel picks a free abstract name (autobind).
        err = Sock.Bind(unix, [1, 0]);
        Span<byte> bound = stackalloc byte[UnixAddress.MaxSize];
        int len = err == 0 ? Sock.GetName(unix, bound) : 0;
        if (err == 0 && DatagramPeers.NameKey(bound[..Math.Max(len, 0)]) is { } key)
        {
            name = key;
            return 0;
        }
        Sock.Close(unix);
        unix = -1;
        return err != 0 ? err : Errors.EIO;
    }

    /// <summary>The record of an autobound datagram socket: loopback and a port of its own, as a UDP socket's first send would get.</summary>
    private ConvertedSocket DatagramEntry(int unix, bool ipv6, InetEndpoint? peer)
    {
        var entry = new ConvertedSocket(Sock.Inode(unix), Sock.AfUnix, ipv6) { Peer = peer };
        bool mapped = peer is { } p && p.Address.IsIPv4MappedToIPv6;
        entry.Local = new InetEndpoint(Loopback(ipv6, mapped), Ports.PortFor(entry.Inode, entry));
        return entry;
    }

    /// <summary>
    /// Swaps <paramref name="unix"/> in for the program's UDP socket and records its name. Consumes
    /// <paramref name="copy"/> and <paramref name="unix"/> on failure; on success <paramref name="unix"/> stays
    /// open for the caller (sends go out on it) and <paramref name="copy"/> is closed.
    /// </summary>
    /// <param name="finish">Given: what the call's answer becomes once the swap is complete; <paramref name="unix"/> is
    /// then consumed too, and the outcome returned as it is.</param>
    private Outcome SwapDatagram(in SyscallRequest r, ref int copy, ref int unix, SocketFacts facts, ConvertedSocket entry, string name,
        Func<Outcome, Outcome>? finish = null)
    {
        // Recorded first: a peer may answer (and we report its sender) before this call's answer is out.
        Peers.Add(name, entry.Local!.Value, entry);
        var outcome = Swap(r, (int)r.A0, unix, copy, facts.NonBlocking, entry, finish);
        copy = -1;
        if (finish is not null)
        {
            unix = -1;
            return outcome;
        }
        if (outcome.Kind != OutcomeKind.Succeed)
        {
            unix = -1;
            return outcome;
        }
        CloseCopy(outcome.CloseAfterAnswer2);
        return outcome with { CloseAfterAnswer2 = -1, CloseAfterAnswer1 = -1 };
    }

    // ---- routing a datagram ----

    private enum RouteKind { Unix, Inet, Refused }

    /// <summary>Where a datagram to an IP address goes: an AF_UNIX name or path, the IP address itself, or nowhere (an errno).</summary>
    private readonly record struct DatagramRoute(RouteKind Kind, int Errno = 0, string? Name = null, string? Path = null);

    /// <summary>
    /// Decides where a datagram (or a connect) of a UDP socket to <paramref name="to"/> goes. A peer we reported
    /// (a client of a redirected server) is reached by its name first; then the rules decide, as for connect.
    /// </summary>
    private DatagramRoute Route(in SyscallRequest r, string call, InetEndpoint to, bool isOurs)
    {
        if (Peers.NameOf(to) is { } known) return new(RouteKind.Unix, Name: known);
        var rule = _policy.Match(RuleDirection.Connect, RuleProtocol.Udp, to.MatchAddress, to.Port);
        switch (rule?.Action)
        {
            case RejectAction reject:
                if (_log.Enabled) _log.Decision(r.Pid, call, to.ToString(), $"rule {rule.Index} rejects with {reject.Name}");
                return new(RouteKind.Refused, reject.Errno);
            case RedirectAction:
                return new(RouteKind.Unix, Path: ResolvePath(rule, to, RuleProtocol.Udp));
        }
        if (!isOurs) return new(RouteKind.Inet);
        // Our socket is AF_UNIX now: it cannot reach an IP peer.
        if (_log.Enabled) _log.Decision(r.Pid, call, to.ToString(), "datagram socket redirected by a rule, and no rule redirects this destination: EADDRNOTAVAIL");
        return new(RouteKind.Refused, Errors.EADDRNOTAVAIL);
    }

    /// <summary>
    /// Reads a destination sockaddr as a UDP socket of <paramref name="domain"/> does: an IPv4 socket takes
    /// AF_UNSPEC as AF_INET (udp_sendmsg). False when the kernel refuses it or it names no peer.
    /// </summary>
    private static bool TryReadDestination(int domain, ReadOnlySpan<byte> sa, out InetEndpoint to)
    {
        if (InetEndpoint.TryDecode(sa, out to)) return domain == Sock.AfInet6 || !to.IsIPv6;
        if (domain == Sock.AfInet && sa.Length >= InetEndpoint.SockAddrInSize && BinaryPrimitives.ReadUInt16LittleEndian(sa) == 0)
        {
            to = new InetEndpoint(new IPAddress(sa.Slice(4, 4)), BinaryPrimitives.ReadUInt16BigEndian(sa[2..]));
            return true;
        }
        return false;
    }

    // ---- sends ----

    /// <summary>What a send reads from the program: one buffer (sendto), or a msghdr's iovecs and control data.</summary>
    private readonly record struct Payload(ulong Data, long Length, ulong Iov, long IovCount, ulong Control, long ControlLength)
    {
        public static Payload Single(ulong data, long length) => new(data, length, 0, -1, 0, 0);
    }

    /// <summary>struct msghdr as the program laid it out.</summary>
    private readonly record struct MessageHeader(ulong Name, int NameLength, ulong Iov, long IovCount, ulong Control, long ControlLength)
    {
        public const int Size = 56;
        public Payload Payload => new(0, 0, Iov, IovCount, Control, ControlLength);

        public static int Read(int pid, ulong address, out MessageHeader header)
        {
            Span<byte> m = stackalloc byte[Size];
            header = default;
            if (TargetProcess.ReadMemory(pid, address, m) != 0) return Errors.EFAULT;
            header = new(BinaryPrimitives.ReadUInt64LittleEndian(m), BinaryPrimitives.ReadInt32LittleEndian(m[8..]),
                BinaryPrimitives.ReadUInt64LittleEndian(m[16..]), BinaryPrimitives.ReadInt64LittleEndian(m[24..]),
                BinaryPrimitives.ReadUInt64LittleEndian(m[32..]), BinaryPrimitives.ReadInt64LittleEndian(m[40..]));
            return 0;
        }
    }

    /// <summary>sendto/sendmsg/sendmmsg when the policy has datagram rules; a send that must wait is parked.</summary>
    private Outcome DatagramSend(in SyscallRequest r)
    {
        if (SendAttempt(r) is { } outcome) return outcome;
        // A blocking send to a full receiver: retried from the poller, within SO_SNDTIMEO.
        long deadline = long.MaxValue;
        if (_target.CopyFd(r.Pid, (int)r.A0, out int copy) == 0)
        {
            deadline = DeadlineOf(copy, Sock.SoSndTimeo);
            CloseCopy(copy);
        }
        return Park(new DatagramWait(_attachment, r, copy: -1, deadline), Errors.EAGAIN);
    }

    /// <summary>One try of a send; null when it would block and the program waits (the socket is blocking).</summary>
    private Outcome? SendAttempt(in SyscallRequest r)
    {
        int flags = (int)(r.Nr == Syscalls.SendMsg ? r.A2 : r.A3);
        int err = _target.CopyFd(r.Pid, (int)r.A0, out int copy);
        if (err != 0) return Outcome.Fail(err);
        int unix = -1;
        try
        {
            err = ReadFacts(copy, out var facts);
            if (err != 0) return Outcome.Fail(err is Errors.ENOTSOCK or Errors.ENOPROTOOPT ? Errors.ENOTSOCK : err);
            if (facts.Type == Sock.SockStream) return (flags & Sock.MsgFastOpen) != 0 ? FastOpen(r) : Outcome.Continue;
            bool inet = facts.Domain is Sock.AfInet or Sock.AfInet6;
            var entry = inet ? null : _registry.Find(Sock.Inode(copy));
            // Not UDP, and no socket of ours: nothing to translate, and no address that could reach IP.
            if (facts.Type != Sock.SockDgram || (!inet && entry is null)) return Outcome.Continue;
            var socket = new SendingSocket(copy, facts, entry);
            try
            {
                return r.Nr switch
                {
                    Syscalls.SendTo => SendToAttempt(r, ref socket, flags),
                    Syscalls.SendMsg => SendMsgAttempt(r, ref socket, flags),
                    _ => SendMmsgAttempt(r, ref socket, flags),
                };
            }
            finally
            {
                copy = socket.Copy;
                unix = socket.Unix;
            }
        }
        finally
        {
            CloseCopy(copy);
            Sock.Close(unix);
        }
    }

    /// <summary>The socket a send goes out on: our copy of the program's, or the AF_UNIX socket we swapped in for it.</summary>
    private record struct SendingSocket(int Copy, SocketFacts Facts, ConvertedSocket? Entry)
    {
        public int Unix = -1;
        public readonly int Fd => Unix >= 0 ? Unix : Copy;
    }

    private Outcome? SendToAttempt(in SyscallRequest r, ref SendingSocket socket, int flags)
    {
        ulong name = r.A4;
        int nameLength = (int)(uint)r.A5;
        // No address (a register, never read again): the connected peer, which connect decided.
        if (name == 0 || nameLength == 0) return Outcome.Continue;
        if (nameLength < 0 || nameLength > MaxSockAddrSize) return Outcome.Fail(Errors.EINVAL);
        Span<byte> sa = stackalloc byte[MaxSockAddrSize];
        sa = sa[..nameLength];
        if (TargetProcess.ReadMemory(r.Pid, name, sa) != 0) return Outcome.Fail(Errors.EFAULT);
        return SendMessage(r, ref socket, sa, Payload.Single(r.A1, (long)r.A2), flags, mustCarryOut: false);
    }

    private Outcome? SendMsgAttempt(in SyscallRequest r, ref SendingSocket socket, int flags)
    {
        if (MessageHeader.Read(r.Pid, r.A1, out var header) != 0) return Outcome.Fail(Errors.EFAULT);
        if (header.Name != 0 && header.NameLength != 0 && (header.NameLength < 0 || header.NameLength > MaxSockAddrSize))
            return Outcome.Fail(Errors.EINVAL);
        Span<byte> sa = stackalloc byte[MaxSockAddrSize];
        sa = header.Name == 0 ? default : sa[..header.NameLength];
        if (!sa.IsEmpty && TargetProcess.ReadMemory(r.Pid, header.Name, sa) != 0) return Outcome.Fail(Errors.EFAULT);
        return SendMessage(r, ref socket, sa, header.Payload, flags, mustCarryOut: false);
    }

    /// <summary>sendmmsg: each message decided on its own; a later message that cannot go ends the call with the count so far.</summary>
    private Outcome? SendMmsgAttempt(in SyscallRequest r, ref SendingSocket socket, int flags)
    {
        int count = (int)Math.Min((uint)r.A2, MaxMessages);
        if (count == 0) return Outcome.Continue;
        Span<byte> sa = stackalloc byte[MaxSockAddrSize];
        Span<byte> length = stackalloc byte[4];
        int sent = 0;
        for (int i = 0; i < count; i++)
        {
            ulong at = r.A1 + (ulong)(i * MmsgHdrSize);
            int err = MessageHeader.Read(r.Pid, at, out var header);
            if (err == 0 && header.Name != 0 && header.NameLength != 0 && (header.NameLength < 0 || header.NameLength > MaxSockAddrSize))
                err = Errors.EINVAL;
            var address = header.Name == 0 || err != 0 ? default : sa[..header.NameLength];
            if (err == 0 && !address.IsEmpty && TargetProcess.ReadMemory(r.Pid, header.Name, address) != 0) err = Errors.EFAULT;
            Outcome? one = err != 0 ? Outcome.Fail(err) : SendMessage(r, ref socket, address, header.Payload, flags, mustCarryOut: true, firstOfCall: i == 0);
            // The first message swapped the socket: that carried out the whole call anew (SendOnSwappedSocket).
            if (one is { } whole && (whole.Kind == OutcomeKind.Parked || whole.CloseAfterAnswer1 >= 0)) return whole;
            if (one is null) return sent == 0 ? null : Outcome.Succeed(sent);
            if (one.Value.Kind != OutcomeKind.Succeed) return sent == 0 ? one : Outcome.Succeed(sent);
            BinaryPrimitives.WriteUInt32LittleEndian(length, (uint)one.Value.Value);
            if (TargetProcess.WriteMemory(r.Pid, at + MsgLenOffset, length) != 0) return sent == 0 ? Outcome.Fail(Errors.EFAULT) : Outcome.Succeed(sent);
            sent++;
            flags |= Sock.MsgDontWait; // only the first message waits; the rest go if they can
        }
        return Outcome.Succeed(sent);
    }

    /// <summary>
    /// Sends one message to <paramref name="sa"/> (empty: the connected peer), read once from the program. With
    /// <paramref name="mustCarryOut"/> false, a send the kernel may do as made is answered CONTINUE: an IPv4/IPv6
    /// destination that no rule redirects when nothing can be refused, and sends of our own sockets without an address.
    /// </summary>
    /// <param name="firstOfCall">False for a later message of a sendmmsg: one that needs the socket swapped ends the batch
    /// there (the program sends the rest again, and that call swaps), since the swap carries out its call anew.</param>
    private Outcome? SendMessage(in SyscallRequest r, ref SendingSocket socket, ReadOnlySpan<byte> sa, in Payload payload, int flags, bool mustCarryOut,
        bool firstOfCall = true)
    {
        string call = Syscalls.Name(r.Nr);
        bool ours = socket.Entry is not null;
        scoped ReadOnlySpan<byte> destination = sa;
        Span<byte> unixSa = stackalloc byte[UnixAddress.MaxSize];
        int dirFd = -1;
        bool toUnix = false;
        try
        {
            InetEndpoint to = default;
            bool decoded = !sa.IsEmpty && TryReadDestination(ours ? (socket.Entry!.IPv6 ? Sock.AfInet6 : Sock.AfInet) : socket.Facts.Domain, sa, out to);
            if (decoded)
            {
                var route = Route(r, call, to, ours);
                if (route.Kind == RouteKind.Refused) return Outcome.Fail(route.Errno);
                if (route.Kind == RouteKind.Unix)
                {
                    toUnix = true;
                    int size;
                    if (route.Name is { } name)
                    {
                        size = DatagramPeers.EncodeName(name, unixSa);
                    }
                    else
                    {
                        // Resolved as the program, in its root when it has its own (see TargetIdentity.ForeignRoot).
                        int err;
                        size = 0;
                        using (var identity = TargetIdentity.Assume(_target, r.Pid))
                            err = identity.Errno != 0 ? Errors.EACCES : UnixSockAddr(route.Path!, unixSa, out size, out dirFd, out _);
                        if (err != 0) return Outcome.Fail(err);
                    }
                    destination = unixSa[..size];
                    if (!ours) return firstOfCall ? SwapForSend(r, ref socket, to, call, route.Path ?? route.Name!) : Outcome.Fail(Errors.EAGAIN);
                    if (route.Path is not null && DatagramPeers.NameKey(destination) is { } key)
                        StateOf(socket.Entry!).Sent(key, to.InFamily(socket.Entry!.IPv6));
                }
            }
            else if (!sa.IsEmpty && ours)
            {
                // An address that is not one of the socket's family: what udp_sendmsg/udpv6_sendmsg say.
                return Outcome.Fail(!socket.Entry!.IPv6 && sa.Length >= InetEndpoint.SockAddrInSize ? Errors.EAFNOSUPPORT : Errors.EINVAL);
            }
            if (!toUnix)
            {
                // No address on our socket (its connected peer), or an IP destination of the program's UDP socket.
                if (!mustCarryOut && (ours || !Guarded)) return Outcome.Continue;
            }
            return CarryOutSend(r, socket.Fd, socket.Facts.NonBlocking, payload, flags, destination, forwardControl: !toUnix && !ours, asTarget: toUnix);
        }
        finally
        {
            Sock.Close(dirFd);
        }
    }

    /// <summary>
    /// The first send of a UDP socket to a redirected address: an autobound AF_UNIX datagram socket takes its place,
    /// and the call is then carried out anew as one of our socket's (<see cref="SendOnSwappedSocket"/>), once the
    /// swap is complete (its epoll registrations may be moved first, on the poller). Consumes the copy in
    /// <paramref name="socket"/>.
    /// </summary>
    private Outcome SwapForSend(in SyscallRequest r, ref SendingSocket socket, InetEndpoint to, string call, string where)
    {
        bool ipv6 = socket.Facts.Domain == Sock.AfInet6;
        int err = NewAutoboundDatagram(socket.Copy, out int unix, out string name);
        if (err != 0) return Outcome.Fail(err);
        // Already connected elsewhere (IP): the new socket is not; its peer is gone with the old socket.
        var entry = DatagramEntry(unix, ipv6, peer: null);
        if (to.Address.IsIPv4MappedToIPv6 && ipv6) entry.Local = new InetEndpoint(Loopback(true, true), entry.Local!.Value.Port);
        // A later bind must see a bound socket (EINVAL), as after UDP's autobind.
        entry.Answered = true;
        if (_log.Enabled) _log.Decision(r.Pid, call, to.ToString(), $"-> {where}: datagram socket swapped in, sending from {entry.Local}");
        int copy = socket.Copy;
        var request = r;
        var outcome = SwapDatagram(r, ref copy, ref unix, socket.Facts, entry, name, swapped => SendOnSwappedSocket(request, swapped));
        socket.Copy = copy; // consumed by the swap
        return outcome;
    }

    /// <summary>
    /// The send that made the swap, carried out on the swapped-in socket as any later send of it is (the program's
    /// buffers and address read again, decided again); the answer also closes what the swap's answer closes.
    /// </summary>
    private Outcome SendOnSwappedSocket(SyscallRequest r, Outcome swapped)
    {
        var sent = DatagramSend(r);
        return sent with
        {
            Swapped = sent.Kind == OutcomeKind.Succeed ? swapped.Swapped : null,
            CloseAfterAnswer1 = swapped.CloseAfterAnswer1,
            CloseAfterAnswer2 = swapped.CloseAfterAnswer2,
        };
    }

    /// <summary>
    /// Sends on <paramref name="fd"/> (ours) what the program's buffers hold now, never blocking this thread; null
    /// when it would block and the program waits. Sends to a socket file are done with the program's identity.
    /// </summary>
    private Outcome? CarryOutSend(in SyscallRequest r, int fd, bool nonBlocking, in Payload payload, int flags, ReadOnlySpan<byte> destination,
        bool forwardControl, bool asTarget)
    {
        byte[] data = ArrayPool<byte>.Shared.Rent(MaxUdpPayload);
        byte[]? control = null;
        try
        {
            int err = ReadPayload(r.Pid, payload, data, out int length);
            if (err != 0) return Outcome.Fail(err);
            int controlLength = 0;
            // Control data is the IP layer's (IP_PKTINFO, UDP_SEGMENT...) and goes along for an IP destination; an
            // AF_UNIX one ignores all but SOL_SOCKET's, which would name our fds and credentials: none is sent.
            if (forwardControl && payload.Control != 0 && payload.ControlLength > 0)
            {
                if (payload.ControlLength > MaxControl) return Outcome.Fail(EnoBufs);
                controlLength = (int)payload.ControlLength;
                control = ArrayPool<byte>.Shared.Rent(controlLength);
                if (TargetProcess.ReadMemory(r.Pid, payload.Control, control.AsSpan(0, controlLength)) != 0) return Outcome.Fail(Errors.EFAULT);
            }
            int sendFlags = (flags & ~Sock.MsgFastOpen) | Sock.MsgDontWait | Sock.MsgNoSignal;
            long n;
            if (asTarget)
            {
                using var identity = TargetIdentity.Assume(_target, r.Pid);
                n = identity.Errno != 0 ? -Errors.EACCES : Sock.SendTo(fd, data.AsSpan(0, length), sendFlags, destination);
            }
            else
            {
                n = Sock.SendTo(fd, data.AsSpan(0, length), sendFlags, destination, control.AsSpan(0, controlLength));
            }
            if (n == -Errors.EAGAIN && !nonBlocking && (flags & Sock.MsgDontWait) == 0) return null;
            if (n >= 0) return Outcome.Succeed(n);
            int e = (int)-n;
            return Outcome.Fail(asTarget ? MapUnixSendError(e) : e);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(data);
            if (control is not null) ArrayPool<byte>.Shared.Return(control);
        }
    }

    /// <summary>What a UDP program expects where an AF_UNIX send fails: an absent or dead peer is "refused", as ICMP says for UDP.</summary>
    private static int MapUnixSendError(int err) => err switch
    {
        Errors.ENOENT or Errors.ENOTDIR or Errors.ECONNREFUSED or 91 /* EPROTOTYPE */ => Errors.ECONNREFUSED,
        Errors.EPERM => Errors.EACCES,
        _ => err,
    };

    /// <summary>Reads what a send carries into <paramref name="buffer"/> (at least <see cref="MaxUdpPayload"/> long).</summary>
    private static int ReadPayload(int pid, in Payload payload, byte[] buffer, out int length)
    {
        length = 0;
        if (payload.IovCount < 0)
        {
            if (payload.Length < 0 || payload.Length > MaxUdpPayload) return EMsgSizeErrno;
            length = (int)payload.Length;
            return length == 0 || TargetProcess.ReadMemory(pid, payload.Data, buffer.AsSpan(0, length)) == 0 ? 0 : Errors.EFAULT;
        }
        if (payload.IovCount > MaxMessages) return EMsgSizeErrno;
        if (payload.IovCount == 0) return 0;
        int count = (int)payload.IovCount;
        byte[] raw = ArrayPool<byte>.Shared.Rent(count * IovecSize);
        try
        {
            if (TargetProcess.ReadMemory(pid, payload.Iov, raw.AsSpan(0, count * IovecSize)) != 0) return Errors.EFAULT;
            long total = 0;
            for (int i = 0; i < count; i++)
            {
                long l = BinaryPrimitives.ReadInt64LittleEndian(raw.AsSpan(i * IovecSize + 8));
                if (l < 0) return Errors.EINVAL;
                total += l;
                if (total > MaxUdpPayload) return EMsgSizeErrno;
            }
            for (int i = 0; i < count; i++)
            {
                ulong b = BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(i * IovecSize));
                int l = (int)BinaryPrimitives.ReadInt64LittleEndian(raw.AsSpan(i * IovecSize + 8));
                if (l > 0 && TargetProcess.ReadMemory(pid, b, buffer.AsSpan(length, l)) != 0) return Errors.EFAULT;
                length += l;
            }
            return 0;
        }
        finally { ArrayPool<byte>.Shared.Return(raw); }
    }

    // ---- receives ----

    /// <summary>
    /// recvfrom/recvmsg/recvmmsg asking for the sender's address on a datagram socket we swapped in: received on
    /// our copy and the sender reported as IPv4/IPv6. Everything else goes to the kernel as made. A blocking
    /// receive with nothing queued waits on the poller.
    /// </summary>
    private Outcome DatagramReceive(in SyscallRequest r)
    {
        if (_registry.IsEmpty) return Outcome.Continue;
        if (r.Nr == Syscalls.RecvFrom && r.A4 == 0) return Outcome.Continue;
        // A bad fd or a socket we cannot look at: the kernel answers it as well as we could.
        if (_target.CopyFd(r.Pid, (int)r.A0, out int copy) != 0) return Outcome.Continue;
        bool parked = false;
        try
        {
            if (Sock.GetInt(copy, Sock.SolSocket, Sock.SoType, out int type) != 0 || type != Sock.SockDgram) return Outcome.Continue;
            if (Sock.GetInt(copy, Sock.SolSocket, Sock.SoDomain, out int domain) != 0 || domain != Sock.AfUnix) return Outcome.Continue;
            var entry = _registry.Find(Sock.Inode(copy));
            if (entry is null || !WantsSender(r)) return Outcome.Continue;
            if (ReceiveAttempt(r, copy, entry) is { } outcome) return outcome;
            parked = true;
            return Park(new DatagramWait(_attachment, r, copy, DeadlineOf(copy, Sock.SoRcvTimeo)) { Entry = entry }, Errors.EAGAIN);
        }
        finally
        {
            if (!parked) CloseCopy(copy);
        }
    }

    /// <summary>True when the call asks for a sender's address (recvfrom's is a register; msghdrs are read, only to look).</summary>
    private static bool WantsSender(in SyscallRequest r)
    {
        if (r.Nr == Syscalls.RecvFrom) return r.A4 != 0;
        int count = r.Nr == Syscalls.RecvMsg ? 1 : (int)Math.Min((uint)r.A2, MaxMessages);
        for (int i = 0; i < count; i++)
        {
            ulong at = r.Nr == Syscalls.RecvMsg ? r.A1 : r.A1 + (ulong)(i * MmsgHdrSize);
            // An unreadable msghdr: the kernel says EFAULT (with nothing received) as well as we would.
            if (MessageHeader.Read(r.Pid, at, out var header) != 0) return false;
            if (header.Name != 0) return true;
        }
        return false;
    }

    /// <summary>One try of a receive on <paramref name="copy"/>; null when nothing is queued and the program waits.</summary>
    private Outcome? ReceiveAttempt(in SyscallRequest r, int copy, ConvertedSocket entry)
    {
        int flags = (int)(r.Nr == Syscalls.RecvMsg ? r.A2 : r.A3);
        bool nonBlocking = (flags & Sock.MsgDontWait) != 0 || (Sock.GetFileFlags(copy, out int fileFlags) == 0 && (fileFlags & Sock.ONonblock) != 0);
        switch (r.Nr)
        {
            case Syscalls.RecvFrom:
            {
                var target = new ReceiveTarget(r.A1, (long)r.A2, 0, -1, r.A4, r.A5, 0, 0);
                var one = ReceiveOne(r.Pid, copy, entry, target, flags, nonBlocking);
                return one;
            }
            case Syscalls.RecvMsg:
            {
                if (MessageHeader.Read(r.Pid, r.A1, out var header) != 0) return Outcome.Fail(Errors.EFAULT);
                return ReceiveOne(r.Pid, copy, entry, ReceiveTarget.Of(r.A1, header), flags, nonBlocking);
            }
            default:
            {
                // recvmmsg: the first message as the socket's blocking mode says, then whatever is queued (as with
                // MSG_WAITFORONE); a failure after the first message ends the call with the count so far.
                int count = (int)Math.Min((uint)r.A2, MaxMessages);
                if (count == 0) return Outcome.Continue;
                int received = 0;
                Span<byte> length = stackalloc byte[4];
                for (int i = 0; i < count; i++)
                {
                    ulong at = r.A1 + (ulong)(i * MmsgHdrSize);
                    if (MessageHeader.Read(r.Pid, at, out var header) != 0) return received == 0 ? Outcome.Fail(Errors.EFAULT) : Outcome.Succeed(received);
                    var one = ReceiveOne(r.Pid, copy, entry, ReceiveTarget.Of(at, header), (flags & ~Sock.MsgWaitForOne) | (received > 0 ? Sock.MsgDontWait : 0),
                        nonBlocking || received > 0);
                    if (one is null) return received == 0 ? null : Outcome.Succeed(received);
                    if (one.Value.Kind != OutcomeKind.Succeed) return received == 0 ? one : Outcome.Succeed(received);
                    BinaryPrimitives.WriteUInt32LittleEndian(length, (uint)one.Value.Value);
                    if (TargetProcess.WriteMemory(r.Pid, at + MsgLenOffset, length) != 0) return Outcome.Fail(Errors.EFAULT);
                    received++;
                }
                return Outcome.Succeed(received);
            }
        }
    }

    /// <summary>Where a receive puts what it got: one buffer or iovecs, the sender's address, and (recvmsg) the msghdr's fields.</summary>
    private readonly record struct ReceiveTarget(ulong Data, long Length, ulong Iov, long IovCount, ulong Name, ulong NameLengthPointer,
        ulong Header, ulong Control)
    {
        public static ReceiveTarget Of(ulong headerAddress, in MessageHeader h) =>
            new(0, 0, h.Iov, h.IovCount, h.Name, headerAddress + 8, headerAddress, h.Control);
    }

    /// <summary>
    /// Receives one datagram on our copy with the program's flags (MSG_PEEK, MSG_TRUNC... as it gave them, never
    /// waiting) and writes data, sender and lengths into the program's memory. As the kernel does, a datagram is
    /// consumed before the copy-out, so a bad buffer loses it and says EFAULT.
    /// </summary>
    private Outcome? ReceiveOne(int pid, int copy, ConvertedSocket entry, in ReceiveTarget target, int flags, bool nonBlocking)
    {
        long capacity;
        byte[]? iovecs = null;
        int iovCount = 0;
        try
        {
            if (target.IovCount < 0)
            {
                capacity = Math.Max(0, target.Length);
            }
            else
            {
                if (target.IovCount > MaxMessages) return Outcome.Fail(EMsgSizeErrno);
                iovCount = (int)target.IovCount;
                iovecs = ArrayPool<byte>.Shared.Rent(Math.Max(1, iovCount * IovecSize));
                if (iovCount > 0 && TargetProcess.ReadMemory(pid, target.Iov, iovecs.AsSpan(0, iovCount * IovecSize)) != 0) return Outcome.Fail(Errors.EFAULT);
                capacity = 0;
                for (int i = 0; i < iovCount; i++)
                {
                    long l = BinaryPrimitives.ReadInt64LittleEndian(iovecs.AsSpan(i * IovecSize + 8));
                    if (l < 0) return Outcome.Fail(Errors.EINVAL);
                    capacity += l;
                }
            }
            int size = (int)Math.Min(capacity, MaxReceive);
            byte[] data = ArrayPool<byte>.Shared.Rent(Math.Max(size, 1));
            try
            {
                Span<byte> from = stackalloc byte[UnixAddress.MaxSize];
                long n = Sock.ReceiveFrom(copy, data.AsSpan(0, size), (flags & ~Sock.MsgCmsgCloexec) | Sock.MsgDontWait, from, out int fromLength, out int messageFlags);
                if (n == -Errors.EAGAIN && !nonBlocking) return null;
                if (n < 0) return Outcome.Fail((int)-n);
                int got = (int)Math.Min(n, size);
                // The datagram is ours now: copy out what the kernel would, in its order (data, address, flags).
                if (iovecs is null)
                {
                    if (got > 0 && TargetProcess.WriteMemory(pid, target.Data, data.AsSpan(0, got)) != 0) return Outcome.Fail(Errors.EFAULT);
                }
                else
                {
                    int done = 0;
                    for (int i = 0; i < iovCount && done < got; i++)
                    {
                        ulong b = BinaryPrimitives.ReadUInt64LittleEndian(iovecs.AsSpan(i * IovecSize));
                        int l = (int)Math.Min(BinaryPrimitives.ReadInt64LittleEndian(iovecs.AsSpan(i * IovecSize + 8)), got - done);
                        if (l > 0 && TargetProcess.WriteMemory(pid, b, data.AsSpan(done, l)) != 0) return Outcome.Fail(Errors.EFAULT);
                        done += l;
                    }
                }
                if (target.Name != 0)
                {
                    Span<byte> sa = stackalloc byte[InetEndpoint.SockAddrIn6Size];
                    int saSize = ReportedSender(entry, from[..Math.Min(fromLength, from.Length)]).Encode(sa);
                    int err = WriteSockAddr(pid, target.Name, target.NameLengthPointer, sa[..saSize]);
                    if (err != 0) return Outcome.Fail(err);
                }
                if (target.Header != 0)
                {
                    // msg_flags, and no control data: the IP-level messages a UDP program asks for do not exist here.
                    Span<byte> word = stackalloc byte[8];
                    BinaryPrimitives.WriteInt32LittleEndian(word, messageFlags);
                    if (TargetProcess.WriteMemory(pid, target.Header + 48, word[..4]) != 0) return Outcome.Fail(Errors.EFAULT);
                    word.Clear();
                    if (target.Control != 0 && TargetProcess.WriteMemory(pid, target.Header + 40, word) != 0) return Outcome.Fail(Errors.EFAULT);
                }
                return Outcome.Succeed(n);
            }
            finally { ArrayPool<byte>.Shared.Return(data); }
        }
        finally
        {
            if (iovecs is not null) ArrayPool<byte>.Shared.Return(iovecs);
        }
    }

    /// <summary>
    /// The IPv4/IPv6 sender a datagram from AF_UNIX name <paramref name="from"/> is reported as, in the family of
    /// the receiving socket: the address the receiver sent to (or connected to) at that name; a socket file bound
    /// through a rule, as its bind address; a socket we autobound, as its own getsockname; anything else as
    /// fakeAddress with a port of its own, which replies reach.
    /// </summary>
    private InetEndpoint ReportedSender(ConvertedSocket receiver, ReadOnlySpan<byte> from)
    {
        string? key = DatagramPeers.NameKey(from);
        if (key is null) return FakePeer(receiver.IPv6); // an unnamed sender: nobody can answer it, UDP never shows one
        InetEndpoint sender;
        if (StateOf(receiver).SentTo(key) is { } sentTo) sender = sentTo;
        else if (key[0] != '\0' && UnixAddress.DecodePath(from) is { } path && _registry.FindFile(path)?.Listener is { } bound && LocalOf(bound) is { } local) sender = local;
        else sender = Peers.EndpointOf(key) ?? Peers.EndpointForStranger(key, _policy.FakeAddress);
        if (receiver.IPv6) return sender.InFamily(true);
        if (!sender.IsIPv6 || sender.Address.IsIPv4MappedToIPv6) return sender.InFamily(false);
        // An IPv6 sender cannot be shown to an IPv4 socket: loopback with its port, which replies reach too.
        var shown = new InetEndpoint(IPAddress.Loopback, sender.Port);
        Peers.Alias(shown, key);
        return shown;
    }

    /// <summary>
    /// A datagram call that waits: a receive until its copy of the socket is readable, a send retried with backoff
    /// (AF_UNIX gives no wake-up for room in another socket's queue), within SO_RCVTIMEO/SO_SNDTIMEO (then
    /// EAGAIN, as the kernel says). Holds no data: each try reads the program's buffers anew.
    /// </summary>
    private sealed class DatagramWait : ParkedCall
    {
        private const int FirstRetryMs = 1, LastRetryMs = 50;
        private readonly int _copy;

        /// <param name="copy">Our copy of the socket to receive on (consumed), or -1 for a send.</param>
        public DatagramWait(ListenerAttachment attachment, SyscallRequest request, int copy, long deadline) : base(attachment, request)
        {
            _copy = copy;
            Deadline = deadline;
            WaitFd = copy;
            WaitEvents = Tmds.Linux.LibC.EPOLLIN;
            if (copy < 0) RetryLater();
        }

        public ConvertedSocket? Entry { get; init; }

        // Under SO_RCVTIMEO/SO_SNDTIMEO an interrupted socket wait says EINTR, else it restarts (sock_intr_errno).
        public override int InterruptErrno => SocketWaitInterruptErrno;

        private void RetryLater() => RetryWithBackoff(FirstRetryMs, LastRetryMs);

        public override bool Resume(Redirector handler)
        {
            var outcome = _copy >= 0 ? handler.ReceiveAttempt(Request, _copy, Entry!) : handler.SendAttempt(Request);
            if (outcome is null)
            {
                if (_copy < 0) RetryLater();
                return false;
            }
            handler.Answer(this, outcome.Value);
            return true;
        }

        public override void TimedOut(Redirector handler) => handler.Answer(this, Outcome.Fail(Errors.EAGAIN));

        public override void Release() => CopyCloser.Close(Attachment, _copy);
    }

    private static int ReadSysctlFirst(string path)
    {
        try { return int.TryParse(File.ReadAllText(path).Trim(), out int v) ? v : 0; }
        catch (IOException) { return 0; }
        catch (UnauthorizedAccessException) { return 0; }
    }
}

/// <summary>
/// What one of our datagram sockets sent to lately, by AF_UNIX name: a reply from that name is reported as the
/// address the program used (a DNS client checks that its answer comes from the server it asked). Bounded.
/// </summary>
internal sealed class DatagramState
{
    private const int Remembered = 8;
    private readonly (string? Name, InetEndpoint To)[] _recent = new (string?, InetEndpoint)[Remembered];
    private int _next;

    public void Sent(string name, InetEndpoint to)
    {
        lock (this)
        {
            for (int i = 0; i < Remembered; i++)
                if (_recent[i].Name == name)
                {
                    _recent[i].To = to;
                    return;
                }
            _recent[_next] = (name, to);
            _next = (_next + 1) % Remembered;
        }
    }

    public InetEndpoint? SentTo(string name)
    {
        lock (this)
        {
            foreach (var (n, to) in _recent)
                if (n == name) return to;
            return null;
        }
    }
}
