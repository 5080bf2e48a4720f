using System.Text;
using Native = global::Interop;

namespace Unsock.Core.Engine;

/// <summary>
/// What the engine reads from the target: memory, copies of its fds, their close-on-exec flag, its umask
/// and owner. Pidfds are cached per thread id; a pidfd never refers to another task, so a stale one
/// only costs a reopen.
/// </summary>
internal sealed class TargetProcess : IDisposable
{
    private readonly Dictionary<int, int> _pidfds = new();
    private readonly Dictionary<int, int> _fdinfoDirs = new();
    // Open /proc/TID/fdinfo/FD files: each read shows the fd as it is now, and a client tends to get the
    // same fd number for every new socket.
    private readonly Dictionary<(int Tid, int Fd), int> _fdinfoFiles = new();
    // Per notification thread and per cache: enough for the threads that are making calls now, without
    // eating into the fd limit that the swaps themselves need.
    private readonly int _maxCached;
    private bool _threadPidfdsUnsupported;

    public TargetProcess(int maxCachedPerKind) => _maxCached = maxCachedPerKind;

    public static int ReadMemory(int pid, ulong address, Span<byte> buffer) => Native.ProcessVm.Read(pid, address, buffer);

    public static int WriteMemory(int pid, ulong address, ReadOnlySpan<byte> data) => Native.ProcessVm.Write(pid, address, data);

    /// <summary>Our copy of the target's fd; 0 or errno (EBADF when the target has no such fd).</summary>
    public int CopyFd(int tid, int targetFd, out int copy)
    {
        copy = -1;
        for (int attempt = 0; attempt < 2; attempt++)
        {
            int pidfd = PidfdFor(tid, attempt > 0);
            if (pidfd < 0) return -pidfd;
            int r = Native.Pidfd.GetFd(pidfd, targetFd);
            if (r >= 0) { copy = r; return 0; }
            if (-r != Errors.ESRCH) return -r;
        }
        return Errors.ESRCH;
    }

    private int PidfdFor(int tid, bool reopen)
    {
        if (_pidfds.TryGetValue(tid, out int cached))
        {
            if (!reopen) return cached;
            Native.Socket.Close(cached);
            _pidfds.Remove(tid);
        }
        int fd = -1;
        if (!_threadPidfdsUnsupported)
        {
            fd = Native.Pidfd.Open(tid, Native.Pidfd.PidfdThread);
            if (fd == -Errors.EINVAL) _threadPidfdsUnsupported = true; // kernel < 6.9
        }
        if (_threadPidfdsUnsupported)
        {
            int tgid = ThreadGroupOf(tid);
            fd = tgid > 0 ? Native.Pidfd.Open(tgid, 0) : -Errors.ESRCH;
        }
        if (fd < 0) return fd;
        if (_pidfds.Count >= _maxCached) Clear();
        _pidfds[tid] = fd;
        return fd;
    }

    /// <summary>The target's FD_CLOEXEC for <paramref name="fd"/>; our pidfd_getfd copy always has it set.</summary>
    public bool IsCloseOnExec(int tid, int fd) => TryReadFdFlags(tid, fd, out int flags) && (flags & CloseOnExec) != 0;

    private const int CloseOnExec = 0x80000; // O_CLOEXEC as fdinfo shows it (02000000)

    /// <summary>
    /// The "flags:" of /proc/TID/fdinfo/FD in one read: the open file's status flags (O_NONBLOCK, O_ASYNC...) as
    /// F_GETFL gives them, plus O_CLOEXEC when the target's fd has FD_CLOEXEC. False when it cannot be read.
    /// </summary>
    public bool TryReadFdFlags(int tid, int fd, out int flags)
    {
        flags = 0;
        Span<byte> buf = stackalloc byte[128];
        if (_fdinfoFiles.TryGetValue((tid, fd), out int file))
        {
            int got = Native.FileSystem.ReadAtStart(file, buf);
            if (got > 0) return TryParseFlags(buf[..got], out flags);
            Native.Socket.Close(file);
            _fdinfoFiles.Remove((tid, fd));
        }
        int n = -1;
        for (int attempt = 0; attempt < 2 && n < 0; attempt++)
        {
            int dir = FdinfoDirFor(tid, reopen: attempt > 0);
            if (dir < 0) return false;
            n = Native.FileSystem.OpenAt(dir, fd, out file);
            if (n == 0) n = Native.FileSystem.ReadAtStart(file, buf);
        }
        if (n <= 0) return false;
        if (_fdinfoFiles.Count >= _maxCached) CloseAll(_fdinfoFiles);
        _fdinfoFiles[(tid, fd)] = file;
        return TryParseFlags(buf[..n], out flags);
    }

    /// <summary>The target thread's filesystem uid and gid, from its pidfd where the kernel can tell (6.13).</summary>
    public bool TryGetFsIds(int tid, out uint uid, out uint gid)
    {
        uid = gid = 0;
        int pidfd = PidfdFor(tid, reopen: false);
        return pidfd >= 0 && !_threadPidfdsUnsupported && Native.Pidfd.TryGetFsIds(pidfd, out uid, out gid);
    }

    /// <summary>Parses the octal "flags:" of "pos:\t0\nflags:\t02000002\n...".</summary>
    private static bool TryParseFlags(ReadOnlySpan<byte> text, out int flags)
    {
        flags = 0;
        int at = text.IndexOf("flags:"u8);
        if (at < 0) return false;
        long value = 0;
        int digits = 0;
        foreach (byte c in text[(at + 6)..])
        {
            if (c is (byte)'\t' or (byte)' ') continue;
            if (c is < (byte)'0' or > (byte)'7' || value > int.MaxValue) break;
            value = value * 8 + (c - '0');
            digits++;
        }
        flags = (int)value;
        return digits > 0 && value <= int.MaxValue;
    }

    /// <summary>A directory fd of /proc/TID/fdinfo; one of a dead task answers ENOENT and is reopened.</summary>
    private int FdinfoDirFor(int tid, bool reopen)
    {
        if (_fdinfoDirs.TryGetValue(tid, out int cached))
        {
            if (!reopen) return cached;
            Native.Socket.Close(cached);
            _fdinfoDirs.Remove(tid);
        }
        if (Native.FileSystem.OpenDirectoryPath($"/proc/{tid}/fdinfo", out int dir, pathOnly: false) != 0) return -1;
        if (_fdinfoDirs.Count >= _maxCached) CloseAll(_fdinfoDirs);
        _fdinfoDirs[tid] = dir;
        return dir;
    }

    /// <summary>
    /// True when the thread has a pending signal it catches and does not block. The target waits for us
    /// killable-only (WAIT_KILLABLE_RECV), so our long waits must look for these themselves.
    /// </summary>
    public static bool HasDeliverableSignal(int tid)
    {
        // Parked calls ask this often: one read into the stack, no strings.
        Span<byte> buf = stackalloc byte[4096];
        int n = Native.FileSystem.ReadSmallFile($"/proc/{tid}/status", buf);
        if (n <= 0) return false;
        var text = buf[..n];
        if (!TryHexField(text, "SigPnd:"u8, out ulong thread) || !TryHexField(text, "ShdPnd:"u8, out ulong shared) ||
            !TryHexField(text, "SigBlk:"u8, out ulong blocked) || !TryHexField(text, "SigCgt:"u8, out ulong caught))
            return false;
        return ((thread | shared) & ~blocked & caught) != 0;
    }

    private static bool TryHexField(ReadOnlySpan<byte> text, ReadOnlySpan<byte> key, out ulong value)
    {
        value = 0;
        int at = text.IndexOf(key);
        if (at < 0) return false;
        int digits = 0;
        foreach (byte c in text[(at + key.Length)..])
        {
            if (c is (byte)'\t' or (byte)' ') continue;
            int d = c is >= (byte)'0' and <= (byte)'9' ? c - '0' : c is >= (byte)'a' and <= (byte)'f' ? c - 'a' + 10 : -1;
            if (d < 0) break;
            value = (value << 4) | (uint)d;
            digits++;
        }
        return digits > 0;
    }

    private static int ThreadGroupOf(int tid)
    {
        var v = ReadStatus(tid, "Tgid:")?[0];
        return v is null ? -1 : int.Parse(v);
    }

    /// <summary>The values of <paramref name="keys"/> ("Umask:", "Uid:"...) in /proc/TID/status, in one read; null when it cannot be read.</summary>
    internal static string?[]? ReadStatus(int tid, params string[] keys)
    {
        var values = new string?[keys.Length];
        try
        {
            foreach (var line in File.ReadLines($"/proc/{tid}/status", Encoding.ASCII))
                for (int i = 0; i < keys.Length; i++)
                    if (line.StartsWith(keys[i], StringComparison.Ordinal))
                        values[i] = line[keys[i].Length..].Trim();
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
        return values;
    }

    /// <summary>Drops the cached fds of threads that have exited (a pidfd becomes readable then).</summary>
    public void PruneExited()
    {
        List<int>? dead = null;
        foreach (var (tid, pidfd) in _pidfds)
            if (Native.Socket.Poll(pidfd, 1 /* POLLIN */, 0)) (dead ??= new()).Add(tid);
        if (dead is null) return;
        foreach (int tid in dead)
        {
            Native.Socket.Close(_pidfds[tid]);
            _pidfds.Remove(tid);
            if (_fdinfoDirs.Remove(tid, out int dir)) Native.Socket.Close(dir);
        }
        foreach (var key in _fdinfoFiles.Keys.Where(k => dead.Contains(k.Tid)).ToList())
        {
            Native.Socket.Close(_fdinfoFiles[key]);
            _fdinfoFiles.Remove(key);
        }
    }

    private static void CloseAll<TKey>(Dictionary<TKey, int> fds) where TKey : notnull
    {
        foreach (var fd in fds.Values) Native.Socket.Close(fd);
        fds.Clear();
    }

    private void Clear() => CloseAll(_pidfds);

    public void Dispose()
    {
        CloseAll(_pidfds);
        CloseAll(_fdinfoDirs);
        CloseAll(_fdinfoFiles);
    }
}
