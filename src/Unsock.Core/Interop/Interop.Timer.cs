using System.Runtime.InteropServices;

internal static partial class Interop
{
    /// <summary>timerfd: a one-shot alarm a thread can sleep on in poll next to other fds.</summary>
    internal static unsafe partial class Timer
    {
        private const int ClockMonotonic = 1;
        private const int TfdNonblock = 0x800, TfdCloexec = 0x80000;

        [StructLayout(LayoutKind.Sequential)]
        private struct ITimerSpec
        {
            public long IntervalSeconds, IntervalNanoseconds, ValueSeconds, ValueNanoseconds;
        }

        [LibraryImport(Libc, EntryPoint = "timerfd_create", SetLastError = true)]
        private static partial int TimerFdCreate(int clock, int flags);

        [LibraryImport(Libc, EntryPoint = "timerfd_settime")]
        private static partial int TimerFdSetTime(int fd, int flags, ITimerSpec* value, ITimerSpec* old);

        /// <summary>A non-blocking, close-on-exec timerfd on CLOCK_MONOTONIC; -errno when it cannot be made.</summary>
        public static int Create()
        {
            int fd = TimerFdCreate(ClockMonotonic, TfdNonblock | TfdCloexec);
            return fd >= 0 ? fd : -Marshal.GetLastPInvokeError();
        }

        /// <summary>Fires once, <paramref name="microseconds"/> from now (0 disarms); earlier settings are replaced.</summary>
        public static void Arm(int fd, long microseconds)
        {
            var spec = new ITimerSpec { ValueSeconds = microseconds / 1_000_000, ValueNanoseconds = microseconds % 1_000_000 * 1000 };
            TimerFdSetTime(fd, 0, &spec, null);
        }
    }
}
