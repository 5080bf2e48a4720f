using Unsock.Core;
using System.Text;
using Tmds.Linux;
using static Tmds.Linux.LibC;


internal static partial class Interop
{
    /// <summary>Path calls on socket files: lstat, mkdir, chmod, unlink, small /proc reads. 0 or errno.</summary>
    internal static unsafe partial class FileSystem
    {
        public const uint TypeMask = 0xF000, TypeSocket = 0xC000, TypeRegular = 0x8000, TypeDirectory = 0x4000;

        public readonly record struct FileStatus(ulong Device, ulong Inode, uint Mode, long Size, uint Uid)
        {
            public bool IsSocket => (Mode & TypeMask) == TypeSocket;
            public bool IsDirectory => (Mode & TypeMask) == TypeDirectory;
        }

        private static byte[] Z(string path)
        {
            var bytes = new byte[Encoding.UTF8.GetByteCount(path) + 1];
            Encoding.UTF8.GetBytes(path, bytes);
            return bytes;
        }

        public static int Lstat(string path, out FileStatus status)
        {
            stat st;
            fixed (byte* p = Z(path))
            {
                if (lstat(p, &st) < 0) { status = default; return errno; }
            }
            status = new((ulong)st.st_dev, (ulong)st.st_ino, (uint)st.st_mode, (long)st.st_size, (uint)st.st_uid);
            return 0;
        }

        /// <summary>Reads up to buffer.Length bytes of a small file (a /proc entry); the count or -errno.</summary>
        public static int ReadSmallFile(string path, Span<byte> buffer)
        {
            int fd;
            fixed (byte* p = Z(path)) fd = open(p, O_RDONLY | O_CLOEXEC, 0);
            if (fd < 0) return -errno;
            int total = 0;
            fixed (byte* b = buffer)
            {
                while (total < buffer.Length)
                {
                    long n = read(fd, b + total, (size_t)(buffer.Length - total));
                    if (n <= 0) break;
                    total += (int)n;
                }
            }
            close(fd);
            return total;
        }

        public static int Mkdir(string path, int mode)
        {
            fixed (byte* p = Z(path)) return mkdir(p, (mode_t)mode) < 0 ? errno : 0;
        }

        public static int Chmod(string path, int mode)
        {
            fixed (byte* p = Z(path)) return chmod(p, (mode_t)mode) < 0 ? errno : 0;
        }

        public static int Unlink(string path)
        {
            fixed (byte* p = Z(path)) return unlink(p) < 0 ? errno : 0;
        }

        public static int OpenDirectoryPath(string path, out int fd, bool pathOnly = true)
        {
            fixed (byte* p = Z(path)) fd = open(p, (pathOnly ? O_PATH : O_RDONLY) | O_DIRECTORY | O_CLOEXEC, 0);
            return fd < 0 ? errno : 0;
        }

        /// <summary>Opens file NUMBER (decimal) in directory <paramref name="dirFd"/> for reading; 0 or -errno.</summary>
        public static int OpenAt(int dirFd, int number, out int fd)
        {
            byte* name = stackalloc byte[12];
            int len = 0;
            Span<byte> digits = stackalloc byte[11];
            uint v = (uint)number;
            do { digits[len++] = (byte)('0' + v % 10); v /= 10; } while (v != 0);
            for (int i = 0; i < len; i++) name[i] = digits[len - 1 - i];
            name[len] = 0;
            fd = openat(dirFd, name, O_RDONLY | O_CLOEXEC, 0);
            return fd < 0 ? -errno : 0;
        }

        /// <summary>pread at offset 0 (a /proc file shows its current state again); the count or -errno.</summary>
        public static int ReadAtStart(int fd, Span<byte> buffer)
        {
            long n;
            fixed (byte* b = buffer) n = pread(fd, b, (size_t)buffer.Length, 0);
            return n < 0 ? -errno : (int)n;
        }

        public static int SetUmask(int mask) => (int)(uint)umask((mode_t)mask);
    }
}
