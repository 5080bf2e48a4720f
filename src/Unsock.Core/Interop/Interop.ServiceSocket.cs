using System.Runtime.InteropServices;
using System.Text;
using Tmds.Linux;
using static Tmds.Linux.LibC;

internal static partial class Interop
{
    /// <summary>
    /// The supervisor service's side of the control socket: checking a socket systemd passed, accepting with
    /// bounded waits, and polling many connections from one thread. 0 or an errno unless said otherwise.
    /// </summary>
    internal static unsafe partial class ServiceSocket
    {
        private const int SoDomain = 39, SoAcceptConn = 30;

        /// <summary>0 when <paramref name="fd"/> is an AF_UNIX SOCK_SEQPACKET socket in the listening state; else a description of what it is.</summary>
        public static string? DescribeUnlessSeqpacketListener(int fd)
        {
            int domain = 0, type = 0, listening = 0;
            socklen_t len = sizeof(int);
            if (getsockopt(fd, SOL_SOCKET, SoDomain, &domain, &len) < 0) return $"not a socket ({Marshal.GetPInvokeErrorMessage(errno)})";
            len = sizeof(int);
            getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
            len = sizeof(int);
            getsockopt(fd, SOL_SOCKET, SoAcceptConn, &listening, &len);
            if (domain != AF_UNIX) return $"a socket of address family {domain}, not AF_UNIX";
            if (type != SOCK_SEQPACKET) return $"a socket of type {type}, not SOCK_SEQPACKET (systemd: ListenSequentialPacket=)";
            if (listening == 0) return "a socket that is not listening";
            return null;
        }

        /// <summary>Accepts one pending connection (close-on-exec); EAGAIN when none is pending.</summary>
        public static int Accept(int listenFd, out int fd)
        {
            while (true)
            {
                fd = accept4(listenFd, null, null, SOCK_CLOEXEC);
                if (fd >= 0) return 0;
                if (errno != EINTR) return errno;
            }
        }

        public static int SetCloseOnExec(int fd) => fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ? errno : 0;

        public static int SetNonBlocking(int fd)
        {
            int flags = fcntl(fd, F_GETFL, 0);
            if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return errno;
            return 0;
        }

        /// <summary>Bounds every blocking send and receive on <paramref name="fd"/> to <paramref name="milliseconds"/>.</summary>
        public static int SetTimeouts(int fd, int milliseconds)
        {
            long* tv = stackalloc long[2]; // struct timeval: seconds, microseconds
            tv[0] = milliseconds / 1000;
            tv[1] = milliseconds % 1000 * 1000L;
            if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16) < 0) return errno;
            if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, tv, 16) < 0) return errno;
            return 0;
        }

        /// <summary>
        /// poll(2) for readability (or hang-up) of <paramref name="fds"/>; <paramref name="ready"/> gets true for
        /// each that has something. The number ready, 0 on timeout, or -errno (EINTR is retried by the caller).
        /// </summary>
        public static int WaitReadable(ReadOnlySpan<int> fds, Span<bool> ready, int timeoutMs)
        {
            var pfds = new pollfd[fds.Length];
            for (int i = 0; i < fds.Length; i++) pfds[i] = new pollfd { fd = fds[i], events = POLLIN };
            int n;
            fixed (pollfd* p = pfds) n = poll(p, (ulong_t)(ulong)fds.Length, timeoutMs);
            if (n < 0) return -errno;
            for (int i = 0; i < fds.Length; i++) ready[i] = pfds[i].revents != 0;
            return n;
        }

        /// <summary>An eventfd that wakes a poll loop (non-blocking, close-on-exec).</summary>
        public static int CreateWake(out int fd)
        {
            fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            return fd < 0 ? errno : 0;
        }

        public static void Signal(int wakeFd)
        {
            ulong one = 1;
            write(wakeFd, &one, 8);
        }

        public static void Drain(int wakeFd)
        {
            ulong value;
            read(wakeFd, &value, 8);
        }

        private static byte[] Z(string path)
        {
            var bytes = new byte[Encoding.UTF8.GetByteCount(path) + 1];
            Encoding.UTF8.GetBytes(path, bytes);
            return bytes;
        }

        public static int Chmod(string path, int mode)
        {
            fixed (byte* p = Z(path)) return chmod(p, (mode_t)mode) < 0 ? errno : 0;
        }

        /// <summary>Changes the group only (the owner stays).</summary>
        public static int ChangeGroup(string path, uint gid)
        {
            fixed (byte* p = Z(path)) return lchown(p, unchecked((uid_t)uint.MaxValue), gid) < 0 ? errno : 0;
        }

        public static int ProcessId() => getpid();

        public static uint EffectiveUid() => geteuid();
    }
}
