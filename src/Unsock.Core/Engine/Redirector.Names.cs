using System.Buffers.Binary;
using Unsock.Core.Addressing;
using Unsock.Core.Policies;
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
        if (entry is not null) return true;
        Sock.Close(copy);
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
                reported = entry.Peer;
                if (reported is null && entry.AcceptedFromListener) reported = FakePeer(entry.IPv6);
                if (reported is null) return Outcome.Fail(Errors.ENOTCONN);
            }
            else
            {
                reported = entry.Local ?? FakePeer(entry.IPv6);
            }
            Span<byte> sa = stackalloc byte[InetEndpoint.SockAddrIn6Size];
            int size = reported.Value.Encode(sa);
            err = WriteSockAddr(r.Pid, r.A1, r.A2, sa[..size]);
            return err == 0 ? Outcome.Succeed() : Outcome.Fail(err);
        }
        finally { Sock.Close(copy); }
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
