using System.Runtime.InteropServices;
using Unsock.Core;

internal static partial class Interop
{
    /// <summary>
    /// What moving a program's epoll registrations needs: kcmp's KCMP_EPOLL_TFD (3.20, CONFIG_CHECKPOINT_RESTORE),
    /// a private fd table (close_range CLOSE_RANGE_UNSHARE, 5.9), getdents64 on /proc/TID/fd, epoll_ctl, dup2.
    /// Every call returns 0 (or a count/fd) or -errno.
    /// </summary>
    internal static unsafe partial class Epoll
    {
        private const long SysKcmp = 312, SysCloseRange = 436, SysGetdents64 = 217;
        private const int KcmpEpollTfd = 7;
        private const uint CloseRangeUnshare = 2;
        public const int CtlAdd = 1, CtlDel = 2;
        private const int FDupFdCloexec = 1030;

        [StructLayout(LayoutKind.Sequential)]
        private struct KcmpEpollSlot
        {
            public uint Efd, Tfd, Toff;
        }

        [StructLayout(LayoutKind.Sequential, Pack = 4)]
        private struct EpollEvent
        {
            public uint Events;
            public ulong Data;
        }

        [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
        private static partial long Syscall5(long number, long a, long b, long c, long d, void* e);

        [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
        private static partial long Syscall3(long number, long a, long b, long c);

        [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
        private static partial long Syscall3Ptr(long number, long a, void* b, long c);

        [LibraryImport(Libc, EntryPoint = "epoll_ctl", SetLastError = true)]
        private static partial int EpollCtl(int epfd, int op, int fd, EpollEvent* ev);

        [LibraryImport(Libc, EntryPoint = "dup2", SetLastError = true)]
        private static partial int Dup2(int oldFd, int newFd);

        [LibraryImport(Libc, EntryPoint = "fcntl", SetLastError = true)]
        private static partial int FcntlInt(int fd, int cmd, int arg);

        [LibraryImport(Libc, EntryPoint = "open", SetLastError = true)]
        private static partial int Open(byte* path, int flags, int mode);

        [LibraryImport(Libc, EntryPoint = "read", SetLastError = true)]
        private static partial nint Read(int fd, byte* buffer, nuint count);

        [LibraryImport(Libc, EntryPoint = "close")]
        public static partial int Close(int fd);

        private static long Result(long r) => r < 0 ? -Marshal.GetLastPInvokeError() : r;

        /// <summary>
        /// kcmp KCMP_EPOLL_TFD: 0 when the file at <paramref name="fd"/> in <paramref name="pid"/>'s table is the one that
        /// epoll <paramref name="epollFd"/> of <paramref name="targetTid"/> watches as its <paramref name="index"/>-th entry
        /// under fd number <paramref name="watchedFd"/>; 1-3 for another file; -ENOENT no such entry; -EINVAL not an epoll; -EBADF no such fd.
        /// </summary>
        public static int CompareWatched(int pid, int targetTid, int fd, int epollFd, int watchedFd, int index)
        {
            var slot = new KcmpEpollSlot { Efd = (uint)epollFd, Tfd = (uint)watchedFd, Toff = (uint)index };
            return (int)Result(Syscall5(SysKcmp, pid, targetTid, KcmpEpollTfd, fd, &slot));
        }

        [LibraryImport(Libc, EntryPoint = "gettid")]
        public static partial int ThreadId();

        /// <summary>
        /// Gives the calling thread a private fd table holding only fds 0-2 and the runtime's own W^X
        /// double-mapping memfd (the rest of the process keeps its own table). The memfd must stay: a JIT
        /// that compiles a method on this thread maps it by its fd number, and dies if it is gone.
        /// </summary>
        public static int UnshareFdTable()
        {
            // An empty range: unshare, close nothing yet.
            int err = (int)Result(Syscall3(SysCloseRange, uint.MaxValue, uint.MaxValue, CloseRangeUnshare));
            if (err != 0) return err;
            Span<byte> link = stackalloc byte[256];
            foreach (string entry in Directory.GetFiles("/proc/thread-self/fd"))
            {
                if (!int.TryParse(System.IO.Path.GetFileName(entry), out int fd) || fd < 3) continue;
                int n = ReadLink(entry, link);
                if (n > 0 && link[..n].IndexOf("memfd:doublemapper"u8) >= 0) continue;
                Close(fd);
            }
            return 0;
        }

        private static int ReadLink(string path, Span<byte> buffer)
        {
            byte[] z = System.Text.Encoding.UTF8.GetBytes(path + "\0");
            fixed (byte* p = z)
            fixed (byte* b = buffer)
                return (int)Tmds.Linux.LibC.readlink(p, b, buffer.Length);
        }

        /// <summary>getdents64 into <paramref name="buffer"/>: bytes read, 0 at the end, or -errno.</summary>
        public static int ReadDirectory(int dirFd, Span<byte> buffer)
        {
            fixed (byte* p = buffer) return (int)Result(Syscall3Ptr(SysGetdents64, dirFd, p, buffer.Length));
        }

        public static int Control(int epollFd, int op, int fd, uint events, ulong data)
        {
            var ev = new EpollEvent { Events = events, Data = data };
            return EpollCtl(epollFd, op, fd, &ev) < 0 ? -Marshal.GetLastPInvokeError() : 0;
        }

        public static int DuplicateTo(int fd, int number) => Dup2(fd, number) < 0 ? -Marshal.GetLastPInvokeError() : 0;

        /// <summary>A copy of <paramref name="fd"/> at the lowest free number at or above <paramref name="lowest"/>, or -errno.</summary>
        public static int DuplicateAbove(int fd, int lowest)
        {
            int r = FcntlInt(fd, FDupFdCloexec, lowest);
            return r < 0 ? -Marshal.GetLastPInvokeError() : r;
        }

        /// <summary>Opens a /proc path read-only (O_DIRECTORY when asked); the fd or -errno.</summary>
        public static int OpenProc(string path, bool directory)
        {
            Span<byte> z = stackalloc byte[path.Length + 1];
            for (int i = 0; i < path.Length; i++) z[i] = (byte)path[i];
            z[^1] = 0;
            const int ORdonly = 0, ODirectory = 0x10000, OCloexec = 0x80000;
            fixed (byte* p = z)
            {
                int fd = Open(p, ORdonly | OCloexec | (directory ? ODirectory : 0), 0);
                return fd < 0 ? -Marshal.GetLastPInvokeError() : fd;
            }
        }

        /// <summary>read(2): the count, 0 at the end, or -errno.</summary>
        public static int ReadSome(int fd, Span<byte> buffer)
        {
            fixed (byte* p = buffer) return (int)Result(Read(fd, p, (nuint)buffer.Length));
        }
    }
}
