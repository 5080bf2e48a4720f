using System.Runtime.InteropServices;
using Tmds.Linux;
using static Tmds.Linux.LibC;

internal static partial class Interop
{
    /// <summary>A target task's root, working directory and namespaces, reached through /proc/TID, and this thread's own working directory.</summary>
    internal static unsafe partial class TaskContext
    {
        private const long SysFchdir = 81;

        [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
        private static partial long Syscall1(long number, long a);

        private static byte[] Z(string path)
        {
            var bytes = new byte[System.Text.Encoding.UTF8.GetByteCount(path) + 1];
            System.Text.Encoding.UTF8.GetBytes(path, bytes);
            return bytes;
        }

        /// <summary>stat(2), following links (a /proc magic link leads to what it names); 0 or errno.</summary>
        public static int Stat(string path, out ulong device, out ulong inode)
        {
            stat st;
            int r;
            fixed (byte* p = Z(path)) r = LibC.stat(p, &st);
            device = r < 0 ? 0 : (ulong)st.st_dev;
            inode = r < 0 ? 0 : (ulong)st.st_ino;
            return r < 0 ? errno : 0;
        }

        /// <summary>An O_PATH fd of the directory <paramref name="path"/> leads to (/proc/TID/cwd), or -errno.</summary>
        public static int OpenDirectory(string path)
        {
            int fd;
            fixed (byte* p = Z(path)) fd = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
            return fd < 0 ? -errno : fd;
        }

        /// <summary>An O_PATH fd of the directory <paramref name="path"/> leads to, with its device and inode; 0 or errno.</summary>
        public static int OpenDirectory(string path, out int fd, out ulong device, out ulong inode)
        {
            device = inode = 0;
            fixed (byte* p = Z(path)) fd = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
            if (fd < 0) return errno;
            stat st;
            if (fstat(fd, &st) < 0)
            {
                int err = errno;
                close(fd);
                fd = -1;
                return err;
            }
            device = (ulong)st.st_dev;
            inode = (ulong)st.st_ino;
            return 0;
        }

        /// <summary>Makes <paramref name="directoryFd"/> (O_PATH is enough) the working directory of this thread's fs context; 0 or errno.</summary>
        public static int ChangeDirectory(int directoryFd) => Syscall1(SysFchdir, directoryFd) < 0 ? Marshal.GetLastPInvokeError() : 0;
    }
}
