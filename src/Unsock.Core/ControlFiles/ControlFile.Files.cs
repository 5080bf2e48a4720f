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
    /// <see cref="ControlFileException"/> when the file has the magic but is corrupt, or cannot be read.
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
        string display = Encoding.UTF8.GetString(path);

        fixed (byte* p = terminated)
        {
            // Like the original: stat first (following symlinks) so FIFOs and devices are never opened.
            stat st;
            if (stat(p, &st) != 0 || !IsCandidate(st))
            {
                return false;
            }
            int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOCTTY, 0);
            if (fd < 0)
            {
                int error = errno;
                throw new ControlFileException($"{display}: cannot open possible control file: {Marshal.GetPInvokeErrorMessage(error)} (errno {error})", error);
            }
            try
            {
                // Re-check on the open file: the path may have been replaced between stat and open.
                if (fstat(fd, &st) != 0 || !IsCandidate(st))
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
                close(fd);
            }
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
