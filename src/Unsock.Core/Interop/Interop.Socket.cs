using Unsock.Core;
using System.Runtime.InteropServices;
using Tmds.Linux;
using static Tmds.Linux.LibC;


internal static partial class Interop
{
    /// <summary>Socket calls in the shape the engine wants: 0 or an errno, raw byte sockaddrs.</summary>
    internal static unsafe partial class Socket
    {
        public const int SolSocket = 1, SolIp = 0, SolTcp = 6, SolIpv6 = 41;
        public const int SoType = 3, SoError = 4, SoSndBuf = 7, SoRcvBuf = 8, SoKeepAlive = 9,
            SoLinger = 13, SoRcvTimeo = 20, SoSndTimeo = 21, SoAcceptConn = 30, SoProtocol = 38, SoDomain = 39;
        public const int AfUnix = 1, AfInet = 2, AfInet6 = 10, AfTipc = 30, AfVsock = 40;
        public const int SockStream = 1, SockDgram = 2, SockNonblock = 0x800, SockCloexec = 0x80000;
        public const int ORdwr = 2, ONonblock = 0x800, OCloexec = 0x80000;

        private static int Err(int r) => r < 0 ? Marshal.GetLastPInvokeError() : 0;

        public static int Create(int domain, int type, out int fd)
        {
            fd = socket(domain, type, 0);
            return fd < 0 ? errno : 0;
        }

        public static int Bind(int fd, ReadOnlySpan<byte> sockaddr)
        {
            fixed (byte* p = sockaddr) return bind(fd, (sockaddr*)p, (uint)sockaddr.Length) < 0 ? errno : 0;
        }

        public static int Connect(int fd, ReadOnlySpan<byte> sockaddr)
        {
            fixed (byte* p = sockaddr) return connect(fd, (sockaddr*)p, (uint)sockaddr.Length) < 0 ? errno : 0;
        }

        public static int GetInt(int fd, int level, int option, out int value)
        {
            int v = 0;
            socklen_t len = sizeof(int);
            int r = getsockopt(fd, level, option, &v, &len);
            value = v;
            return r < 0 ? errno : 0;
        }

        public static int SetInt(int fd, int level, int option, int value) =>
            setsockopt(fd, level, option, &value, sizeof(int)) < 0 ? errno : 0;

        /// <summary>Reads an option of up to 16 bytes (timeouts, linger); returns its length or -errno.</summary>
        public static int GetRaw(int fd, int level, int option, Span<byte> value)
        {
            socklen_t len = (uint)value.Length;
            fixed (byte* p = value)
                return getsockopt(fd, level, option, p, &len) < 0 ? -errno : (int)(uint)len;
        }

        public static int SetRaw(int fd, int level, int option, ReadOnlySpan<byte> value)
        {
            fixed (byte* p = value) return setsockopt(fd, level, option, p, (uint)value.Length) < 0 ? errno : 0;
        }

        /// <summary>getsockname into <paramref name="buffer"/>; returns the kernel's length or -errno.</summary>
        public static int GetName(int fd, Span<byte> buffer)
        {
            socklen_t len = (uint)buffer.Length;
            fixed (byte* p = buffer)
                return getsockname(fd, (sockaddr*)p, &len) < 0 ? -errno : (int)(uint)len;
        }

        public static int Accept(int fd, int flags, out int accepted)
        {
            accepted = accept4(fd, null, null, flags);
            return accepted < 0 ? errno : 0;
        }

        public static int GetFileFlags(int fd, out int flags)
        {
            flags = fcntl(fd, F_GETFL);
            return flags < 0 ? errno : 0;
        }

        public static int SetNonBlocking(int fd, bool on)
        {
            int flags = fcntl(fd, F_GETFL);
            if (flags < 0) return errno;
            int wanted = on ? flags | ONonblock : flags & ~ONonblock;
            return wanted == flags ? 0 : Err(fcntl(fd, F_SETFL, wanted));
        }

        /// <summary>F_SETFL without the F_GETFL first, for a socket whose flags we know.</summary>
        public static int SetFileFlags(int fd, int flags) => Err(fcntl(fd, F_SETFL, flags));

        public static ulong Inode(int fd)
        {
            stat st;
            return fstat(fd, &st) < 0 ? 0 : (ulong)st.st_ino;
        }

        public static void Close(int fd)
        {
            if (fd >= 0) close(fd);
        }

        /// <summary>Waits for <paramref name="events"/> on fd; true if ready, false on timeout.</summary>
        public static bool Poll(int fd, short events, int timeoutMs)
        {
            var p = new pollfd { fd = fd, events = events };
            return poll(&p, 1, timeoutMs) > 0;
        }
    }
}
