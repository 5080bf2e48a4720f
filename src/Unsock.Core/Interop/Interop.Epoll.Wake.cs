using static Tmds.Linux.LibC;

internal static partial class Interop
{
    internal static unsafe partial class Epoll
    {
        /// <summary>A non-blocking, close-on-exec eventfd (a move's wake-up for the poller), or -errno.</summary>
        public static int CreateEventFd()
        {
            int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            return fd < 0 ? -errno : fd;
        }

        /// <summary>Makes the eventfd <paramref name="fd"/> readable.</summary>
        public static void Signal(int fd)
        {
            ulong one = 1;
            write(fd, &one, 8);
        }
    }
}
