using System.Buffers.Binary;
using static Tmds.Linux.LibC;

internal static partial class Interop
{
    /// <summary>
    /// Which Unix sockets are bound to a file: a NETLINK_SOCK_DIAG dump with UDIAG_SHOW_VFS, the only way
    /// from a socket file to its socket. A bound socket that does not listen refuses connects just like a
    /// stale file does; this tells them apart. The dump covers this network namespace, and like every
    /// multi-part dump it can miss a socket while others in the same hash bucket come and go.
    /// </summary>
    internal static unsafe class UnixSocketFiles
    {
        private const int AfNetlink = 16, NetlinkSockDiag = 4, SockDiagByFamily = 20, NlmsgError = 2, NlmsgDone = 3;
        private const ushort NlmFRequest = 1, NlmFDump = 0x300;
        private const int RequestSize = 16 + 24; // nlmsghdr + unix_diag_req
        private const uint UdiagShowVfs = 2;
        private const ushort UnixDiagVfs = 1;
        private const int MessageHeader = 16, DiagMessage = 16; // nlmsghdr, unix_diag_msg

        /// <summary>
        /// True when a Unix socket is bound to the file with <paramref name="device"/> (st_dev) and
        /// <paramref name="inode"/>; false when none is; null when the kernel did not answer.
        /// </summary>
        public static bool? IsBound(ulong device, ulong inode)
        {
            int fd = socket(AfNetlink, SOCK_DGRAM | SOCK_CLOEXEC, NetlinkSockDiag);
            if (fd < 0) return null;
            try
            {
                // The kernel answers a dump as we read; the timeout only guards against a kernel that never does.
                long* timeout = stackalloc long[2] { 2, 0 }; // struct timeval
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, timeout, 16);
                Span<byte> req = stackalloc byte[RequestSize];
                req.Clear();
                BinaryPrimitives.WriteUInt32LittleEndian(req, RequestSize);
                BinaryPrimitives.WriteUInt16LittleEndian(req[4..], SockDiagByFamily);
                BinaryPrimitives.WriteUInt16LittleEndian(req[6..], NlmFRequest | NlmFDump);
                BinaryPrimitives.WriteUInt32LittleEndian(req[8..], 1);
                req[16] = 1;                                                     // sdiag_family AF_UNIX
                BinaryPrimitives.WriteUInt32LittleEndian(req[20..], uint.MaxValue); // udiag_states: any
                BinaryPrimitives.WriteUInt32LittleEndian(req[28..], UdiagShowVfs);
                BinaryPrimitives.WriteUInt32LittleEndian(req[32..], uint.MaxValue); // udiag_cookie: INET_DIAG_NOCOOKIE
                BinaryPrimitives.WriteUInt32LittleEndian(req[36..], uint.MaxValue);
                fixed (byte* p = req)
                    if (send(fd, p, RequestSize, 0) != RequestSize) return null;
                uint wantedDevice = KernelDevice(device);
                bool found = false;
                var buffer = new byte[32768];
                while (true)
                {
                    long n;
                    fixed (byte* p = buffer) n = recv(fd, p, buffer.Length, 0);
                    if (n <= 0) return null;
                    var chunk = buffer.AsSpan(0, (int)n);
                    while (chunk.Length >= MessageHeader)
                    {
                        int length = (int)BinaryPrimitives.ReadUInt32LittleEndian(chunk);
                        if (length < MessageHeader || length > chunk.Length) return null;
                        ushort type = BinaryPrimitives.ReadUInt16LittleEndian(chunk[4..]);
                        if (type == NlmsgDone) return found;
                        if (type == NlmsgError) return null;
                        if (type == SockDiagByFamily && length >= MessageHeader + DiagMessage &&
                            BoundTo(chunk[(MessageHeader + DiagMessage)..length], out uint vfsInode, out uint vfsDevice) &&
                            vfsInode == (uint)inode && vfsDevice == wantedDevice)
                            found = true; // read on to the end: the rest of the dump must not be left for a later question
                        chunk = chunk[Math.Min(chunk.Length, (length + 3) & ~3)..];
                    }
                }
            }
            finally
            {
                close(fd);
            }
        }

        /// <summary>The UNIX_DIAG_VFS attribute among <paramref name="attributes"/>.</summary>
        private static bool BoundTo(ReadOnlySpan<byte> attributes, out uint inode, out uint device)
        {
            inode = device = 0;
            while (attributes.Length >= 4)
            {
                int length = BinaryPrimitives.ReadUInt16LittleEndian(attributes);
                ushort type = BinaryPrimitives.ReadUInt16LittleEndian(attributes[2..]);
                if (length < 4 || length > attributes.Length) return false;
                if (type == UnixDiagVfs && length >= 12)
                {
                    inode = BinaryPrimitives.ReadUInt32LittleEndian(attributes[4..]);
                    device = BinaryPrimitives.ReadUInt32LittleEndian(attributes[8..]);
                    return true;
                }
                attributes = attributes[Math.Min(attributes.Length, (length + 3) & ~3)..];
            }
            return false;
        }

        /// <summary>st_dev (glibc's encoding) as the kernel's internal dev_t, which unix_diag reports: major &lt;&lt; 20 | minor.</summary>
        private static uint KernelDevice(ulong stDev)
        {
            ulong major = ((stDev >> 8) & 0xFFF) | ((stDev >> 32) & ~0xFFFUL);
            ulong minor = (stDev & 0xFF) | ((stDev >> 12) & ~0xFFUL);
            return (uint)((major << 20) | (minor & 0xFFFFF));
        }
    }
}
