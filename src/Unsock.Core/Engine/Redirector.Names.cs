using System.Buffers.Binary;
using System.Net;
using Unsock.Core.Addressing;
using Unsock.Core.Policies;
using Native = global::Interop;
using Sock = global::Interop.Socket;

namespace Unsock.Core.Engine;

internal sealed partial class Redirector
{
    /// <summary>The converted socket behind a target fd: swapped in by us, or accepted from a listener of ours.</summary>
    private ConvertedSocket? Lookup(int copy, int domain)
    {
        ulong inode = Sock.Inode(copy);
        var entry = _registry.Find(inode);
        if (entry is not null || domain != Sock.AfUnix) return entry;
        Span<byte> name = stackalloc byte[UnixAddress.MaxSize];
        int len = Sock.GetName(copy, name);
        if (len <= UnixAddress.PathOffset) return null;
        var path = UnixAddress.DecodePath(name[..len]);
        if (path is null || _registry.FindFile(path)?.Listener is not { } listener || listener.Inode == inode) return null;
        return _registry.GetOrAddAccepted(inode, listener);
    }

    /// <summary>Our copy of the target's socket when it is one we converted; false (nothing to close) otherwise.</summary>
    private bool TryCopyConverted(in SyscallRequest r, out int copy, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out ConvertedSocket? entry)
    {
        entry = null;
        if (_target.CopyFd(r.Pid, (int)r.A0, out copy) != 0) return false;
        if (Sock.GetInt(copy, Sock.SolSocket, Sock.SoDomain, out int domain) == 0 && domain is not (Sock.AfInet or Sock.AfInet6))
            entry = Lookup(copy, domain);
        if (entry is { UnixName: null }) return true; // a fromUnix socket is the program's own AF_UNIX socket
        CloseCopy(copy);
        return false;
    }

    private Outcome Name(in SyscallRequest r, bool peer)
    {
        if (_registry.IsEmpty && _policy.AcceptConvert == AcceptConvert.None) return Outcome.Continue;
        int err = _target.CopyFd(r.Pid, (int)r.A0, out int copy);
        // EBADF (and ESRCH: nobody is left to answer) the kernel says just as well; but when we cannot look
        // (EMFILE, ENOMEM) the socket may be one of ours, and the kernel would tell its real AF_UNIX address.
        if (err != 0) return err is Errors.EBADF or Errors.ESRCH ? Outcome.Continue : Outcome.Fail(105 /* ENOBUFS */);
        try
        {
            if (Sock.GetInt(copy, Sock.SolSocket, Sock.SoDomain, out int domain) != 0) return Outcome.Continue;
            if (domain is Sock.AfInet or Sock.AfInet6) return Outcome.Continue;
            var entry = Lookup(copy, domain);
            if (entry is { UnixName: not null }) return ReportUnixName(r, entry, peer);
            InetEndpoint? reported;
            if (entry is null)
            {
                // Not a socket we converted. A program's own AF_UNIX sockets keep their real addresses (the
                // original rewrote those too under CONVERT_ALL, which breaks programs that use AF_UNIX
                // themselves); a VSOCK peer can only have come through a control file, so it is converted.
                bool convert = domain == Sock.AfVsock && _policy.AcceptConvert != AcceptConvert.None;
                if (!convert || !peer) return Outcome.Continue;
                reported = FakePeer(ipv6: false);
            }
            else if (peer)
            {
                reported = entry.AcceptedFromListener ? AcceptedPeer(entry, copy) : PeerOf(entry);
                if (reported is null) return Outcome.Fail(Errors.ENOTCONN);
            }
            else
            {
                reported = LocalOf(entry) ?? (entry.Peer is not null ? ClientLocal(entry) : FakePeer(entry.IPv6));
            }
            Span<byte> sa = stackalloc byte[InetEndpoint.SockAddrIn6Size];
            int size = reported.Value.Encode(sa);
            err = WriteSockAddr(r.Pid, r.A1, r.A2, sa[..size]);
            return err == 0 ? Outcome.Succeed() : Outcome.Fail(err);
        }
        finally { CloseCopy(copy); }
    }

    // One sock_diag socket per notification thread; a worker delivering an accept may use it too.
    private readonly object _peerDiagGate = new();
    private Native.UnixDiag? _peerDiag;

    private ConnectionPorts Ports => ConnectionPorts.For(_registry);

    private static InetEndpoint? LocalOf(ConvertedSocket entry)
    {
        lock (entry) return entry.Local;
    }

    private static InetEndpoint? PeerOf(ConvertedSocket entry)
    {
        lock (entry) return entry.Peer;
    }

    /// <summary>
    /// What a converted client reports as its own address: loopback, as a TCP connect on this host would, and
    /// its connection's port (given out at the first getsockname or at the server's accept, whichever comes first).
    /// </summary>
    private InetEndpoint ClientLocal(ConvertedSocket client)
    {
        if (LocalOf(client) is { } known) return known;
        bool mapped = PeerOf(client) is { } to && to.Address.IsIPv4MappedToIPv6;
        // Outside the entry's lock: the port table takes the registry's lock, and a sweep holds that while it locks entries.
        var local = new InetEndpoint(Loopback(client.IPv6, mapped), Ports.PortFor(client.Inode, client));
        lock (client) return client.Local ??= local;
    }

    /// <summary>
    /// The peer an accepted connection reports, decided once: the client's own getsockname when the client is a
    /// socket we converted too; otherwise loopback when the listener is bound to a loopback address (so that
    /// "local clients only" checks hold, as for a TCP client on this host) or else fakeAddress, with a port of
    /// its own. Connections through VSOCK/TIPC listeners come from elsewhere: fakeAddress.
    /// </summary>
    /// <param name="acceptedFd">Our copy of the accepted socket.</param>
    private InetEndpoint AcceptedPeer(ConvertedSocket accepted, int acceptedFd)
    {
        if (PeerOf(accepted) is { } known) return known;
        ulong? clientInode = accepted.Family == Sock.AfUnix ? PeerInodeOf(accepted.Inode) : null;
        var client = clientInode is { } c ? _registry.Find(c) : null;
        bool ours = client is null && clientInode is not null && ConnectedBySupervisor(acceptedFd);
        if (ours)
        {
            // Connected by this supervisor: a program of another target (one service serves both ends) is
            // recorded in its own attachment's registry.
            client = _engine.FindConverted(clientInode!.Value, except: _registry);
            // Our own client, accepted between its connect and our record of it (a server in epoll_wait is that
            // quick): the record follows within microseconds, unless that thread is descheduled.
            long until = Environment.TickCount64 + 5;
            while (client is null && Environment.TickCount64 < until)
            {
                Thread.Yield();
                client = _registry.Find(clientInode.Value) ?? _engine.FindConverted(clientInode.Value, except: _registry);
            }
        }
        InetEndpoint peer;
        if (client is null && ours)
        {
            // Still unrecorded: it reports a loopback address and this port for itself; only the IPv6 form can differ.
            bool mapped = LocalOf(accepted) is { } bound && (!bound.IsIPv6 || bound.Address.IsIPv4MappedToIPv6 || bound.Address.Equals(IPAddress.IPv6Any));
            peer = new InetEndpoint(Loopback(accepted.IPv6, mapped), Ports.PortFor(clientInode!.Value, accepted));
        }
        else if (client is { AcceptedFromListener: false, File: null } && PeerOf(client) is not null)
        {
            var local = ClientLocal(client);
            bool representable = accepted.IPv6 || !local.IsIPv6 || local.Address.IsIPv4MappedToIPv6;
            peer = representable ? local.InFamily(accepted.IPv6) : new InetEndpoint(ListenerSidePeerAddress(accepted), local.Port);
        }
        else
        {
            peer = new InetEndpoint(ListenerSidePeerAddress(accepted), Ports.PortFor(clientInode ?? accepted.Inode, accepted));
        }
        lock (accepted) return accepted.Peer ??= peer;
    }

    /// <summary>SO_PEERCRED: the process that connected the other end; the supervisor connects for the clients it converts.</summary>
    private static bool ConnectedBySupervisor(int fd)
    {
        Span<byte> credentials = stackalloc byte[12]; // struct ucred: pid, uid, gid
        return Sock.GetRaw(fd, Sock.SolSocket, SoPeerCred, credentials) >= 4 &&
               BitConverter.ToInt32(credentials) == Environment.ProcessId;
    }

    private const int SoPeerCred = 17;

    private IPAddress ListenerSidePeerAddress(ConvertedSocket accepted)
    {
        if (accepted.Family == Sock.AfUnix && LocalOf(accepted) is { } bound && IsLoopback(bound.Address))
            return Loopback(accepted.IPv6, bound.Address.IsIPv4MappedToIPv6);
        return FakePeer(accepted.IPv6).Address;
    }

    private static IPAddress Loopback(bool ipv6, bool mapped) =>
        !ipv6 ? IPAddress.Loopback : mapped ? IPAddress.Loopback.MapToIPv6() : IPAddress.IPv6Loopback;

    private static bool IsLoopback(IPAddress address) =>
        IPAddress.IsLoopback(address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address);

    /// <summary>The inode of the other end of Unix socket <paramref name="inode"/>, by sock_diag; null when unknown.</summary>
    private ulong? PeerInodeOf(ulong inode)
    {
        lock (_peerDiagGate)
        {
            _peerDiag ??= Native.UnixDiag.TryOpen();
            return _peerDiag?.PeerOf(inode);
        }
    }

    /// <summary>
    /// Writes a sockaddr the way the kernel does for getsockname/accept: at most *len bytes, then the full
    /// length into *len, so a short buffer sees truncation and the real size.
    /// </summary>
    internal static int WriteSockAddr(int pid, ulong addressPointer, ulong lengthPointer, ReadOnlySpan<byte> sockaddr)
    {
        Span<byte> lenBytes = stackalloc byte[4];
        int err = TargetProcess.ReadMemory(pid, lengthPointer, lenBytes);
        if (err != 0) return Errors.EFAULT;
        int capacity = BinaryPrimitives.ReadInt32LittleEndian(lenBytes);
        if (capacity < 0) return Errors.EINVAL;
        int n = Math.Min(capacity, sockaddr.Length);
        if (n > 0 && TargetProcess.WriteMemory(pid, addressPointer, sockaddr[..n]) != 0) return Errors.EFAULT;
        BinaryPrimitives.WriteInt32LittleEndian(lenBytes, sockaddr.Length);
        return TargetProcess.WriteMemory(pid, lengthPointer, lenBytes) != 0 ? Errors.EFAULT : 0;
    }
}
