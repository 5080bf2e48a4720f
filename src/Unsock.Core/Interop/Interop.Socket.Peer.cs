using Tmds.Linux;
using static Tmds.Linux.LibC;

internal static partial class Interop
{
    internal static unsafe partial class Socket
    {
        /// <summary>getpeername into <paramref name="buffer"/>; the address length, or -errno (ENOTCONN: no peer yet).</summary>
        public static int GetPeerName(int fd, Span<byte> buffer)
        {
            socklen_t len = (uint)buffer.Length;
            fixed (byte* p = buffer)
                return getpeername(fd, (sockaddr*)p, &len) < 0 ? -errno : (int)(uint)len;
        }
    }
}
