using System.Globalization;
using Native = global::Interop;

namespace Unsock.Core.Engine;

/// <summary>
/// Keeps a program's epoll registrations working across a swap. epoll keys a registration by (file, fd
/// number): a socket registered before connect/bind stays registered as the old TCP socket, and the program
/// would wait forever for events on it (nginx does this with upstreams). After the swap, every epoll set of the
/// program that watches the old socket under that number gets the new socket under the same number, with the
/// same events and data, and the old entry is dropped; the program's own EPOLL_CTL_MOD/DEL then find it.
/// <para>
/// epoll_ctl takes the file from the caller's fd table, so the work runs on one thread with a private table
/// (close_range CLOSE_RANGE_UNSHARE) where the new socket can sit at the program's number. Everything that
/// touches a program's epoll waits for that epoll's mutex, which a program can hold (epoll_wait copying into a
/// page that faults slowly): so it all runs on that thread, never on a notification thread, and a caller waits
/// for it a bounded time; a thread that hangs is given up and replaced, a few times at most.
/// </para>
/// </summary>
internal static class EpollTransfer
{
    // Which fds of a task are epoll sets, found by scanning /proc/TID/fd, is reused for this long while the
    // task's number of open fds stays the same (a new epoll set adds one); a task with more fds than
    // SmallTable, whose count changes all the time, reuses it for this long whatever the count.
    private const int ScanValidityMs = 1000, SmallTable = 64;
    private const int MaxCachedTasks = 4096;
    // Bounds on what a program can make us read: fds scanned per task, bytes of one epoll's fdinfo.
    private const int MaxScannedFds = 4096, MaxFdinfoBytes = 16 << 20;
    private const int WaitMs = 2000, MaxAbandonedThreads = 4;

    private static readonly object CacheGate = new();
    private static readonly Dictionary<int, Scanned> EpollFdsOfTask = new();

    /// <summary>What a scan of one task's fds found: its epoll fds, among how many fds.</summary>
    private readonly record struct Scanned(int[] EpollFds, int FdCount, long Expires);
    private static readonly object SubmitGate = new();
    private static Mover? _mover;
    private static int _abandoned;
    private static volatile string? _unavailable;

    /// <summary>One swap's request and its result.</summary>
    private sealed class Job(int tid, int fd, int oldCopy, int replacement, int[]? epollFds, int fdCount)
    {
        public int FdCount { get; } = fdCount;
        public int Tid { get; } = tid;
        public int Fd { get; } = fd;
        public int OldCopy { get; } = oldCopy;
        public int Replacement { get; } = replacement;
        public int[]? EpollFds { get; } = epollFds;
        public bool Abandoned, Done;
        public List<string> Report { get; } = new();
    }

    /// <summary>
    /// Called right after <paramref name="replacement"/> went in at <paramref name="fd"/> of task <paramref name="tid"/>
    /// in place of <paramref name="oldCopy"/>'s socket (both fds ours, open until the call is answered). Returns
    /// what was moved or went wrong, one line each, for the log; empty when the program watches nothing.
    /// </summary>
    public static IReadOnlyList<string> AfterSwap(int tid, int fd, int oldCopy, int replacement)
    {
        if (_unavailable is not null) return [];
        var known = CachedScan(tid);
        // stat of /proc/TID/fd counts the task's fds (6.2; 0 before, then only time limits the reuse).
        int fdCount = OpenFdCount(tid);
        if (known is { } k && k.FdCount != fdCount && k.FdCount <= SmallTable) known = null;
        if (known is { EpollFds.Length: 0 }) return []; // the common case of a program without epoll: no hand-over
        var job = new Job(tid, fd, oldCopy, replacement, known?.EpollFds, fdCount);
        long deadline = Environment.TickCount64 + WaitMs;
        if (!Monitor.TryEnter(SubmitGate, WaitMs)) return [$"busy for over {WaitMs} ms, registrations not checked"];
        try
        {
            if (_unavailable is not null) return [];
            _mover ??= new Mover();
            _mover.Post(job);
            lock (job)
            {
                while (!job.Done)
                {
                    long left = deadline - Environment.TickCount64;
                    if (left <= 0 || !Monitor.Wait(job, (int)left)) break;
                }
                if (job.Done) return job.Report;
                job.Abandoned = true; // from now on the mover must not touch our fds
            }
            // The mover hangs in the program's epoll: give it up, and after a few, give up moving registrations.
            _mover = null;
            if (++_abandoned >= MaxAbandonedThreads) _unavailable = "epoll registrations are no longer moved: programs held their epoll sets too long";
            return [$"gave up after {WaitMs} ms (the program holds its epoll set); its registrations may still watch the old socket"];
        }
        finally { Monitor.Exit(SubmitGate); }
    }

    /// <summary>Why moving registrations is off, once it is; null while it works.</summary>
    public static string? Unavailable => _unavailable;

    private static Scanned? CachedScan(int tid)
    {
        lock (CacheGate)
            return EpollFdsOfTask.TryGetValue(tid, out var e) && e.Expires > Environment.TickCount64 ? e : null;
    }

    private static int OpenFdCount(int tid) =>
        Native.FileSystem.Lstat($"/proc/{tid}/fd", out var st) == 0 ? (int)Math.Min(st.Size, int.MaxValue) : -1;

    private static void Remember(int tid, int[] epollFds, int fdCount)
    {
        lock (CacheGate)
        {
            if (EpollFdsOfTask.Count >= MaxCachedTasks)
            {
                long now = Environment.TickCount64;
                foreach (var stale in EpollFdsOfTask.Where(e => e.Value.Expires <= now).Select(e => e.Key).ToList()) EpollFdsOfTask.Remove(stale);
                if (EpollFdsOfTask.Count >= MaxCachedTasks) EpollFdsOfTask.Clear();
            }
            EpollFdsOfTask[tid] = new(epollFds, fdCount, Environment.TickCount64 + ScanValidityMs);
        }
    }

    /// <summary>The thread with the private fd table that does the work, one job at a time.</summary>
    private sealed class Mover
    {
        private readonly object _gate = new();
        private Job? _next;

        public Mover()
        {
            new Thread(Run, 256 * 1024) { IsBackground = true, Name = "unsock-epoll" }.Start();
        }

        public void Post(Job job)
        {
            lock (_gate)
            {
                _next = job;
                Monitor.Pulse(_gate);
            }
        }

        private void Run()
        {
            int err = Native.Epoll.UnshareFdTable();
            int self = err == 0 ? Native.Pidfd.Open(Environment.ProcessId, 0) : err;
            int ownTid = Native.Epoll.ThreadId();
            while (true)
            {
                Job job;
                lock (_gate)
                {
                    while (_next is null) Monitor.Wait(_gate);
                    job = _next;
                    _next = null;
                }
                try
                {
                    if (err != 0 || self < 0)
                    {
                        _unavailable = $"epoll registrations cannot be moved: a private fd table needs close_range CLOSE_RANGE_UNSHARE (5.9): {Errors.Name(-Math.Min(err, self))}";
                        job.Report.Add(_unavailable);
                    }
                    else Move(job, ref self, ownTid);
                }
                catch (Exception e)
                {
                    job.Report.Add($"internal error: {e.Message}");
                }
                lock (job)
                {
                    job.Done = true;
                    Monitor.Pulse(job);
                    if (job.Abandoned) return; // a fresh mover has taken over
                }
            }
        }
    }

    private static void Move(Job job, ref int self, int ownTid)
    {
        int oldSocket, newSocket;
        lock (job)
        {
            if (job.Abandoned) return;
            oldSocket = Native.Pidfd.GetFd(self, job.OldCopy);
            newSocket = Native.Pidfd.GetFd(self, job.Replacement);
        }
        int target = -1;
        try
        {
            if (oldSocket < 0 || newSocket < 0) return;
            var matches = new List<int>();
            if (job.EpollFds is null || !Check(job, job.EpollFds, oldSocket, ownTid, matches))
            {
                matches.Clear();
                int[]? found = Scan(job, oldSocket, ownTid, matches);
                if (found is null) return;
                // Counted before the scan: an fd opened meanwhile makes the next swap look again.
                Remember(job.Tid, found, job.FdCount);
            }
            if (matches.Count == 0) return;
            ulong oldInode = Native.Socket.Inode(oldSocket);
            target = OpenTaskPidfd(job.Tid);
            if (target < 0) { job.Report.Add($"cannot reach task {job.Tid}: {Errors.Name(-target)}"); return; }
            foreach (int epollFd in matches)
            {
                if (!TryReadRegistration(job.Tid, epollFd, job.Fd, oldInode, out uint events, out ulong data))
                {
                    job.Report.Add($"epoll fd {epollFd}: the registration went away meanwhile");
                    continue;
                }
                int epoll = Native.Pidfd.GetFd(target, epollFd);
                if (epoll < 0) { job.Report.Add($"epoll fd {epollFd}: cannot copy it: {Errors.Name(-epoll)}"); continue; }
                string outcome = Transfer(ref epoll, ref self, ref target, ref oldSocket, ref newSocket, job.Fd, events, data);
                Native.Epoll.Close(epoll);
                job.Report.Add($"epoll fd {epollFd}: {outcome}");
            }
        }
        finally
        {
            if (oldSocket >= 0) Native.Epoll.Close(oldSocket);
            if (newSocket >= 0) Native.Epoll.Close(newSocket);
            if (target >= 0) Native.Epoll.Close(target);
        }
    }

    /// <summary>Looks in the known epoll sets; false when one of them is no longer an epoll (then scan again).</summary>
    private static bool Check(Job job, int[] epollFds, int oldSocket, int ownTid, List<int> matches)
    {
        foreach (int epollFd in epollFds)
        {
            int r = Watches(job, epollFd, oldSocket, ownTid);
            if (r == -Errors.EBADF || r == -Errors.EINVAL) return false;
            if (r == 0) matches.Add(epollFd);
        }
        return true;
    }

    /// <summary>kcmp: 0 when epoll <paramref name="epollFd"/> watches our copy of the old socket under the program's number.</summary>
    private static int Watches(Job job, int epollFd, int oldSocket, int ownTid)
    {
        // The same number can be registered for several files (a file dup'ed away and closed): look at a few.
        for (int index = 0; index < 8; index++)
        {
            int r = Native.Epoll.CompareWatched(ownTid, job.Tid, oldSocket, epollFd, job.Fd, index);
            if (r <= 0) return r;
        }
        return 1;
    }

    /// <summary>Every epoll fd of the task (the first <see cref="MaxScannedFds"/> fds), noting those that watch the old socket; null when unreadable.</summary>
    private static int[]? Scan(Job job, int oldSocket, int ownTid, List<int> matches)
    {
        int scanned = 0;
        int dir = Native.Epoll.OpenProc($"/proc/{job.Tid}/fd", directory: true);
        if (dir < 0) return null;
        var epollFds = new List<int>();
        try
        {
            Span<byte> buffer = stackalloc byte[8192];
            while (scanned < MaxScannedFds)
            {
                int n = Native.Epoll.ReadDirectory(dir, buffer);
                if (n <= 0) break;
                // struct linux_dirent64: ino (8), off (8), reclen (2), type (1), name (NUL-terminated).
                for (int at = 0; at + 19 < n && scanned < MaxScannedFds;)
                {
                    int length = BitConverter.ToUInt16(buffer[(at + 16)..]);
                    if (length == 0) break;
                    int fd = ParseFdName(buffer.Slice(at + 19, Math.Max(0, Math.Min(length, n - at) - 19)));
                    at += length;
                    if (fd < 0) continue;
                    scanned++;
                    int r = Watches(job, fd, oldSocket, ownTid);
                    if (r == -Errors.EINVAL || r == -Errors.EBADF) continue; // not an epoll, or closed meanwhile
                    if (r == -Errors.ENOSYS || r == -Errors.EPERM)
                    {
                        _unavailable = $"epoll registrations cannot be moved: kcmp answered {Errors.Name(-r)}";
                        job.Report.Add(_unavailable);
                        return null;
                    }
                    epollFds.Add(fd);
                    if (r == 0) matches.Add(fd);
                }
            }
        }
        finally { Native.Epoll.Close(dir); }
        return epollFds.ToArray();
    }

    private static int ParseFdName(ReadOnlySpan<byte> name)
    {
        int value = 0, digits = 0;
        foreach (byte c in name)
        {
            if (c == 0) break;
            if (c is < (byte)'0' or > (byte)'9' || digits == 9) return -1; // "." and ".."
            value = value * 10 + (c - '0');
            digits++;
        }
        return digits == 0 ? -1 : value;
    }

    private static int OpenTaskPidfd(int tid)
    {
        int pidfd = Native.Pidfd.Open(tid, Native.Pidfd.PidfdThread);
        if (pidfd != -Errors.EINVAL) return pidfd;
        // Before 6.9 only a thread-group leader has a pidfd; threads share its fd table.
        return TargetProcess.ReadStatus(tid, "Tgid:")?[0] is { } tgid && int.TryParse(tgid, out int leader)
            ? Native.Pidfd.Open(leader, 0) : -Errors.ESRCH;
    }

    /// <summary>
    /// Reads the events and data of the entry (fd <paramref name="fd"/>, inode <paramref name="inode"/>) from
    /// /proc/TID/fdinfo/EPFD: "tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x".
    /// </summary>
    private static bool TryReadRegistration(int tid, int epollFd, int fd, ulong inode, out uint events, out ulong data)
    {
        events = 0;
        data = 0;
        int file = Native.Epoll.OpenProc($"/proc/{tid}/fdinfo/{epollFd}", directory: false);
        if (file < 0) return false;
        try
        {
            var buffer = new byte[65536];
            int filled = 0, total = 0;
            while (total < MaxFdinfoBytes)
            {
                int n = Native.Epoll.ReadSome(file, buffer.AsSpan(filled));
                if (n <= 0) break;
                filled += n;
                total += n;
                int consumed = 0;
                while (true)
                {
                    int newline = Array.IndexOf(buffer, (byte)'\n', consumed, filled - consumed);
                    if (newline < 0) break;
                    if (TryParseEntry(buffer.AsSpan(consumed, newline - consumed), out int tfd, out uint ev, out ulong d, out ulong ino)
                        && tfd == fd && ino == inode)
                    {
                        events = ev;
                        data = d;
                        return true;
                    }
                    consumed = newline + 1;
                }
                // Keep the unfinished line; a line longer than the buffer is not an epoll entry.
                Array.Copy(buffer, consumed, buffer, 0, filled - consumed);
                filled -= consumed;
                if (filled == buffer.Length) filled = 0;
            }
            return false;
        }
        finally { Native.Epoll.Close(file); }
    }

    internal static bool TryParseEntry(ReadOnlySpan<byte> line, out int tfd, out uint events, out ulong data, out ulong inode)
    {
        tfd = 0;
        events = 0;
        data = inode = 0;
        if (!line.StartsWith("tfd:"u8)) return false;
        return Field(line, "tfd:"u8, NumberStyles.Integer, out ulong t) && t <= int.MaxValue && (tfd = (int)t) >= 0
            && Field(line, "events:"u8, NumberStyles.AllowHexSpecifier, out ulong e) && e <= uint.MaxValue && (events = (uint)e) == e
            && Field(line, "data:"u8, NumberStyles.AllowHexSpecifier, out data)
            && Field(line, "ino:"u8, NumberStyles.AllowHexSpecifier, out inode);
    }

    private static bool Field(ReadOnlySpan<byte> line, ReadOnlySpan<byte> key, NumberStyles style, out ulong value)
    {
        value = 0;
        int at = line.IndexOf(key);
        if (at < 0) return false;
        var rest = line[(at + key.Length)..].TrimStart((byte)' ');
        int end = rest.IndexOfAny((byte)' ', (byte)'\t');
        if (end >= 0) rest = rest[..end];
        Span<char> text = stackalloc char[Math.Min(rest.Length, 32)];
        if (rest.Length > text.Length) return false;
        for (int i = 0; i < rest.Length; i++) text[i] = (char)rest[i];
        return ulong.TryParse(text, style, CultureInfo.InvariantCulture, out value);
    }

    /// <summary>Adds the new socket under <paramref name="fd"/> with the old entry's events and data, then drops the old entry.</summary>
    private static string Transfer(ref int epoll, ref int self, ref int target, ref int oldSocket, ref int newSocket, int fd, uint events, ulong data)
    {
        // In our private table, number fd is about to hold the program's sockets: move our own fds off it.
        int moveErr = 0;
        foreach (int own in (ReadOnlySpan<int>)[epoll, self, target, oldSocket, newSocket])
            if (own == fd) moveErr = Native.Epoll.DuplicateAbove(own, fd + 1);
        if (moveErr < 0) return $"cannot make room for fd {fd}: {Errors.Name(-moveErr)}";
        if (moveErr > 0)
        {
            Native.Epoll.Close(fd);
            if (epoll == fd) epoll = moveErr;
            else if (self == fd) self = moveErr;
            else if (target == fd) target = moveErr;
            else if (oldSocket == fd) oldSocket = moveErr;
            else newSocket = moveErr;
        }
        int err = Native.Epoll.DuplicateTo(newSocket, fd);
        if (err < 0) return $"cannot place the new socket at fd {fd}: {Errors.Name(-err)}";
        try
        {
            err = Native.Epoll.Control(epoll, Native.Epoll.CtlAdd, fd, events, data);
            if (err < 0 && err != -Errors.EEXIST) return $"adding the new socket as fd {fd} failed: {Errors.Name(-err)}";
            err = Native.Epoll.DuplicateTo(oldSocket, fd);
            if (err == 0) err = Native.Epoll.Control(epoll, Native.Epoll.CtlDel, fd, 0, 0);
            return err == 0
                ? $"registration (events 0x{events:x}, data 0x{data:x}) moved to the new socket"
                : $"registration moved to the new socket; the old entry stays until the old socket is closed ({Errors.Name(-err)})";
        }
        finally { Native.Epoll.Close(fd); }
    }
}
