using Unsock.Core;
using System.Runtime.InteropServices;
using Tmds.Linux;
using static Tmds.Linux.LibC;


internal static partial class Interop
{
    /// <summary>
    /// What lives on an open file description besides its flags: the F_SETOWN owner and the F_SETSIG signal
    /// (SIGIO/SIGURG go there), and kcmp to tell whether two fds are the same open file.
    /// </summary>
    internal static unsafe partial class FileOwner
    {
        public const int FGetOwnEx = 16, FSetOwnEx = 15, FGetSig = 11, FSetSig = 10;
        public const int OwnerTid = 0, OwnerPid = 1, OwnerProcessGroup = 2;
        // The file status flags F_SETFL can change (fs/fcntl.c SETFL_MASK): O_APPEND, O_ASYNC, O_DIRECT,
        // O_NOATIME, O_NONBLOCK.
        public const int SettableStatusFlags = 0x400 | 0x2000 | 0x4000 | 0x40000 | 0x800;
        public const int OAsync = 0x2000;
        private const long SysKcmp = 312;
        private const int KcmpFile = 0;

        [StructLayout(LayoutKind.Sequential)]
        private struct OwnerEx
        {
            public int Type;
            public int Pid;
        }

        [LibraryImport(Libc, EntryPoint = "fcntl", SetLastError = true)]
        private static partial int FcntlPointer(int fd, int command, void* argument);

        [LibraryImport(Libc, EntryPoint = "fcntl", SetLastError = true)]
        private static partial int FcntlInt(int fd, int command, int argument);

        [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
        private static partial long Syscall5(long number, long a, long b, long c, long d, long e);

        /// <summary>The owner (F_GETOWN_EX): type and pid, pid 0 when none. 0 or errno.</summary>
        public static int GetOwner(int fd, out int type, out int pid)
        {
            var o = new OwnerEx();
            int r = FcntlPointer(fd, FGetOwnEx, &o);
            type = o.Type;
            pid = o.Pid;
            return r < 0 ? Marshal.GetLastPInvokeError() : 0;
        }

        public static int SetOwner(int fd, int type, int pid)
        {
            var o = new OwnerEx { Type = type, Pid = pid };
            return FcntlPointer(fd, FSetOwnEx, &o) < 0 ? Marshal.GetLastPInvokeError() : 0;
        }

        /// <summary>The F_SETSIG signal, 0 (SIGIO) when unset, or -errno.</summary>
        public static int GetSignal(int fd)
        {
            int r = FcntlInt(fd, FGetSig, 0);
            return r < 0 ? -Marshal.GetLastPInvokeError() : r;
        }

        public static int SetSignal(int fd, int signal) =>
            FcntlInt(fd, FSetSig, signal) < 0 ? Marshal.GetLastPInvokeError() : 0;

        /// <summary>
        /// kcmp(KCMP_FILE): 0 when our <paramref name="ownFd"/> and task <paramref name="tid"/>'s
        /// <paramref name="targetFd"/> are the same open file, 1 when they differ, or -errno (EBADF: the
        /// target has no such fd; ENOSYS: a kernel without CONFIG_KCMP).
        /// </summary>
        public static int SameFile(int ownFd, int tid, int targetFd)
        {
            long r = Syscall5(SysKcmp, Environment.ProcessId, tid, KcmpFile, ownFd, targetFd);
            return r < 0 ? -Marshal.GetLastPInvokeError() : r == 0 ? 0 : 1;
        }

        /// <summary>shutdown(2); 0 or errno.</summary>
        public static int Shutdown(int fd, int how) => LibC.shutdown(fd, how) < 0 ? errno : 0;

        /// <summary>stat() of a path, following links (/proc/TID/fd/N shows the file itself); 0 or errno.</summary>
        public static int Stat(string path, out uint mode, out ulong inode)
        {
            stat st;
            byte[] z = System.Text.Encoding.UTF8.GetBytes(path + "\0");
            int r;
            fixed (byte* p = z) r = LibC.stat(p, &st);
            mode = r < 0 ? 0 : (uint)st.st_mode;
            inode = r < 0 ? 0 : (ulong)st.st_ino;
            return r < 0 ? errno : 0;
        }
    }

    internal static unsafe partial class Socket
    {
        public const int MsgDontWait = 0x40, MsgNoSignal = 0x4000, MsgFastOpen = 0x20000000;

        /// <summary>send(2); the byte count or -errno.</summary>
        public static long Send(int fd, ReadOnlySpan<byte> data, int flags)
        {
            fixed (byte* p = data)
            {
                long n = send(fd, p, (size_t)data.Length, flags);
                return n < 0 ? -errno : n;
            }
        }
    }
}
