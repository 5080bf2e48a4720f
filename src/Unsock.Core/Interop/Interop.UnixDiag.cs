using System.Buffers.Binary;
using static Tmds.Linux.LibC;

internal static partial class Interop
{
    /// <summary>
    /// NETLINK_SOCK_DIAG's exact lookup of one Unix socket by inode (unix_diag, in the kernel since 3.3).
    /// Unlike a read of /proc/net/unix, which can skip entries while sockets come and go, it is exact.
    /// </summary>
    internal sealed unsafe partial class UnixDiag : IDisposable
    {
        private const int AfNetlink = 16, NetlinkSockDiag = 4, SockDiagByFamily = 20, NlmsgError = 2;
        private const ushort NlmFRequest = 1;
        private const int RequestSize = 16 + 24; // nlmsghdr + unix_diag_req
        private readonly int _fd;
        private uint _sequence;

        private UnixDiag(int fd) => _fd = fd;

        /// <summary>A netlink socket for lookups, or null where the kernel has no sock_diag for AF_UNIX.</summary>
        public static UnixDiag? TryOpen()
        {
            int fd = socket(AfNetlink, SOCK_DGRAM | SOCK_CLOEXEC, NetlinkSockDiag);
            return fd < 0 ? null : new UnixDiag(fd);
        }

        /// <summary>True or false when the kernel says; null when the answer did not come (then assume it exists).</summary>
        public bool? Exists(ulong inode)
        {
            Span<byte> resp = stackalloc byte[512];
            int n = Ask(inode, show: 0, resp);
            if (n < 0) return null;
            ushort type = BinaryPrimitives.ReadUInt16LittleEndian(resp[4..]);
            if (type == SockDiagByFamily) return true;
            if (type == NlmsgError && n >= 20) return BinaryPrimitives.ReadInt32LittleEndian(resp[16..]) == -Unsock.Core.Errors.ENOENT ? false : null;
            return null;
        }

        /// <summary>Asks for socket <paramref name="inode"/> (with the UDIAG_SHOW_* bits <paramref name="show"/>); the answer's length in <paramref name="resp"/>, or -1.</summary>
        private int Ask(ulong inode, uint show, Span<byte> resp)
        {
            if (inode > uint.MaxValue) return -1;
            Span<byte> req = stackalloc byte[RequestSize];
            req.Clear();
            uint seq = ++_sequence;
            BinaryPrimitives.WriteUInt32LittleEndian(req, RequestSize);
            BinaryPrimitives.WriteUInt16LittleEndian(req[4..], SockDiagByFamily);
            BinaryPrimitives.WriteUInt16LittleEndian(req[6..], NlmFRequest);
            BinaryPrimitives.WriteUInt32LittleEndian(req[8..], seq);
            req[16] = 1;                                                   // sdiag_family AF_UNIX
            BinaryPrimitives.WriteUInt32LittleEndian(req[20..], uint.MaxValue); // udiag_states: any
            BinaryPrimitives.WriteUInt32LittleEndian(req[24..], (uint)inode);   // udiag_ino
            BinaryPrimitives.WriteUInt32LittleEndian(req[28..], show);          // udiag_show
            BinaryPrimitives.WriteUInt32LittleEndian(req[32..], uint.MaxValue); // udiag_cookie: INET_DIAG_NOCOOKIE
            BinaryPrimitives.WriteUInt32LittleEndian(req[36..], uint.MaxValue);
            fixed (byte* p = req)
                if (send(_fd, p, RequestSize, 0) != RequestSize) return -1;
            while (true)
            {
                long n;
                fixed (byte* p = resp) n = recv(_fd, p, (Tmds.Linux.size_t)resp.Length, 0);
                if (n < 16) return -1;
                if (BinaryPrimitives.ReadUInt32LittleEndian(resp[8..]) != seq) continue; // a late answer to an earlier question
                return (int)n;
            }
        }

        public void Dispose() => close(_fd);
    }
}
