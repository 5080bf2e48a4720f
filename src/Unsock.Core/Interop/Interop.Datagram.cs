using Unsock.Core;
using Tmds.Linux;
using static Tmds.Linux.LibC;


internal static partial class Interop
{
    /// <summary>Datagram sends and receives the supervisor carries out on its copy of a program's socket.</summary>
    internal static unsafe partial class Socket
    {
        public const int MsgPeek = 0x2, MsgCtrunc = 0x8, MsgTrunc = 0x20, MsgWaitForOne = 0x10000, MsgCmsgCloexec = 0x40000000;

        /// <summary>sendmsg(2) of one buffer to <paramref name="sockaddr"/> (empty: no address), with raw control bytes; the count or -errno.</summary>
        public static long SendTo(int fd, ReadOnlySpan<byte> data, int flags, ReadOnlySpan<byte> sockaddr, ReadOnlySpan<byte> control = default)
        {
            fixed (byte* d = data)
            fixed (byte* a = sockaddr)
            fixed (byte* c = control)
            {
                var iov = new iovec { iov_base = d, iov_len = (size_t)data.Length };
                var msg = new msghdr
                {
                    msg_name = sockaddr.IsEmpty ? null : a,
                    msg_namelen = (socklen_t)(uint)sockaddr.Length,
                    msg_iov = &iov,
                    msg_iovlen = 1,
                    msg_control = control.IsEmpty ? null : c,
                    msg_controllen = (socklen_t)(uint)control.Length,
                };
                long n = sendmsg(fd, &msg, flags);
                return n < 0 ? -errno : n;
            }
        }

        /// <summary>
        /// recvmsg(2) into one buffer, without control messages (fds sent along are closed by the kernel and
        /// MSG_CTRUNC is set); the count or -errno, the sender's address length and the message flags.
        /// </summary>
        public static long ReceiveFrom(int fd, Span<byte> buffer, int flags, Span<byte> sockaddr, out int sockaddrLength, out int messageFlags)
        {
            fixed (byte* d = buffer)
            fixed (byte* a = sockaddr)
            {
                var iov = new iovec { iov_base = d, iov_len = (size_t)buffer.Length };
                var msg = new msghdr { msg_name = a, msg_namelen = (socklen_t)(uint)sockaddr.Length, msg_iov = &iov, msg_iovlen = 1 };
                long n = recvmsg(fd, &msg, flags);
                sockaddrLength = n < 0 ? 0 : (int)(uint)msg.msg_namelen;
                messageFlags = n < 0 ? 0 : msg.msg_flags;
                return n < 0 ? -errno : n;
            }
        }
    }
}
