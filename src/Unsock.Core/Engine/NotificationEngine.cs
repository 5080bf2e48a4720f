using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Tmds.Linux;
using Unsock.Core.Filter;
using Unsock.Core.Policies;
using static Tmds.Linux.LibC;

namespace Unsock.Core.Engine;

/// <summary>
/// The engine: one per process, serving any number of attached seccomp listeners with notification threads
/// (started as needed, up to a limit), one poller for calls that wait, and one socket-file sweeper. Receiving
/// is a role one thread holds at a time; the one that receives also answers, which is what
/// SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP rewards. The holder keeps the role from call to call (its caches stay
/// warm and no other thread is woken per call) and hands it over when a call is about to wait for its target
/// (ADDFD) while another notification waits; a deputy takes it from a holder that has been busy with one call
/// for more than a millisecond (a swap waiting in ADDFD for a stalled target), so no call holds up other
/// programs' calls.
/// </summary>
public sealed unsafe partial class NotificationEngine : IDisposable
{
    // poll, not epoll, for a few listeners: SYNC_WAKE_UP's "wake on this CPU" reaches a poll waiter, but
    // epoll's own wake-up of epoll_wait drops it. Beyond this many, poll's cost per call grows too much.
    private const int PollListenerLimit = 8;
    private const short PollIn = 0x1, PollHangUp = 0x8 | 0x10 | 0x20; // POLLERR | POLLHUP | POLLNVAL

    // A holder busy with one call for StuckMicroseconds loses the receiving role to the deputy. The holder sets the
    // deputy's timer to that at the start of every call: calls that follow each other closely push it on, so it fires
    // only after a call that lasted that long or after the last call before a pause. Armed at most once a millisecond
    // to fire two later, it woke the deputy for nothing about once per millisecond under load (10 us of CPU per
    // short connection at 3000/s); a timerfd_settime per call costs a fifth of that.
    private const long StuckMicroseconds = 1000;

    private readonly EngineOptions _options;
    private readonly object _attachLock = new();
    private readonly Dictionary<int, ListenerAttachment> _byId = new();
    private ListenerAttachment[] _attached = [];
    private readonly int _wakeFd, _epollFd;
    private readonly SocketSweeper _sweeper;

    /// <summary>A notification thread: its handler (and the handler's caches) are its own.</summary>
    private sealed class Worker(string name)
    {
        public string Name { get; } = name;
        public Thread? Thread;
        public Redirector? Handler;
        /// <summary>Handling a call with the receiving role kept (until it hands the role over before waiting on its target).</summary>
        public bool Kept;
        /// <summary>Whether it still held the role when its kept call was answered (see <see cref="EndKept"/>).</summary>
        public bool HeldAfter;
        /// <summary>Its slot in the <see cref="CallJournal"/>, for the call in hand; -1 without one.</summary>
        public int Slot = -1;
        /// <summary>Calls it handled, and the managed bytes it allocated handling them (<see cref="HandlingAllocations"/>).</summary>
        public long HandledCalls, HandlingAllocated;
    }

    [ThreadStatic] private static Worker? t_worker;

    // The receiving role. Guarded by _roleLock: who holds it, who watches it (the deputy, asleep in poll on the
    // watch timer and its own eventfd), how many threads wait in Monitor.Wait to be needed.
    private readonly object _roleLock = new();
    private readonly List<Worker> _workers = new();
    private readonly int _watchFd, _deputyFd;
    private Worker? _receiver, _deputy, _lastReceiver;
    private long _roleChanges;
    private int _idleFollowers;
    private bool _receiverBusy, _noMoreWorkers;
    private long _busySince;

    private int _nextId, _rotation;
    private volatile bool _stopping;
    private bool _started;
    private CallJournal? _journal;
    // Calls a previous supervisor received and did not answer (Attach's unanswered), waiting for a notification thread.
    private readonly System.Collections.Concurrent.ConcurrentQueue<(ListenerAttachment Attachment, SyscallRequest Request)> _again = new();

    internal EngineLog Log { get; }
    internal CallPoller Poller { get; }
    public EngineMetrics Metrics { get; }
    internal EngineOptions Options => _options;
    internal CallJournal? Journal => _journal;

    /// <summary>
    /// Keeps every call received and not yet answered in <paramref name="journal"/>, for a successor to answer
    /// (<see cref="Handover"/>). Before <see cref="Start"/>.
    /// </summary>
    public void UseJournal(CallJournal journal)
    {
        lock (_attachLock)
        {
            if (_started) throw new InvalidOperationException("the journal is chosen before the engine starts");
            _journal = journal;
        }
    }

    public NotificationEngine(IOptions<EngineOptions>? options = null, ILoggerFactory? loggerFactory = null, IMeterFactory? meterFactory = null)
    {
        _options = EngineOptionsValidator.Checked(options?.Value ?? new EngineOptions());
        Log = new EngineLog((loggerFactory ?? NullLoggerFactory.Instance).CreateLogger("Unsock.Engine"));
        Metrics = new EngineMetrics(meterFactory, () => Poller!.Count, () => Volatile.Read(ref _attached).Length,
            () => Volatile.Read(ref _attached).Count(a => a.IsAttached), SocketFileCount);
        _wakeFd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        _epollFd = epoll_create1(EPOLL_CLOEXEC);
        if (_wakeFd < 0 || _epollFd < 0) throw new global::Interop.ErrnoException(errno, "eventfd/epoll_create1");
        var ev = new epoll_event { events = EPOLLIN };
        ev.data.u64 = 0;
        epoll_ctl(_epollFd, EPOLL_CTL_ADD, _wakeFd, &ev);
        _watchFd = global::Interop.Timer.Create();
        _deputyFd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (_watchFd < 0 || _deputyFd < 0) throw new global::Interop.ErrnoException(_watchFd < 0 ? -_watchFd : errno, "timerfd_create/eventfd");
        Poller = new CallPoller(this, new Redirector(this));
        _sweeper = new SocketSweeper(this);
    }

    /// <summary>The listeners attached now.</summary>
    public IReadOnlyList<ListenerAttachment> Attachments => Volatile.Read(ref _attached);

    /// <summary>The record of a socket we converted, in any attachment's registry but <paramref name="except"/>.</summary>
    internal ConvertedSocket? FindConverted(ulong inode, SocketRegistry except)
    {
        foreach (var a in Volatile.Read(ref _attached))
            if (!ReferenceEquals(a.Registry, except) && a.Registry.Find(inode) is { } found) return found;
        return null;
    }

    /// <summary>
    /// Starts receiving: one notification thread now, more when calls overlap (up to
    /// <see cref="EngineOptions.NotificationThreads"/>). Raises the soft fd limit to the hard one first, as
    /// systemd does for services.
    /// </summary>
    public void Start()
    {
        lock (_attachLock)
        {
            if (_started) return;
            _started = true;
        }
        global::Interop.Limits.RaiseFileLimit();
        Poller.Start();
        _sweeper.Start();
        lock (_roleLock) StartWorker();
    }

    /// <summary>One more notification thread, unless there are enough; under _roleLock.</summary>
    private bool StartWorker()
    {
        if (_noMoreWorkers || _workers.Count >= _options.EffectiveNotificationThreads) return false;
        var worker = new Worker($"unsock-notify-{_workers.Count}") { Slot = _journal?.Rent() ?? -1 };
        worker.Thread = new Thread(() => Serve(worker), 256 * 1024) { IsBackground = true, Name = worker.Name };
        _workers.Add(worker);
        worker.Thread.Start();
        return true;
    }

    /// <summary>Serves <paramref name="listenerFd"/> (taken over: the engine closes it) for targets under <paramref name="policy"/>.</summary>
    /// <param name="state">What a previous supervisor knew of this listener's targets (<see cref="ListenerAttachment.ExportState"/>).</param>
    /// <param name="unanswered">
    /// Calls a previous supervisor received from this listener and did not answer (<see cref="CallJournal"/>): handled
    /// again, as if received now, those the kernel still has waiting.
    /// </param>
    public ListenerAttachment Attach(int listenerFd, Policy policy, TargetContext target, AttachmentState? state = null,
        IReadOnlyList<SyscallRequest>? unanswered = null)
    {
        var listener = new SeccompListener(listenerFd);
        if (!listener.TrySetSyncWakeUp()) Log.NoSyncWakeUp();
        ListenerAttachment attachment;
        lock (_attachLock)
        {
            if (_stopping) { listener.Dispose(); throw new InvalidOperationException("the engine is stopping"); }
            attachment = new ListenerAttachment(++_nextId, listener, policy, target) { TookOver = state is not null || unanswered is { Count: > 0 } };
            if (state is not null)
            {
                var problems = new List<string>();
                int files = attachment.Registry.Import(state, target.Pid, problems);
                foreach (var p in problems) Log.StateProblem(target.Pid, p);
                Log.StateTaken(target.Pid, attachment.Registry.Count, files);
            }
            _byId[attachment.Id] = attachment;
            var ev = new epoll_event { events = EPOLLIN };
            ev.data.u64 = (ulong)attachment.Id;
            epoll_ctl(_epollFd, EPOLL_CTL_ADD, listener.RawFd, &ev);
            Volatile.Write(ref _attached, [.. _attached, attachment]);
        }
        Wake();
        Log.Attached(target.Pid, _attached.Length);
        if (unanswered is { Count: > 0 }) HandleAgain(attachment, unanswered);
        return attachment;
    }

    /// <summary>
    /// Queues the calls a previous supervisor left unanswered for the notification threads, which take them before
    /// anything new: handled as if received now (with the same stall protection), those the kernel still has waiting.
    /// </summary>
    private void HandleAgain(ListenerAttachment attachment, IReadOnlyList<SyscallRequest> calls)
    {
        foreach (var r in calls) _again.Enqueue((attachment, r));
        Wake();
    }

    /// <summary>
    /// Stops serving <paramref name="attachment"/>: its waiting calls fail with EINTR, its listener is closed
    /// (its targets' trapped calls then fail with ENOSYS), and its socket files go once their sockets are.
    /// </summary>
    public void Detach(ListenerAttachment attachment) => Detach(attachment, "detached by the host", Errors.EINTR);

    private void Detach(ListenerAttachment attachment, string reason, int parkedErrno, bool keepFiles = false)
    {
        if (!attachment.BeginDetach(reason)) return;
        lock (_attachLock)
        {
            _byId.Remove(attachment.Id);
            if (!attachment.Listener.IsClosed) epoll_ctl(_epollFd, EPOLL_CTL_DEL, attachment.Listener.RawFd, null);
            Volatile.Write(ref _attached, _attached.Where(a => a != attachment).ToArray());
        }
        Wake();
        Log.Detached(attachment.Target.Pid, reason);
        // The poller lets go of its copies first, so that the sweep sees only the targets' own sockets.
        Poller.Drop(attachment, parkedErrno, () =>
        {
            attachment.Listener.Dispose();
            _sweeper.Final(attachment, keepFiles);
        });
    }

    private void Wake()
    {
        ulong one = 1;
        write(_wakeFd, &one, 8);
    }

    private void Serve(Worker worker)
    {
        t_worker = worker;
        while (!_stopping)
        {
            try
            {
                if (!TakeRole(worker)) return;
                ReceiveWhileHolding(worker);
            }
            catch (Exception e)
            {
                // A thread's loop never dies: a bug of ours costs at most the call in hand.
                Log.ThreadFault(e, worker.Name);
                LeaveRoles(worker);
                Thread.Sleep(10);
            }
        }
    }

    /// <summary>
    /// Receives and answers for as long as this thread holds the role: a call is handled with the role kept
    /// until it is about to wait for its target while another call waits. Returns once the role is gone.
    /// </summary>
    private void ReceiveWhileHolding(Worker worker)
    {
        while (true)
        {
            if (_stopping)
            {
                LeaveRoles(worker);
                return;
            }
            var attachment = ReceiveNext(out var request);
            if (attachment is null) continue;
            // Journaled before anything else, a syscall above all: a SIGKILL takes effect at a syscall's return, and a
            // call received and not journaled is lost to the next supervisor (its program waits until killed). Calls
            // handled again (a previous supervisor's) are journaled again here too.
            _journal?.Record(worker.Slot, attachment.Target.Key, request);
            // No look for another waiting call here (a poll per call): the handler looks before it waits for the
            // target (BeforeWaitingOnTarget, the one wait a call makes), and the deputy takes over from a call that
            // takes long for any other reason.
            BeginBusy();
            worker.Kept = true;
            worker.HeldAfter = false;
            try { Handle(worker, attachment, request); }
            finally { EndKept(worker); }
            if (!worker.HeldAfter) return;
        }
    }

    /// <summary>Waits until this thread holds the receiving role; false when the engine stops.</summary>
    private bool TakeRole(Worker worker)
    {
        lock (_roleLock)
        {
            while (true)
            {
                if (_stopping) return false;
                if (_receiver is null)
                {
                    Hold(worker);
                    return true;
                }
                if (_deputy is null)
                {
                    _deputy = worker;
                    break;
                }
                _idleFollowers++;
                try { Monitor.Wait(_roleLock); }
                finally { _idleFollowers--; }
            }
        }
        return Watch(worker);
    }

    /// <summary>
    /// The deputy's wait: woken by the watch timer (the holder may be stuck in a call) or by a hand-over.
    /// Returns true once it holds the role, false when the engine stops.
    /// </summary>
    private bool Watch(Worker worker)
    {
        var fds = stackalloc pollfd[2];
        ulong drained;
        while (true)
        {
            long busy;
            fds[0] = new pollfd { fd = _watchFd, events = PollIn };
            fds[1] = new pollfd { fd = _deputyFd, events = PollIn };
            poll(fds, 2, -1);
            read(_watchFd, &drained, 8);
            read(_deputyFd, &drained, 8);
            lock (_roleLock)
            {
                if (_stopping)
                {
                    _deputy = null;
                    return false;
                }
                if (_receiver is null)
                {
                    Hold(worker);
                    _deputy = null;
                    return true;
                }
                if (!_receiverBusy) continue;
                busy = (long)Stopwatch.GetElapsedTime(_busySince).TotalMicroseconds;
                if (busy >= StuckMicroseconds)
                {
                    // The holder carries on with its call and comes back as a follower.
                    Hold(worker);
                    _receiverBusy = false;
                    _deputy = null;
                    return true;
                }
            }
            // Woken early (a call began since the timer was set, and its own setting was overtaken): the rest of its time.
            global::Interop.Timer.Arm(_watchFd, Math.Max(StuckMicroseconds - busy, 50));
        }
    }

    /// <summary>
    /// Called by a handler just before it waits for its target (ADDFD returns once the target has taken the fd):
    /// a call that came in meanwhile gets the role now instead of waiting for that round trip.
    /// </summary>
    internal void BeforeWaitingOnTarget()
    {
        var worker = t_worker;
        if (worker is not { Kept: true } || !AnotherPending()) return;
        worker.Kept = false;
        HandOver(worker);
    }

    /// <summary>Gives the role to <paramref name="worker"/>; under _roleLock.</summary>
    private void Hold(Worker worker)
    {
        _receiver = worker;
        if (_lastReceiver != worker) _roleChanges++;
        _lastReceiver = worker;
    }

    /// <summary>How often the receiving role went to another thread than the one that held it last.</summary>
    internal long RoleChanges
    {
        get { lock (_roleLock) return _roleChanges; }
    }

    /// <summary>Notification threads started so far.</summary>
    internal int NotificationThreadCount
    {
        get { lock (_roleLock) return _workers.Count; }
    }

    /// <summary>The holder starts on a call with the role kept: the deputy's timer is set to fire if the call lasts StuckMicroseconds.</summary>
    private void BeginBusy()
    {
        lock (_roleLock)
        {
            _receiverBusy = true;
            _busySince = Stopwatch.GetTimestamp();
            if (_deputy is null) CallForDeputy();
        }
        global::Interop.Timer.Arm(_watchFd, StuckMicroseconds);
    }

    /// <summary>
    /// A kept call is over as far as stalls go: called just before its answer, not after. With SYNC_WAKE_UP the answer
    /// runs the program on this CPU at once; a holder still marked busy while the program runs its next request lost
    /// the role to the deputy after a millisecond (every few calls under load: threads alternated, each cache-cold).
    /// </summary>
    private void EndKept(Worker worker)
    {
        if (!worker.Kept) return;
        worker.Kept = false;
        worker.HeldAfter = EndBusy(worker);
    }

    /// <summary>True when this thread still holds the role after its call (the deputy may have taken it meanwhile).</summary>
    private bool EndBusy(Worker worker)
    {
        lock (_roleLock)
        {
            if (_receiver != worker) return false;
            _receiverBusy = false;
            return true;
        }
    }

    /// <summary>Another call waits: the role goes to a waiting thread, the deputy, or a new thread (or, at the limit, to the first one back).</summary>
    private void HandOver(Worker worker)
    {
        lock (_roleLock)
        {
            if (_receiver != worker) return;
            _receiver = null;
            _receiverBusy = false;
            if (_idleFollowers > 0) Monitor.Pulse(_roleLock);
            else if (_deputy is not null) SignalDeputy();
            else StartWorker();
        }
    }

    /// <summary>No deputy watches the holder: wake a waiting thread to become it, or start one. Under _roleLock.</summary>
    private void CallForDeputy()
    {
        if (_idleFollowers > 0) Monitor.Pulse(_roleLock);
        else StartWorker();
    }

    private void SignalDeputy()
    {
        ulong one = 1;
        write(_deputyFd, &one, 8);
    }

    /// <summary>After a fault: whatever role this thread had goes to the others.</summary>
    private void LeaveRoles(Worker worker)
    {
        lock (_roleLock)
        {
            if (_deputy == worker) _deputy = null;
            if (_receiver != worker) return;
            _receiver = null;
            _receiverBusy = false;
            if (_idleFollowers > 0) Monitor.Pulse(_roleLock);
            else if (_deputy is not null) SignalDeputy();
        }
    }

    /// <summary>True when a listener has a notification waiting now (not counting the one just received).</summary>
    private bool AnotherPending()
    {
        if (!_again.IsEmpty) return true;
        var snapshot = Volatile.Read(ref _attached);
        int count = snapshot.Length;
        if (count <= PollListenerLimit)
        {
            var pfds = stackalloc pollfd[count];
            for (int i = 0; i < count; i++) pfds[i] = new pollfd { fd = snapshot[i].Listener.RawFd, events = PollIn };
            if (poll(pfds, (ulong_t)(ulong)count, 0) <= 0) return false;
            for (int i = 0; i < count; i++)
                if ((pfds[i].revents & PollIn) != 0) return true;
            return false;
        }
        const int MaxEvents = 4;
        var events = stackalloc epoll_event[MaxEvents];
        int n = epoll_wait(_epollFd, events, MaxEvents, 0);
        for (int i = 0; i < n; i++)
            if (events[i].data.u64 != 0 && (events[i].events & EPOLLIN) != 0) return true;
        return false;
    }

    /// <summary>Waits for the next notification of any attached listener; null when woken for a change.</summary>
    private ListenerAttachment? ReceiveNext(out SyscallRequest request)
    {
        request = default;
        if (_again.TryDequeue(out var again))
        {
            // Answered meanwhile (its thread was interrupted, or killed): not valid any more, nothing to do.
            if (!again.Attachment.IsAttached || !again.Attachment.Listener.IsValid(again.Request.Id)) return null;
            Log.HandlingAgain(again.Request.Pid, Syscalls.Name(again.Request.Nr));
            request = again.Request;
            return again.Attachment;
        }
        var snapshot = Volatile.Read(ref _attached);
        if (snapshot.Length <= PollListenerLimit) return ReceiveByPoll(snapshot, out request);
        return ReceiveByEpoll(out request);
    }

    private ListenerAttachment? ReceiveByPoll(ListenerAttachment[] snapshot, out SyscallRequest request)
    {
        request = default;
        int count = snapshot.Length;
        var pfds = stackalloc pollfd[count + 1];
        pfds[0] = new pollfd { fd = _wakeFd, events = PollIn };
        for (int i = 0; i < count; i++) pfds[i + 1] = new pollfd { fd = snapshot[i].Listener.RawFd, events = PollIn };
        int n = poll(pfds, (ulong_t)(ulong)(count + 1), -1);
        if (n < 0) return null; // EINTR
        if ((pfds[0].revents & PollIn) != 0) { DrainWake(); return null; }
        int start = _rotation++;
        for (int k = 0; k < count; k++)
        {
            int i = (int)((uint)(start + k) % (uint)count);
            var attachment = snapshot[i];
            short revents = pfds[i + 1].revents;
            if (revents == 0 || !attachment.IsAttached) continue;
            if (TryTake(attachment, revents, out request)) return attachment;
        }
        return null;
    }

    private ListenerAttachment? ReceiveByEpoll(out SyscallRequest request)
    {
        request = default;
        const int MaxEvents = 16;
        var events = stackalloc epoll_event[MaxEvents];
        int n = epoll_wait(_epollFd, events, MaxEvents, -1);
        for (int i = 0; i < n; i++)
        {
            int id = (int)events[i].data.u64;
            if (id == 0) { DrainWake(); return null; }
            ListenerAttachment? attachment;
            lock (_attachLock) _byId.TryGetValue(id, out attachment);
            if (attachment is null || !attachment.IsAttached) continue;
            short revents = (short)(((events[i].events & EPOLLIN) != 0 ? PollIn : 0) |
                                    ((events[i].events & (EPOLLHUP | EPOLLERR)) != 0 ? 0x10 : 0));
            // Level-triggered: whatever is not taken now is reported again to the next receiver.
            if (TryTake(attachment, revents, out request)) return attachment;
        }
        return null;
    }

    /// <summary>Receives from a ready listener, or detaches it when its targets are gone or it fails.</summary>
    private bool TryTake(ListenerAttachment attachment, short revents, out SyscallRequest request)
    {
        request = default;
        if ((revents & PollIn) != 0)
        {
            try
            {
                // Not blocking: only the gate holder receives, and each pending notification counts once.
                return attachment.Listener.TryReceive(out request);
            }
            catch (Exception e)
            {
                Log.ListenerFault(e, attachment.Target.Pid);
                // Our fault, not the targets': their socket files stay.
                Detach(attachment, $"its listener failed: {e.Message}", Errors.EIO, keepFiles: true);
                return false;
            }
        }
        if ((revents & PollHangUp) != 0) Detach(attachment, "no task uses its filter any more", 0); // 5.9+
        return false;
    }

    private void DrainWake()
    {
        ulong value;
        read(_wakeFd, &value, 8);
        // Everyone waiting must see a stop, so it is signalled again for the next gate holder.
        if (_stopping) Wake();
    }

    /// <summary>Calls handled by notification threads, and the managed bytes those threads allocated handling them.</summary>
    internal (long Calls, long Bytes) HandlingAllocations
    {
        get
        {
            lock (_roleLock) return (_workers.Sum(w => Volatile.Read(ref w.HandledCalls)), _workers.Sum(w => Volatile.Read(ref w.HandlingAllocated)));
        }
    }

    private void Handle(Worker worker, ListenerAttachment attachment, in SyscallRequest request)
    {
        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        try { HandleCall(worker, attachment, request); }
        finally
        {
            // Each thread counts its own (no shared cache line written per call); readers add them up.
            Volatile.Write(ref worker.HandledCalls, worker.HandledCalls + 1);
            Volatile.Write(ref worker.HandlingAllocated, worker.HandlingAllocated + GC.GetAllocatedBytesForCurrentThread() - allocatedBefore);
        }
    }

    private void HandleCall(Worker worker, ListenerAttachment attachment, in SyscallRequest request)
    {
        long start = Stopwatch.GetTimestamp();
        var handler = worker.Handler ??= new Redirector(this);
        Outcome outcome;
        if (CopyCloser.Refusal(attachment) is { } refused)
        {
            // Its programs hold our closes: serving it on would pile up our fds. It alone is let go.
            attachment.Listener.Fail(request.Id, Errors.EIO);
            Log.CallRefused(request.Pid, Syscalls.Name(request.Nr), $"{refused}; its listener is detached", Errors.Name(Errors.EIO));
            _journal?.Clear(worker.Slot);
            Detach(attachment, refused, Errors.EIO);
            return;
        }
        var journal = _journal;
        try
        {
            handler.Enter(attachment);
            outcome = handler.Handle(request);
        }
        catch (Exception e)
        {
            // A bug of ours must cost the target one call, never the supervisor.
            Log.InternalError(e, request.Pid, Syscalls.Name(request.Nr));
            outcome = Outcome.Fail(Errors.EIO);
        }
        EndKept(worker);
        Send(attachment, request, outcome, start);
        // Answered, or parked (the poller's slot has it now).
        journal?.Clear(worker.Slot);
        handler.AfterAnswer();
    }

    /// <summary>Tells the kernel <paramref name="outcome"/>, closes what it says to close, and counts it.</summary>
    internal void Send(ListenerAttachment attachment, in SyscallRequest r, Outcome outcome, long startTimestamp)
    {
        var listener = attachment.Listener;
        string? counted = null;
        switch (outcome.Kind)
        {
            case OutcomeKind.Continue:
                listener.Continue(r.Id);
                counted = Outcomes.Passed;
                break;
            case OutcomeKind.Fail:
                listener.Fail(r.Id, outcome.Errno);
                counted = Outcomes.Failed;
                if (outcome.Errno != Errors.ERESTARTSYS) Metrics.Error(outcome.Errno, attachment.Target.PolicyName);
                break;
            case OutcomeKind.Succeed:
                // Marked before the answer: with SYNC_WAKE_UP the program runs, and may make its next call on this
                // socket, before our ioctl returns. If the answer does not arrive, its restart is ours to finish.
                if (outcome.Swapped is { } s) s.Answered = true;
                if (listener.Succeed(r.Id, outcome.Value) != 0 && outcome.Swapped is { } unanswered) unanswered.Answered = false;
                counted = outcome.Swapped is { } swapped && outcome.CloseAfterAnswer1 >= 0 ? Outcomes.Redirected : Outcomes.Emulated;
                if (counted == Outcomes.Redirected) Metrics.Redirected(DestinationKind(outcome.Swapped!.Family), attachment.Target.PolicyName);
                break;
            case OutcomeKind.Answered:
                counted = Outcomes.Emulated;
                break;
            case OutcomeKind.Parked:
                break; // counted when the poller answers it
        }
        // Our copies: the program may have closed its fds meanwhile, making a close of ours the last (see CopyCloser).
        CopyCloser.Close(attachment, outcome.CloseAfterAnswer1, outcome.CloseAfterAnswer2);
        if (counted is null) return;
        attachment.Counters.Count(counted);
        Metrics.Answered(Syscalls.Name(r.Nr), counted, attachment.Target.PolicyName, startTimestamp);
    }

    private static string DestinationKind(int family) => family switch
    {
        global::Interop.Socket.AfUnix => "unix",
        global::Interop.Socket.AfVsock => "vsock",
        30 => "tipc",
        _ => "other",
    };

    private long SocketFileCount()
    {
        long n = 0;
        foreach (var a in Volatile.Read(ref _attached)) n += a.Registry.FileCount;
        return n + _sweeper.OrphanCount;
    }

    /// <summary>
    /// Stops receiving. Waiting calls fail with EINTR (programs retry it); attached listeners are detached
    /// (their targets' trapped calls then fail with ENOSYS) and their socket files dealt with.
    /// </summary>
    public void Stop()
    {
        if (!StopReceiving()) return;
        foreach (var a in Attachments) Detach(a, "the engine stopped", Errors.EINTR);
        Poller.Stop(Errors.EINTR);
        _sweeper.Stop();
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.Run(Stop, cancellationToken);

    /// <summary>Ends every notification thread, each after the call in hand; false when stopping already.</summary>
    private bool StopReceiving()
    {
        lock (_attachLock)
        {
            if (_stopping) return false;
            _stopping = true;
        }
        Wake();
        List<Worker> workers;
        lock (_roleLock)
        {
            _noMoreWorkers = true;
            Monitor.PulseAll(_roleLock);
            workers = _workers.ToList();
        }
        SignalDeputy();
        foreach (var w in workers) w.Thread!.Join();
        return true;
    }

    /// <summary>
    /// Stops receiving and lets go of every attachment for a successor that gets the listeners (from systemd's fd
    /// store): the calls in hand are finished, waiting calls stay unanswered in the <see cref="CallJournal"/> for the
    /// successor to handle, socket files stay. Returns once every attachment is done with; then
    /// <see cref="ListenerAttachment.ExportState"/> tells what the successor needs.
    /// </summary>
    public void Handover(TimeSpan timeout)
    {
        if (!StopReceiving()) return;
        var all = Attachments.ToList();
        foreach (var a in all)
        {
            a.HandingOver = true;
            Detach(a, "handed over to the next supervisor", parkedErrno: 0, keepFiles: true);
        }
        Task.WaitAll(all.Select(a => a.Completion).ToArray(), timeout);
        Poller.Stop(0);
        _sweeper.Stop();
    }

    public void Dispose()
    {
        Stop();
        foreach (var w in _workers) w.Handler?.Dispose();
        Poller.Dispose();
        Metrics.Dispose();
        close(_wakeFd);
        close(_epollFd);
        close(_watchFd);
        close(_deputyFd);
    }
}
