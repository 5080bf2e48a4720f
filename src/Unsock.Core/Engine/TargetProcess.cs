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
    private readonly Dictionary<int, Pidfd> _pidfds = new();
    private readonly Dictionary<int, int> _fdinfoDirs = new();
    // /proc/TID/fd of threads, open: an fstat tells how many fds the table holds without a path walk through /proc.
    private readonly Dictionary<int, int> _fdDirs = new();
    // Open /proc/TID/fdinfo/FD files: each read shows the fd as it is now, and a client tends to get the
    // same fd number for every new socket.
    private readonly Dictionary<(int Tid, int Fd), int> _fdinfoFiles = new();
    // Per notification thread and per cache: enough for the threads that are making calls now, without
    // eating into the fd limit that the swaps themselves need.
    private readonly int _maxCached;
    private bool _threadPidfdsUnsupported;
    // The pidfd that pidfd_getfd last worked through during the call being handled: its task was alive then,
    // and the calling thread, blocked in the call, holds its tid, so it is that thread.
    private Pidfd? _provenCaller;
    private int _caller;

    public TargetProcess(int maxCachedPerKind) => _maxCached = maxCachedPerKind;

    /// <summary>A cached pidfd of one task, and what was learnt about that task through it.</summary>
    private sealed class Pidfd(int fd)
    {
        public int Fd { get; } = fd;

        /// <summary>The <see cref="TargetIdentity.RootChanges"/> at which the task was seen in our root and mount namespace; 0: not seen.</summary>
        public long OwnTreeAt { get; set; }
    }

    /// <summary>A new trapped call of thread <paramref name="tid"/> is being handled: what an earlier call proved no longer holds.</summary>
    public void BeginCall(int tid)
    {
        _caller = tid;
        _provenCaller = null;
    }

    // The fdinfo flags read during the call in hand: the decision reads them (in place of F_GETFL) and the swap
    // uses them again (FD_CLOEXEC), one read per call. The swap's kcmp still checks the file after both.
    private (int Tid, int Fd, int Flags)? _callFdFlags;

    /// <summary>A step of a call begins (a new call, or a parked one resumed on the poller): what was read for the last one is not reused.</summary>
    public void ForgetCallReads() => _callFdFlags = null;

    public static int ReadMemory(int pid, ulong address, Span<byte> buffer) => Native.ProcessVm.Read(pid, address, buffer);

    public static int WriteMemory(int pid, ulong address, ReadOnlySpan<byte> data) => Native.ProcessVm.Write(pid, address, data);

    /// <summary>Our copy of the target's fd; 0 or errno (EBADF when the target has no such fd).</summary>
    public int CopyFd(int tid, int targetFd, out int copy)
    {
        copy = -1;
        for (int attempt = 0; attempt < 2; attempt++)
        {
            var pidfd = PidfdFor(tid, attempt > 0, out int err);
            if (pidfd is null) return err;
            int r = Native.Pidfd.GetFd(pidfd.Fd, targetFd);
            if (r >= 0)
            {
                copy = r;
                if (tid == _caller) _provenCaller = pidfd;
                return 0;
            }
            if (-r != Errors.ESRCH) return -r;
        }
        return Errors.ESRCH;
    }

    /// <summary>The cached pidfd of <paramref name="tid"/>, opened when missing; null with the errno when it cannot be opened.</summary>
    private Pidfd? PidfdFor(int tid, bool reopen, out int errno)
    {
        errno = 0;
        if (_pidfds.TryGetValue(tid, out var cached))
        {
            if (!reopen) return cached;
            Native.Socket.Close(cached.Fd);
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
        if (fd < 0)
        {
            errno = -fd;
            return null;
        }
        if (_pidfds.Count >= _maxCached) Clear();
        var opened = new Pidfd(fd);
        _pidfds[tid] = opened;
        return opened;
    }

    /// <summary>
    /// True when thread <paramref name="tid"/> was seen in our root and mount namespace at root-change count
    /// <paramref name="rootChanges"/> (the current one), through a pidfd whose task is the caller still: one that
    /// pidfd_getfd worked through during this call, or one that has not exited (a tid is reused only after).
    /// Only thread pidfds tell a thread apart; a process pidfd (kernels before 6.9) never answers true.
    /// </summary>
    public bool SeenInOwnTree(int tid, long rootChanges)
    {
        if (_threadPidfdsUnsupported || rootChanges <= 0 || !_pidfds.TryGetValue(tid, out var pidfd) || pidfd.OwnTreeAt != rootChanges)
            return false;
        if (ReferenceEquals(pidfd, _provenCaller)) return true;
        return !Native.Socket.Poll(pidfd.Fd, 1 /* POLLIN: the task has exited */, 0);
    }

    /// <summary>
    /// The pidfd of <paramref name="tid"/> before its tree is looked at, so that what is seen is remembered on a
    /// pidfd opened first (whose task, when it is still alive later, is the one that was looked at); null when
    /// nothing can be remembered.
    /// </summary>
    public object? BeforeLookingAtTree(int tid) =>
        _threadPidfdsUnsupported ? null : PidfdFor(tid, reopen: false, out _);

    /// <summary>Remembers that the task of <paramref name="token"/> (from <see cref="BeforeLookingAtTree"/>) sees our tree at <paramref name="rootChanges"/>.</summary>
    public void RememberOwnTree(object? token, long rootChanges)
    {
        if (token is Pidfd pidfd && !_threadPidfdsUnsupported) pidfd.OwnTreeAt = rootChanges;
    }

    /// <summary>The target's FD_CLOEXEC for <paramref name="fd"/>; our pidfd_getfd copy always has it set.</summary>
    public bool IsCloseOnExec(int tid, int fd) => TryReadFdFlags(tid, fd, out int flags) && (flags & CloseOnExec) != 0;

    internal const int CloseOnExec = 0x80000; // O_CLOEXEC as fdinfo shows it (02000000)

    /// <summary>
    /// The "flags:" of /proc/TID/fdinfo/FD in one read: the open file's status flags (O_NONBLOCK, O_ASYNC...) as
    /// F_GETFL gives them, plus O_CLOEXEC when the target's fd has FD_CLOEXEC. False when it cannot be read. Read
    /// once per call: a second ask during the same call gets the first answer.
    /// </summary>
    public bool TryReadFdFlags(int tid, int fd, out int flags)
    {
        if (_callFdFlags is { } read && read.Tid == tid && read.Fd == fd)
        {
            flags = read.Flags;
            return true;
        }
        if (!TryReadFdFlagsNow(tid, fd, out flags)) return false;
        _callFdFlags = (tid, fd, flags);
        return true;
    }

    private bool TryReadFdFlagsNow(int tid, int fd, out int flags)
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
            int dir = ProcDirFor(_fdinfoDirs, tid, "fdinfo", reopen: attempt > 0);
            if (dir < 0) return false;
            n = Native.FileSystem.OpenAt(dir, fd, out file);
            if (n == 0) n = Native.FileSystem.ReadAtStart(file, buf);
        }
        if (n <= 0) return false;
        if (_fdinfoFiles.Count >= _maxCached) CloseAll(_fdinfoFiles);
        _fdinfoFiles[(tid, fd)] = file;
        return TryParseFlags(buf[..n], out flags);
    }

    /// <summary>
    /// How many fds thread <paramref name="tid"/>'s table holds: the size of /proc/TID/fd (6.2; 0 before), through a
    /// directory fd kept per thread. -1 when it cannot be read. A directory of a thread that exited fails (ENOENT) and is
    /// opened again, for whichever task has the number now.
    /// </summary>
    public int OpenFdCount(int tid)
    {
        for (int attempt = 0; attempt < 2; attempt++)
        {
            int dir = ProcDirFor(_fdDirs, tid, "fd", reopen: attempt > 0);
            if (dir < 0) return -1;
            if (Native.FileSystem.Fstat(dir, out var st) == 0) return (int)Math.Min(st.Size, int.MaxValue);
        }
        return -1;
    }

    /// <summary>The target thread's filesystem uid and gid, from its pidfd where the kernel can tell (6.13).</summary>
    public bool TryGetFsIds(int tid, out uint uid, out uint gid)
    {
        uid = gid = 0;
        var pidfd = PidfdFor(tid, reopen: false, out _);
        return pidfd is not null && !_threadPidfdsUnsupported && Native.Pidfd.TryGetFsIds(pidfd.Fd, out uid, out gid);
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

    /// <summary>
    /// A directory fd of /proc/TID/<paramref name="name"/> (fdinfo, fd), kept open in <paramref name="cache"/>; -1 when it
    /// cannot be opened. One of a dead task answers ENOENT, and the caller asks again with <paramref name="reopen"/>.
    /// </summary>
    private int ProcDirFor(Dictionary<int, int> cache, int tid, string name, bool reopen)
    {
        if (cache.TryGetValue(tid, out int cached))
        {
            if (!reopen) return cached;
            Native.Socket.Close(cached);
            cache.Remove(tid);
        }
        if (Native.FileSystem.OpenDirectoryPath($"/proc/{tid}/{name}", out int dir, pathOnly: false) != 0) return -1;
        if (cache.Count >= _maxCached) CloseAll(cache);
        cache[tid] = dir;
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
            if (Native.Socket.Poll(pidfd.Fd, 1 /* POLLIN */, 0)) (dead ??= new()).Add(tid);
        if (dead is null) return;
        foreach (int tid in dead)
        {
            Native.Socket.Close(_pidfds[tid].Fd);
            _pidfds.Remove(tid);
            if (_fdinfoDirs.Remove(tid, out int dir)) Native.Socket.Close(dir);
            if (_fdDirs.Remove(tid, out dir)) Native.Socket.Close(dir);
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

    private void Clear()
    {
        foreach (var pidfd in _pidfds.Values) Native.Socket.Close(pidfd.Fd);
        _pidfds.Clear();
        _provenCaller = null;
    }

    public void Dispose()
    {
        Clear();
        CloseAll(_fdinfoDirs);
        CloseAll(_fdDirs);
        CloseAll(_fdinfoFiles);
    }
}
