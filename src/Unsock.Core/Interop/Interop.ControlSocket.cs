using System.Runtime.InteropServices;
using Tmds.Linux;
using Unsock.Core.Addressing;
using static Tmds.Linux.LibC;

internal static partial class Interop
{
    /// <summary>
    /// The supervisor's control socket: AF_UNIX SOCK_SEQPACKET (one message per record, so a message and
    /// the listener it carries by SCM_RIGHTS arrive together or not at all), and the kernel's word on the peer.
    /// </summary>
    internal static unsafe partial class ControlSocket
    {
        private const int SoPeerPidfd = 77; // 6.5
        private const int ScmRights = 1;

        /// <summary>A new SOCK_SEQPACKET|SOCK_CLOEXEC socket connected to <paramref name="path"/>; 0 or an errno.</summary>
        public static int Connect(string path, out int fd) => Open(path, backlog: -1, out fd);

        /// <summary>A listening SOCK_SEQPACKET|SOCK_CLOEXEC socket bound at <paramref name="path"/>; 0 or an errno.</summary>
        public static int Listen(string path, int backlog, out int fd) => Open(path, backlog, out fd);

        /// <summary>Connects (<paramref name="backlog"/> below 0) or binds and listens.</summary>
        private static int Open(string path, int backlog, out int fd)
        {
            fd = -1;
            Span<byte> sa = stackalloc byte[UnixAddress.MaxSize];
            if (!UnixAddress.TryEncode(path, sa, out int size)) return ENAMETOOLONG;
            int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
            if (s < 0) return errno;
            fixed (byte* p = sa)
            {
                while (backlog < 0 ? connect(s, (sockaddr*)p, (uint)size) < 0 : bind(s, (sockaddr*)p, (uint)size) < 0 || listen(s, backlog) < 0)
                {
                    int err = errno;
                    if (err == EINTR && backlog < 0) continue;
                    close(s);
                    return err;
                }
            }
            fd = s;
            return 0;
        }

        /// <summary>cmsg_len for <paramref name="dataLength"/> bytes of data: the aligned header and the data, not padded (CMSG_LEN(3)).</summary>
        internal static long CmsgLen(int dataLength) => ((sizeof(cmsghdr) + 7) & ~7) + dataLength;

        /// <summary>Sends one record, with <paramref name="passFd"/> attached when it is not -1; 0 or an errno.</summary>
        public static int Send(int fd, ReadOnlySpan<byte> message, int passFd)
        {
            byte* control = stackalloc byte[64];
            fixed (byte* data = message)
            {
                var iov = new iovec { iov_base = data, iov_len = (size_t)message.Length };
                var msg = new msghdr { msg_iov = &iov, msg_iovlen = 1 };
                if (passFd >= 0)
                {
                    new Span<byte>(control, 64).Clear();
                    msg.msg_control = control;
                    msg.msg_controllen = (socklen_t)(uint)CMSG_SPACE(sizeof(int));
                    cmsghdr* c = CMSG_FIRSTHDR(&msg);
                    c->cmsg_level = SOL_SOCKET;
                    c->cmsg_type = ScmRights;
                    // Not Tmds.LibC's CMSG_LEN (0.5.0), which aligns the data too: 24 bytes for one int, which the
                    // kernel reads as two fds, the second being fd 0 (the zeroed padding), our stdin.
                    c->cmsg_len = (socklen_t)(uint)CmsgLen(sizeof(int));
                    *(int*)CMSG_DATA(c) = passFd;
                }
                while (true)
                {
                    ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
                    if (n >= 0) return n == message.Length ? 0 : EMSGSIZE;
                    if (errno != EINTR) return errno;
                }
            }
        }

        /// <summary>
        /// Receives one record into <paramref name="buffer"/>: its length, or -errno. Every fd it carried is
        /// received close-on-exec; the first is returned in <paramref name="passedFd"/> (else -1) and any
        /// others are closed. A record longer than the buffer, or whose fds did not all fit, is EMSGSIZE
        /// (with nothing kept).
        /// </summary>
        public static int Receive(int fd, Span<byte> buffer, out int passedFd)
        {
            passedFd = -1;
            const int ControlBytes = 256; // room for many fds: those a sender adds beyond the first are closed
            byte* control = stackalloc byte[ControlBytes];
            fixed (byte* data = buffer)
            {
                var iov = new iovec { iov_base = data, iov_len = (size_t)buffer.Length };
                var msg = new msghdr { msg_iov = &iov, msg_iovlen = 1, msg_control = control, msg_controllen = ControlBytes };
                ssize_t n;
                while ((n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC)) < 0)
                {
                    if (errno != EINTR) return -errno;
                }
                for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != null; c = CMSG_NXTHDR(&msg, c))
                {
                    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != ScmRights) continue;
                    int count = (int)(((long)(uint)c->cmsg_len - (long)CmsgLen(0)) / sizeof(int));
                    int* fds = (int*)CMSG_DATA(c);
                    for (int i = 0; i < count; i++)
                    {
                        if (passedFd < 0) passedFd = fds[i];
                        else close(fds[i]);
                    }
                }
                if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0)
                {
                    if (passedFd >= 0) close(passedFd);
                    passedFd = -1;
                    return -EMSGSIZE;
                }
                return (int)n;
            }
        }

        /// <summary>The peer's pid, uid and gid as the kernel recorded them at connect (SO_PEERCRED).</summary>
        public static int PeerCredentials(int fd, out int pid, out uint uid, out uint gid)
        {
            ucred cred = default;
            socklen_t len = (uint)sizeof(ucred);
            int r = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
            pid = cred.pid;
            uid = cred.uid;
            gid = cred.gid;
            return r < 0 ? errno : 0;
        }

        /// <summary>A pidfd for the peer's process (SO_PEERPIDFD, 6.5): -1 with the errno on older kernels.</summary>
        public static int PeerPidfd(int fd, out int pidfd)
        {
            int value = -1;
            socklen_t len = sizeof(int);
            int r = getsockopt(fd, SOL_SOCKET, SoPeerPidfd, &value, &len);
            pidfd = r < 0 ? -1 : value;
            return r < 0 ? errno : 0;
        }

        /// <summary>Waits up to <paramref name="timeoutMs"/> for <paramref name="fd"/> to be readable: true when it is (or hung up).</summary>
        public static bool WaitReadable(int fd, int timeoutMs)
        {
            var p = new pollfd { fd = fd, events = POLLIN };
            long deadline = Environment.TickCount64 + timeoutMs;
            while (true)
            {
                int left = (int)Math.Max(0, deadline - Environment.TickCount64);
                int r = poll(&p, 1, left);
                if (r > 0) return true;
                if (r == 0) return false;
                if (errno != EINTR) return true; // let the read report it
            }
        }

        public static void Close(int fd)
        {
            if (fd >= 0) close(fd);
        }
    }
}
