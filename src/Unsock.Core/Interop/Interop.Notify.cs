using System.Text;
using Tmds.Linux;
using static Tmds.Linux.LibC;

internal static partial class Interop
{
    /// <summary>
    /// sd_pid_notify_with_fds(3) without libsystemd: one datagram to $NOTIFY_SOCKET (a path, or an abstract name
    /// written with a leading '@'), with the fds attached by SCM_RIGHTS. systemd keeps fds sent with FDSTORE=1.
    /// </summary>
    internal static unsafe class Notify
    {
        /// <summary>Sends <paramref name="message"/> (with <paramref name="fd"/> unless -1) to <paramref name="socketPath"/>; 0 or an errno.</summary>
        public static int Send(string socketPath, string message, int fd)
        {
            byte[] path = Encoding.UTF8.GetBytes(socketPath);
            if (path.Length == 0 || path.Length > 107) return ENAMETOOLONG;
            if (path[0] == (byte)'@') path[0] = 0;
            var sa = new sockaddr_un { sun_family = AF_UNIX };
            for (int i = 0; i < path.Length; i++) sa.sun_path[i] = path[i];
            // An abstract name is exactly its bytes; a path ends at its NUL.
            uint size = (uint)(2 + path.Length + (path[0] == 0 ? 0 : 1));
            int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            if (s < 0) return errno;
            try
            {
                if (connect(s, (sockaddr*)&sa, size) < 0) return errno;
                return ControlSocket.Send(s, Encoding.UTF8.GetBytes(message), fd);
            }
            finally
            {
                close(s);
            }
        }
    }
}
