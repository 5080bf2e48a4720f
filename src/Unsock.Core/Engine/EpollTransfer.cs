using System.Globalization;
using System.Runtime.CompilerServices;
using Native = global::Interop;

namespace Unsock.Core.Engine;

/// <summary>
/// Keeps a program's epoll registrations working across a swap. epoll keys a registration by (file, fd
/// number): a socket registered before connect/bind stays registered as the old TCP socket, and the program
/// would wait forever for events on it (nginx does this with upstreams). After the swap, every epoll set of the
/// program that watches the old socket under that number gets the new socket under the same number, with the
/// same events and data, and the old entry is dropped; the program's own EPOLL_CTL_MOD/DEL then find it.
/// <para>
/// epoll_ctl takes the file from the caller's fd table, so the work runs on mover threads with a private
/// table (close_range CLOSE_RANGE_UNSHARE) where the new socket can sit at the program's number. Everything
/// that touches a program's epoll waits for that epoll's mutex, which a program can hold (epoll_wait copying
/// into a page that faults slowly, a huge set): so a notification thread never waits for a move. The swapped
/// call is parked on the poller until its move is done (a wake-up fd) or its time is up; then it is answered.
/// </para>
/// <para>
/// Moves are per attachment (<see cref="Owner"/>): one at a time each, so a program that holds its epoll set
/// stalls one mover at most. A move past its time is given up: its mover is left to finish alone and replaced,
/// and its attachment moves nothing while it hangs; after <see cref="HangsBeforeGivingUp"/> hangs, nothing
/// more for that attachment alone. Threads are bounded: <see cref="MaxMovers"/> working movers, at most
/// <see cref="MaxStuckMovers"/> given-up ones (one per attachment at most) still waiting in a program's epoll.
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
    public const int MoveTimeoutMs = 2000;
    internal const int HangsBeforeGivingUp = 2, MaxMovers = 4, MaxStuckMovers = 32;

    private static readonly object CacheGate = new();
    private static readonly Dictionary<int, Scanned> EpollFdsOfTask = new();

    /// <summary>What a scan of one task's fds found: its epoll fds, among how many fds.</summary>
    private readonly record struct Scanned(int[] EpollFds, int FdCount, long Expires);

    // Movers and their work: owners with waiting moves, in turn.
    private static readonly object Gate = new();
    private static readonly Queue<Owner> Ready = new();
    private static readonly ConditionalWeakTable<ListenerAttachment, Owner> Owners = new();
    private static int _movers, _idleMovers, _stuckMovers;
    private static volatile string? _unavailable;

    /// <summary>One attachment's moves: run one at a time; its hangs count for it alone.</summary>
    internal sealed class Owner
    {
        internal readonly Queue<Job> Waiting = new();
        internal bool Queued, Running, Stuck;
        internal int Hangs;
        /// <summary>Our copies of old sockets left registered while this program held its epoll set: see <see cref="CloseOrKeep"/>.</summary>
        internal readonly List<int> Kept = new();
        /// <summary>Why this attachment's registrations are no longer moved; null while they are.</summary>
        internal volatile string? GivenUp;
    }

    /// <summary>
    /// Why no socket of this attachment may be swapped now, or null. While a move waits for a program's epoll set
    /// (and for good once a program held it past the limit <see cref="HangsBeforeGivingUp"/> times), an old socket
    /// that stays registered there would be closed by us as its last holder, and that close waits for the held
    /// set (eventpoll_release takes its mutex): a notification thread would hang. So such swaps are refused.
    /// </summary>
    public static string? RefusesSwaps(Owner owner)
    {
        lock (Gate)
        {
            if (owner.Hangs >= HangsBeforeGivingUp)
                return $"this program held its epoll set past {MoveTimeoutMs} ms {owner.Hangs} times; its sockets are no longer swapped";
            return owner.Stuck ? "a move for this program still waits for its epoll set; its sockets are not swapped meanwhile" : null;
        }
    }

    /// <summary>
    /// Closes our copy of a swapped call's old socket once the call is over, unless its registrations were not
    /// moved while this program holds (or held) its epoll set: then we may be its last holder, and the close would
    /// wait for the held set (eventpoll_release). Such copies are kept until the attachment is gone (its programs
    /// exited, their epoll sets with them): a few at most, as swaps are refused meanwhile.
    /// </summary>
    public static void CloseOrKeep(ListenerAttachment attachment, Job job, int oldCopy)
    {
        if (oldCopy < 0) return;
        lock (Gate)
        {
            if (!job.Done && (job.Owner.Stuck || job.Owner.Hangs > 0))
            {
                job.Owner.Kept.Add(oldCopy);
                return;
            }
        }
        CopyCloser.Close(attachment, oldCopy);
    }

    /// <summary>
    /// The attachment is over: the copies kept for it are closed on a thread of their own (should a program outside
    /// it still hold such a set, that thread waits, no other).
    /// </summary>
    public static void ReleaseKept(ListenerAttachment attachment)
    {
        if (!Owners.TryGetValue(attachment, out var owner)) return;
        int[] kept;
        lock (Gate)
        {
            kept = owner.Kept.ToArray();
            owner.Kept.Clear();
        }
        if (kept.Length == 0) return;
        new Thread(() => { foreach (int fd in kept) Native.Epoll.Close(fd); }, 64 * 1024) { IsBackground = true, Name = "unsock-close" }.Start();
    }

    /// <summary>Copies kept for <paramref name="attachment"/> (see <see cref="CloseOrKeep"/>).</summary>
    internal static int KeptCount(ListenerAttachment attachment)
    {
        if (!Owners.TryGetValue(attachment, out var owner)) return 0;
        lock (Gate) return owner.Kept.Count;
    }

    /// <summary>The move bookkeeping of <paramref name="attachment"/>.</summary>
    public static Owner For(ListenerAttachment attachment) => Owners.GetValue(attachment, _ => new Owner());

    /// <summary>One swap's move, and its result.</summary>
    internal sealed class Job(Owner owner, int tid, int fd, int oldCopy, int replacement, int[]? epollFds, int fdCount, int wakeFd)
    {
        public Owner Owner { get; } = owner;
        public int FdCount { get; } = fdCount;
        public int Tid { get; } = tid;
        public int Fd { get; } = fd;
        public int OldCopy { get; } = oldCopy;
        public int Replacement { get; } = replacement;
        public int[]? EpollFds { get; } = epollFds;
        /// <summary>An eventfd of ours the mover writes to when the job is over (done, or skipped).</summary>
        public int WakeFd { get; } = wakeFd;
        // Under Gate: Started once a mover took it; Abandoned once its call no longer waits (our fds may be closed).
        public bool Started, Abandoned, Done;
        public string? Skipped;
        public List<string> Report { get; } = new();
    }

    /// <summary>
    /// On the notification thread, right after <paramref name="replacement"/> went in at <paramref name="fd"/> of
    /// task <paramref name="tid"/> in place of <paramref name="oldCopy"/>'s socket: null when there is nothing to
    /// move (the common case of a program without epoll; <paramref name="note"/> may say why not), else a job
    /// that a mover has taken on. Never waits for the program.
    /// </summary>
    /// <param name="fdCount">How many fds the task's table holds now (<see cref="TargetProcess.OpenFdCount"/>).</param>
    public static Job? Start(Owner owner, int tid, int fd, int oldCopy, int replacement, int fdCount, out string? note)
    {
        note = null;
        if (_unavailable is not null) return null;
        if (owner.GivenUp is { } why) { note = why; return null; }
        if (owner.Stuck) { note = "not checked: a move for this program still waits for its epoll set"; return null; }
        var known = CachedScan(tid);
        // The count of the task's fds (6.2; 0 before, then only time limits the reuse).
        if (known is { } k && k.FdCount != fdCount && k.FdCount <= SmallTable) known = null;
        if (known is { EpollFds.Length: 0 }) return null;
        int wake = Native.Epoll.CreateEventFd();
        if (wake < 0) { note = $"not checked: eventfd: {Errors.Name(-wake)}"; return null; }
        var job = new Job(owner, tid, fd, oldCopy, replacement, known?.EpollFds, fdCount, wake);
        lock (Gate)
        {
            owner.Waiting.Enqueue(job);
            if (!owner.Queued && !owner.Running)
            {
                owner.Queued = true;
                Ready.Enqueue(owner);
                Monitor.Pulse(Gate);
            }
            if (_idleMovers == 0 && _movers < MaxMovers) StartMover();
        }
        return job;
    }

    /// <summary>
    /// The job's call stops waiting for it (interrupted, or out of time). A job that a mover still works on past
    /// its time hangs in the program's epoll: its attachment is marked, its mover given up and replaced.
    /// Returns a line for the log when the job was not done.
    /// </summary>
    public static string? Leave(Job job, bool outOfTime)
    {
        lock (Gate)
        {
            if (job.Done || job.Abandoned) return null;
            job.Abandoned = true; // from now on no mover touches our fds
            if (!job.Started) return outOfTime ? $"not moved: no mover was free within {MoveTimeoutMs} ms" : null;
            // Interrupted by a signal: the mover finishes on its own copies of the sockets, uncounted.
            if (!outOfTime) return "the call was interrupted while its registrations were being moved";
            var owner = job.Owner;
            owner.Stuck = true;
            if (++owner.Hangs >= HangsBeforeGivingUp)
                owner.GivenUp = $"not moved: this program held its epoll set past {MoveTimeoutMs} ms {owner.Hangs} times, its registrations are no longer moved";
            // Its mover stays stuck in the program's epoll until the program lets go: counted apart, replaced.
            _movers--;
            _stuckMovers++;
            if (Ready.Count > 0 && _idleMovers == 0) StartMover();
            // The program's other waiting moves would only wait their time out: over now, unmoved.
            foreach (var waiting in owner.Waiting) Skip(waiting, "not moved: a move for this program still waits for its epoll set");
            owner.Waiting.Clear();
            return $"gave up after {MoveTimeoutMs} ms (the program holds its epoll set); its registrations may still watch the old socket";
        }
    }

    /// <summary>True once the job is over (done, or skipped), with what it did for the log.</summary>
    public static bool IsOver(Job job, out IReadOnlyList<string> report)
    {
        lock (Gate)
        {
            report = job.Skipped is { } why ? [why] : job.Report;
            return job.Done || job.Skipped is not null;
        }
    }

    /// <summary>Why moving registrations is off for everyone (the kernel cannot do it), once it is; null while it works.</summary>
    public static string? Unavailable => _unavailable;

    /// <summary>Given-up movers still waiting in a program's epoll.</summary>
    internal static int StuckMovers { get { lock (Gate) return _stuckMovers; } }

    private static void Skip(Job job, string why)
    {
        job.Skipped = why;
        job.Abandoned = true;
        Native.Epoll.Signal(job.WakeFd);
    }

    private static void StartMover()
    {
        // Past the bound on stuck movers, no new ones: waiting moves then time out unmoved, their calls answered.
        if (_movers + _stuckMovers >= MaxMovers + MaxStuckMovers) return;
        _movers++;
        new Thread(RunMover, 256 * 1024) { IsBackground = true, Name = "unsock-epoll" }.Start();
    }

    private static Scanned? CachedScan(int tid)
    {
        lock (CacheGate)
            return EpollFdsOfTask.TryGetValue(tid, out var e) && e.Expires > Environment.TickCount64 ? e : null;
    }

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

    /// <summary>A mover: a thread with a private fd table, taking one attachment's next move at a time.</summary>
    private static void RunMover()
    {
        int err = Native.Epoll.UnshareFdTable();
        int self = err == 0 ? Native.Pidfd.Open(Environment.ProcessId, 0) : err;
        int ownTid = Native.Epoll.ThreadId();
        while (true)
        {
            Job job;
            lock (Gate)
            {
                _idleMovers++;
                while (!TryTakeJob(out job!)) Monitor.Wait(Gate);
                _idleMovers--;
            }
            int wake = -1;
            bool stuck;
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
            finally
            {
                lock (Gate)
                {
                    var owner = job.Owner;
                    // Our copy of the job's wake-up fd, taken only now, while its call still waits (the fd is open
                    // then): taken earlier, it could sit at the program's number, which Transfer reuses in our table.
                    if (!job.Abandoned && self >= 0) wake = Native.Pidfd.GetFd(self, job.WakeFd);
                    stuck = job.Abandoned && job.Started && owner.Stuck;
                    job.Done = !job.Abandoned;
                    owner.Running = false;
                    if (stuck)
                    {
                        // Given up meanwhile and replaced: the program let go at last; this mover ends.
                        owner.Stuck = false;
                        _stuckMovers--;
                    }
                    if (owner.Waiting.Count > 0 && !owner.Queued)
                    {
                        owner.Queued = true;
                        Ready.Enqueue(owner);
                        Monitor.Pulse(Gate);
                    }
                }
                if (wake >= 0)
                {
                    Native.Epoll.Signal(wake);
                    Native.Epoll.Close(wake);
                }
            }
            if (stuck)
            {
                if (self >= 0) Native.Epoll.Close(self);
                return;
            }
        }
    }

    /// <summary>The next move of the next attachment in turn whose moves are not running (under Gate).</summary>
    private static bool TryTakeJob(out Job job)
    {
        job = null!;
        while (Ready.TryDequeue(out var owner))
        {
            owner.Queued = false;
            if (owner.Running || owner.Stuck) continue; // it is queued again when its running move ends
            while (owner.Waiting.TryDequeue(out var next))
            {
                if (next.Abandoned) continue;
                next.Started = true;
                owner.Running = true;
                job = next;
                if (owner.Waiting.Count > 0) { owner.Queued = true; Ready.Enqueue(owner); }
                return true;
            }
        }
        return false;
    }

    private static void Move(Job job, ref int self, int ownTid)
    {
        int oldSocket, newSocket;
        // Our own copies in this thread's table, taken while the call still waits (its fds are open then).
        lock (Gate)
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
                    if (r == -Errors.ENOSYS)
                    {
                        _unavailable = $"epoll registrations cannot be moved: kcmp answered {Errors.Name(-r)}";
                        job.Report.Add(_unavailable);
                        return null;
                    }
                    if (r == -Errors.EPERM)
                    {
                        // This program denies us kcmp (not dumpable, for a supervisor without CAP_SYS_PTRACE): its moves alone stop.
                        job.Owner.GivenUp = $"not moved: kcmp on this program answered {Errors.Name(-r)}";
                        job.Report.Add(job.Owner.GivenUp);
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
