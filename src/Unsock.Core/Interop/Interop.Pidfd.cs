using Unsock.Core;
using System.Runtime.InteropServices;


internal static partial class Interop
{
    /// <summary>pidfd_open (5.3) and pidfd_getfd (5.6): a copy of a target's file descriptor.</summary>
    internal static partial class Pidfd
    {
        private const long SysPidfdOpen = 434;
        private const long SysPidfdGetfd = 438;
        // PIDFD_THREAD (6.9) lets us open a pidfd on any thread id, which is what notifications carry.
        public const uint PidfdThread = 0x80; // O_EXCL

        [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
        private static partial long Syscall3(long number, long a, long b, long c);

        /// <summary>A pidfd for thread or process <paramref name="pid"/>, or -errno.</summary>
        public static int Open(int pid, uint flags)
        {
            long r = Syscall3(SysPidfdOpen, pid, flags, 0);
            return r < 0 ? -Marshal.GetLastPInvokeError() : (int)r;
        }

        /// <summary>Our own copy (O_CLOEXEC) of the target's <paramref name="targetFd"/>, or -errno.</summary>
        public static int GetFd(int pidfd, int targetFd)
        {
            long r = Syscall3(SysPidfdGetfd, pidfd, targetFd, 0);
            return r < 0 ? -Marshal.GetLastPInvokeError() : (int)r;
        }
    }
}
