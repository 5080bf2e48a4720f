using Unsock.Core;
using System.Runtime.InteropServices;
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

        /// <summary>stat(2), following links; 0 or errno.</summary>
        public static int Stat(string path, out FileStatus status)
        {
            stat st;
            fixed (byte* p = Z(path))
            {
                if (stat(p, &st) < 0) { status = default; return errno; }
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

        private const int AtSymlinkNoFollow = 0x100;

        [LibraryImport(Libc, EntryPoint = "fstatat", SetLastError = true)]
        private static partial int FStatAt(int dirFd, byte* path, stat* buf, int flags);

        /// <summary>
        /// A directory opened O_PATH: what the file work for a socket file is anchored at, so that nothing
        /// a target renames or swaps afterwards can move that work somewhere else.
        /// </summary>
        internal sealed class DirectoryHandle() : SafeHandle(-1, ownsHandle: true)
        {
            internal DirectoryHandle(int fd) : this() => SetHandle(fd);

            public override bool IsInvalid => handle == -1;

            public int Fd => (int)handle;

            protected override bool ReleaseHandle() => close((int)handle) == 0;
        }

        /// <summary>Opens directory <paramref name="path"/> (symlinks followed) as O_PATH; 0 or errno.</summary>
        public static int OpenDirectory(string path, out DirectoryHandle? directory)
        {
            int fd;
            fixed (byte* p = Z(path)) fd = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
            directory = fd < 0 ? null : new DirectoryHandle(fd);
            return fd < 0 ? errno : 0;
        }

        /// <summary>Opens directory <paramref name="name"/> in <paramref name="parent"/> as O_PATH, not following a symlink; 0 or errno.</summary>
        public static int OpenDirectoryAt(int parent, string name, out DirectoryHandle? directory)
        {
            int fd;
            fixed (byte* p = Z(name)) fd = openat(parent, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
            directory = fd < 0 ? null : new DirectoryHandle(fd);
            return fd < 0 ? errno : 0;
        }

        private const long SysOpenat2 = 437;
        private const ulong ResolveNoMagicLinks = 0x02, ResolveInRoot = 0x10;

        [StructLayout(LayoutKind.Sequential)]
        private struct OpenHow
        {
            public ulong Flags, Mode, Resolve;
        }

        [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
        private static partial long Openat2(long number, int dirFd, byte* path, OpenHow* how, nuint size);

        /// <summary>
        /// Opens <paramref name="path"/> as O_PATH the way a process whose root is <paramref name="root"/> sees it:
        /// openat2 with RESOLVE_IN_ROOT ("/", "..", absolute symlinks all stay at <paramref name="root"/>) and
        /// RESOLVE_NO_MAGICLINKS (no /proc/PID/fd jump out of it). Symlinks are followed, the last one too.
        /// 0 or errno (ENOSYS before Linux 5.6).
        /// </summary>
        public static int OpenInRoot(int root, string path, bool directory, out int fd) => Open2(root, path, directory, ResolveInRoot, out fd);

        /// <summary>
        /// Opens relative <paramref name="path"/> from <paramref name="start"/> as O_PATH with RESOLVE_BENEATH (EXDEV for
        /// anything that would leave it: "..", absolute paths and symlinks) and RESOLVE_NO_MAGICLINKS; 0 or errno.
        /// </summary>
        public static int OpenBeneath(int start, string path, bool directory, out int fd) => Open2(start, path, directory, ResolveBeneath, out fd);

        private const ulong ResolveBeneath = 0x08;

        private static int Open2(int start, string path, bool directory, ulong resolve, out int fd)
        {
            string relative = path.TrimStart('/');
            var how = new OpenHow
            {
                Flags = (ulong)(O_PATH | O_CLOEXEC | (directory ? O_DIRECTORY : 0)),
                Resolve = resolve | ResolveNoMagicLinks,
            };
            fixed (byte* p = Z(relative.Length == 0 ? "." : relative))
                fd = (int)Openat2(SysOpenat2, start, p, &how, (nuint)sizeof(OpenHow));
            return fd < 0 ? Marshal.GetLastPInvokeError() : 0;
        }

        /// <summary>As <see cref="OpenDirectory"/>, seen from <paramref name="root"/> (see <see cref="OpenInRoot"/>).</summary>
        public static int OpenDirectoryInRoot(int root, string path, out DirectoryHandle? directory)
        {
            int err = OpenInRoot(root, path, directory: true, out int fd);
            directory = err != 0 ? null : new DirectoryHandle(fd);
            return err;
        }

        public static int MkdirAt(int directory, string name, int mode)
        {
            fixed (byte* p = Z(name)) return mkdirat(directory, p, (mode_t)mode) < 0 ? errno : 0;
        }

        /// <summary>fstat of an open <paramref name="fd"/>; 0 or errno.</summary>
        public static int Fstat(int fd, out FileStatus status)
        {
            stat st;
            if (fstat(fd, &st) < 0) { status = default; return errno; }
            status = new((ulong)st.st_dev, (ulong)st.st_ino, (uint)st.st_mode, (long)st.st_size, (uint)st.st_uid);
            return 0;
        }

        /// <summary>fstatat(AT_SYMLINK_NOFOLLOW) of entry <paramref name="name"/> of <paramref name="directory"/>; 0 or errno.</summary>
        public static int StatAt(int directory, string name, out FileStatus status)
        {
            stat st;
            fixed (byte* p = Z(name))
            {
                if (FStatAt(directory, p, &st, AtSymlinkNoFollow) < 0) { status = default; return Marshal.GetLastPInvokeError(); }
            }
            status = new((ulong)st.st_dev, (ulong)st.st_ino, (uint)st.st_mode, (long)st.st_size, (uint)st.st_uid);
            return 0;
        }

        public static int UnlinkAt(int directory, string name)
        {
            fixed (byte* p = Z(name)) return unlinkat(directory, p, 0) < 0 ? errno : 0;
        }

        public static int ChmodAt(int directory, string name, int mode)
        {
            fixed (byte* p = Z(name)) return fchmodat(directory, p, (mode_t)mode, 0) < 0 ? errno : 0;
        }

        /// <summary>Gives the calling thread its own umask, cwd and root (unshare(CLONE_FS)); 0 or errno.</summary>
        public static int UnshareFileSystemContext() => unshare(CLONE_FS) < 0 ? errno : 0;
    }
}
