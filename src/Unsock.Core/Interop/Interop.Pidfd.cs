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

        // PIDFD_GET_INFO (6.13): _IOWR(PIDFS_IOCTL_MAGIC 0xFF, 11, struct pidfd_info), the 64-byte first version.
        private const uint PidfdGetInfo = 0xC040FF0B;
        private const ulong PidfdInfoCreds = 1 << 1;

        [StructLayout(LayoutKind.Sequential)]
        internal struct PidfdInfo
        {
            public ulong Mask, CgroupId;
            public uint Pid, Tgid, Ppid, Ruid, Rgid, Euid, Egid, Suid, Sgid, FsUid, FsGid, Spare0;
        }

        [LibraryImport(Libc, EntryPoint = "ioctl", SetLastError = true)]
        private static unsafe partial int Ioctl(int fd, nuint request, void* arg);

        /// <summary>The filesystem uid and gid of the task behind <paramref name="pidfd"/>; false on kernels before 6.13.</summary>
        public static unsafe bool TryGetFsIds(int pidfd, out uint uid, out uint gid)
        {
            var info = new PidfdInfo { Mask = PidfdInfoCreds };
            bool ok = Ioctl(pidfd, PidfdGetInfo, &info) == 0 && (info.Mask & PidfdInfoCreds) != 0;
            uid = info.FsUid;
            gid = info.FsGid;
            return ok;
        }

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
