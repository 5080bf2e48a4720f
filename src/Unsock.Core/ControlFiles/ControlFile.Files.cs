using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace Unsock.Core.ControlFiles;

// Reading and creating control files on disk.
public sealed partial class ControlFile
{
    /// <summary>
    /// Loads the control file at <paramref name="path"/>. False when the path is not one (missing, not
    /// a regular file, not 452 bytes, no magic): the caller treats it as a socket path. Throws
    /// <see cref="ControlFileException"/> when the file has the magic but is corrupt, or when a
    /// 452-byte regular file cannot be read (no permission, or a lease: then at once, never blocking).
    /// </summary>
    public static bool TryLoad(string path, out ControlFile? file)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (path.Length == 0 || path.Contains('\0'))
        {
            file = null;
            return false;
        }
        return TryLoad(Encoding.UTF8.GetBytes(path), out file);
    }

    /// <summary>
    /// As <see cref="TryLoad(string, out ControlFile?)"/> for a path given as raw bytes (e.g. a sun_path
    /// read from another process); a NUL ends the path.
    /// </summary>
    public static unsafe bool TryLoad(ReadOnlySpan<byte> path, out ControlFile? file)
    {
        file = null;
        int nul = path.IndexOf((byte)0);
        if (nul >= 0)
        {
            path = path[..nul];
        }
        if (path.IsEmpty)
        {
            return false;
        }
        byte[] terminated = new byte[path.Length + 1];
        path.CopyTo(terminated);
        fixed (byte* p = terminated)
        {
            return TryLoadAt(AT_FDCWD, p, Encoding.UTF8.GetString(path), out file);
        }
    }

    /// <summary>
    /// As <see cref="TryLoad(string, out ControlFile?)"/> for entry <paramref name="name"/> of the open
    /// directory <paramref name="directoryFd"/>; <paramref name="display"/> names it in messages.
    /// </summary>
    internal static unsafe bool TryLoadAt(int directoryFd, string name, string display, out ControlFile? file)
    {
        file = null;
        if (name.Length == 0 || name.Contains('\0'))
        {
            return false;
        }
        fixed (byte* p = Encoding.UTF8.GetBytes(name + "\0"))
        {
            return TryLoadAt(directoryFd, p, display, out file);
        }
    }

    /// <summary>
    /// Whatever a target put at a socket path (a FIFO, a device, a file it holds a lease on) must not block us
    /// or be opened for real: the entry is first opened O_PATH (that opens nothing, and a symlink is followed
    /// only to look at what it names, as the original's stat did), its type and size are checked on that fd,
    /// and only a regular 452-byte file is then opened for reading, through that very fd and non-blocking, so
    /// a lease answers EWOULDBLOCK at once.
    /// </summary>
    private static unsafe bool TryLoadAt(int directoryFd, byte* name, string display, out ControlFile? file)
    {
        file = null;
        int pathFd = openat(directoryFd, name, O_PATH | O_CLOEXEC, 0);
        if (pathFd < 0)
        {
            return false; // missing or out of reach: a socket path, and connect or bind will say what is wrong
        }
        int fd = -1;
        try
        {
            stat st;
            if (fstat(pathFd, &st) != 0 || !IsCandidate(st))
            {
                return false;
            }
            ulong device = (ulong)st.st_dev, inode = (ulong)st.st_ino;
            fixed (byte* reopen = Encoding.ASCII.GetBytes($"/proc/self/fd/{pathFd}\0"))
            {
                fd = open(reopen, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0);
            }
            if (fd < 0)
            {
                int error = errno;
                string why = error == EAGAIN ? " (another process holds a lease on it)" : "";
                throw new ControlFileException($"{display}: cannot open possible control file{why}: {Marshal.GetPInvokeErrorMessage(error)} (errno {error})", error);
            }
            // The same file as the O_PATH fd; checked again because it may have been truncated meanwhile.
            if (fstat(fd, &st) != 0 || !IsCandidate(st) || (ulong)st.st_dev != device || (ulong)st.st_ino != inode)
            {
                return false;
            }
            var bytes = new byte[Size];
            int total = 0;
            fixed (byte* buffer = bytes)
            {
                while (total < Size)
                {
                    long n = pread(fd, buffer + total, (size_t)(Size - total), total);
                    if (n < 0)
                    {
                        int error = errno;
                        if (error == EINTR)
                        {
                            continue;
                        }
                        throw new ControlFileException($"{display}: cannot read possible control file: {Marshal.GetPInvokeErrorMessage(error)} (errno {error})", error);
                    }
                    if (n == 0)
                    {
                        return false; // truncated since fstat: no longer a control file
                    }
                    total += (int)n;
                }
            }
            if (BinaryPrimitives.ReadUInt64LittleEndian(bytes) != Magic)
            {
                return false;
            }
            file = Parse(bytes, display);
            return true;
        }
        finally
        {
            if (fd >= 0)
            {
                close(fd);
            }
            close(pathFd);
        }
    }

    private static bool IsCandidate(in stat st) => (st.st_mode & S_IFMT) == S_IFREG && (long)st.st_size == Size;

    /// <summary>
    /// Writes this control file to a new file at <paramref name="path"/> (O_CREAT|O_EXCL, mode 0644
    /// under the umask). Throws <see cref="IOException"/> ("File exists") if the path exists.
    /// </summary>
    public unsafe void CreateExclusive(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (path.Length == 0 || path.Contains('\0'))
        {
            throw new ArgumentException($"not a usable file path: '{path}'", nameof(path));
        }
        byte[] terminated = Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = terminated)
        fixed (byte* data = _bytes)
        {
            int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, (ushort)0x1A4 /* 0644 */);
            if (fd < 0)
            {
                int error = errno;
                throw new IOException($"Could not create control file '{path}': {Marshal.GetPInvokeErrorMessage(error)} (errno {error})");
            }
            int written = 0;
            int writeError = 0;
            while (written < Size)
            {
                long n = write(fd, data + written, (size_t)(Size - written));
                if (n < 0)
                {
                    if (errno == EINTR)
                    {
                        continue;
                    }
                    writeError = errno;
                    break;
                }
                written += (int)n;
            }
            if (close(fd) != 0 && writeError == 0 && errno != EINTR)
            {
                writeError = errno;
            }
            if (writeError != 0)
            {
                // A partial file would later be taken for a socket path; do not leave it behind.
                unlink(p);
                throw new IOException($"Could not write control file '{path}': {Marshal.GetPInvokeErrorMessage(writeError)} (errno {writeError})");
            }
        }
    }
}
