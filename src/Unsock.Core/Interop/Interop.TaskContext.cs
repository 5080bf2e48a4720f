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

        /// <summary>
        /// Whether the namespace link <paramref name="path"/> (/proc/TID/ns/mnt) reads <paramref name="expected"/>
        /// ("mnt:[INODE]"): a readlink costs half a stat of the link, which makes nsfs look the namespace up.
        /// </summary>
        public static int NamespaceIs(string path, ReadOnlySpan<byte> expected, out bool same)
        {
            same = false;
            byte* buffer = stackalloc byte[64];
            long n;
            fixed (byte* p = Z(path)) n = (long)readlink(p, buffer, 64);
            if (n < 0) return errno;
            same = new ReadOnlySpan<byte>(buffer, (int)n).SequenceEqual(expected);
            return 0;
        }

        /// <summary>What the namespace link <paramref name="path"/> reads (/proc/self/ns/mnt: "mnt:[INODE]"); empty when unreadable.</summary>
        public static byte[] ReadNamespace(string path)
        {
            byte* buffer = stackalloc byte[64];
            long n;
            fixed (byte* p = Z(path)) n = (long)readlink(p, buffer, 64);
            return n <= 0 ? [] : new ReadOnlySpan<byte>(buffer, (int)n).ToArray();
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
