using System.Globalization;
using System.Runtime.InteropServices;
using Native = global::Interop;

namespace Unsock.Core.Supervision;

/// <summary>
/// The supervisor's listening control socket: the one systemd passed (socket activation: LISTEN_PID,
/// LISTEN_FDS, LISTEN_FDNAMES, from fd 3), or one it binds itself. Non-blocking: the accept loop polls it.
/// </summary>
public sealed class ControlListener : IDisposable
{
    private const int FirstPassedFd = 3; // SD_LISTEN_FDS_START
    private int _fd;
    private readonly (ulong Device, ulong Inode)? _boundFile;

    private ControlListener(int fd, string description, string? path, (ulong, ulong)? boundFile)
    {
        _fd = fd;
        Description = description;
        Path = path;
        _boundFile = boundFile;
    }

    public int Fd => _fd;

    /// <summary>Where it came from, for the log.</summary>
    public string Description { get; }

    /// <summary>The path it listens at, when known (bound by us).</summary>
    public string? Path { get; }

    /// <summary>True when systemd passed it (then its path, mode and group are the socket unit's).</summary>
    public bool FromSystemd => _boundFile is null;

    /// <summary>
    /// The socket systemd passed, or null when this process was not socket-activated. Takes fd 3, or the one
    /// LISTEN_FDNAMES names <paramref name="name"/>, and clears the variables (they are for us, not our children).
    /// </summary>
    /// <exception cref="ControlChannelException">Activated, but the fd is not a listening AF_UNIX SOCK_SEQPACKET socket.</exception>
    public static ControlListener? FromSocketActivation(string name) => FromPassedFds(ServiceManager.TakePassedFds(), name);

    /// <summary>
    /// The control socket among the fds systemd passed (<see cref="ServiceManager.TakePassedFds"/>): the one named
    /// <paramref name="name"/>, or the only one when they have no names; null when there is none.
    /// </summary>
    /// <exception cref="ControlChannelException">The fd is not a listening SOCK_SEQPACKET socket, or cannot be set up.</exception>
    public static ControlListener? FromPassedFds(IReadOnlyList<PassedFd> passed, string name)
    {
        int fd = -1;
        foreach (var p in passed)
            if (p.Name == name) fd = p.Fd;
        if (fd < 0 && passed.Where(p => !ServiceManager.IsTargetFdName(p.Name)).ToList() is [var only]) fd = only.Fd;
        if (fd < 0) return null;
        string? problem = Native.ServiceSocket.DescribeUnlessSeqpacketListener(fd);
        if (problem is not null)
            throw new ControlChannelException($"socket activation: fd {fd} is {problem}; the control socket must be a listening AF_UNIX SOCK_SEQPACKET socket");
        int err = Native.ServiceSocket.SetNonBlocking(fd);
        if (err != 0) throw new ControlChannelException($"socket activation: fd {fd}: cannot make it non-blocking: {Marshal.GetPInvokeErrorMessage(err)}");
        return new ControlListener(fd, $"fd {fd} from systemd (socket activation)", null, null);
    }

    /// <summary>
    /// Binds <paramref name="path"/>: creates its directory (0755), replaces a socket file there only when
    /// nothing listens on it, and gives the file <paramref name="mode"/> and, when given, group <paramref name="gid"/>.
    /// </summary>
    /// <exception cref="ControlChannelException">In words: what could not be done at which path.</exception>
    public static ControlListener Bind(string path, int mode, uint? gid, int backlog = 4096)
    {
        string directory = System.IO.Path.GetDirectoryName(path) ?? "/";
        try
        {
            if (!Directory.Exists(directory))
            {
                Directory.CreateDirectory(directory);
                Native.ServiceSocket.Chmod(directory, 0x1ED); // 0755: clients must reach the socket
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ControlChannelException($"control socket {path}: cannot create the directory {directory}: {e.Message}");
        }
        if (Native.FileSystem.Lstat(path, out var existing) == 0)
        {
            if (!existing.IsSocket) throw new ControlChannelException($"control socket {path}: something that is not a socket is in the way; not removing it");
            if (ControlChannel.IsListening(path)) throw new ControlChannelException($"control socket {path}: another supervisor listens there");
            // A stale file of a supervisor that is gone.
            if (Native.FileSystem.Lstat(path, out var again) == 0 && again.Inode == existing.Inode) File.Delete(path);
        }
        int err = Native.ControlSocket.Listen(path, backlog, out int fd);
        if (err != 0) throw new ControlChannelException($"control socket {path}: cannot listen there: {Marshal.GetPInvokeErrorMessage(err)}");
        try
        {
            err = Native.ServiceSocket.SetNonBlocking(fd);
            if (err == 0) err = Native.ServiceSocket.Chmod(path, mode);
            if (err != 0) throw new ControlChannelException($"control socket {path}: cannot set mode {Convert.ToString(mode, 8)}: {Marshal.GetPInvokeErrorMessage(err)}");
            if (gid is uint g && (err = Native.ServiceSocket.ChangeGroup(path, g)) != 0)
                throw new ControlChannelException($"control socket {path}: cannot give it to group {g}: {Marshal.GetPInvokeErrorMessage(err)}");
            Native.FileSystem.Lstat(path, out var st);
            return new ControlListener(fd, path, path, (st.Device, st.Inode));
        }
        catch
        {
            Native.ControlSocket.Close(fd);
            File.Delete(path);
            throw;
        }
    }

    /// <summary>
    /// Accepts one pending connection, with sends and receives on it bounded by <paramref name="timeout"/>;
    /// null when none is pending. <paramref name="errno"/> is set for errors other than "none pending".
    /// </summary>
    public ControlChannel? TryAccept(TimeSpan timeout, out int errno)
    {
        errno = Native.ServiceSocket.Accept(_fd, out int fd);
        if (errno != 0)
        {
            if (errno == Errors.EAGAIN) errno = 0;
            return null;
        }
        Native.ServiceSocket.SetTimeouts(fd, (int)Math.Clamp(timeout.TotalMilliseconds, 1, int.MaxValue));
        return ControlChannel.Adopt(fd, "a control connection");
    }

    /// <summary>Closes it; a socket file we bound goes too (if it is still the one we bound).</summary>
    public void Dispose()
    {
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd < 0) return;
        Native.ControlSocket.Close(fd);
        if (Path is not null && _boundFile is { } bound && Native.FileSystem.Lstat(Path, out var st) == 0 && st.Inode == bound.Inode && st.Device == bound.Device)
        {
            try { File.Delete(Path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}

/// <summary>Waits on many fds from one thread (the accept loop), and a wake-up for it.</summary>
public sealed class ControlPoll : IDisposable
{
    private int _wakeFd;

    public ControlPoll()
    {
        int err = Native.ServiceSocket.CreateWake(out _wakeFd);
        if (err != 0) throw new ControlChannelException($"eventfd: {Marshal.GetPInvokeErrorMessage(err)}");
    }

    /// <summary>The fd to include in <see cref="Wait"/> so that <see cref="Wake"/> ends the wait.</summary>
    public int WakeFd => _wakeFd;

    public void Wake() => Native.ServiceSocket.Signal(_wakeFd);

    public void DrainWake() => Native.ServiceSocket.Drain(_wakeFd);

    /// <summary>Waits up to <paramref name="timeoutMs"/> (-1: forever) until one of <paramref name="fds"/> is readable or hung up; the number ready.</summary>
    public static int Wait(ReadOnlySpan<int> fds, Span<bool> ready, int timeoutMs)
    {
        int n = Native.ServiceSocket.WaitReadable(fds, ready, timeoutMs);
        if (n < 0)
        {
            ready.Clear();
            return 0; // EINTR: the caller loops
        }
        return n;
    }

    public void Dispose()
    {
        int fd = Interlocked.Exchange(ref _wakeFd, -1);
        Native.ControlSocket.Close(fd);
    }
}
