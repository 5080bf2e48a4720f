using System.Diagnostics;
using Tmds.Linux;
using Unsock.Core.Filter;
using static Tmds.Linux.LibC;

namespace Unsock.Core.Engine;

/// <summary>
/// A call that waits for something (room in a backlog, a connection to accept, a proxy's reply) without a
/// thread of its own: it names the fd to wait on (or a time to retry at) and is resumed by the poller.
/// The target keeps waiting in its syscall; its own signals still interrupt the wait (see
/// <see cref="CallPoller"/>).
/// </summary>
internal abstract class ParkedCall(ListenerAttachment attachment, SyscallRequest request)
{
    public ListenerAttachment Attachment { get; } = attachment;
    public SyscallRequest Request { get; } = request;
    public long StartTimestamp { get; init; } = Stopwatch.GetTimestamp();

    /// <summary>The fd whose readiness resumes the call, or -1 to be resumed at <see cref="RetryAt"/> only.</summary>
    public int WaitFd { get; protected set; } = -1;
    public int WaitEvents { get; protected set; } = EPOLLIN;
    /// <summary>When to resume without readiness (Environment.TickCount64), e.g. to retry a connect.</summary>
    public long RetryAt { get; protected set; } = long.MaxValue;
    /// <summary>When to give up (Environment.TickCount64); <see cref="TimedOut"/> answers then.</summary>
    public long Deadline { get; protected set; } = long.MaxValue;

    internal long Key;
    internal int JournalSlot = -1;
    internal int ArmedFd = -1;
    internal bool ArmFailed;
    internal long NextSignalCheck;
    internal int SignalCheckInterval;

    /// <summary>Tries to finish on <paramref name="handler"/> (entered for this call's attachment); true once answered.</summary>
    public abstract bool Resume(Redirector handler);

    /// <summary>What a caught signal makes the call return: ERESTARTSYS restarts it (SA_RESTART) or gives EINTR.</summary>
    public virtual int InterruptErrno => Errors.ERESTARTSYS;

    /// <summary>
    /// What a caught signal makes a socket's wait return (sock_intr_errno): EINTR when the wait has a timeout
    /// (SO_SNDTIMEO/SO_RCVTIMEO, our <see cref="Deadline"/>), else ERESTARTSYS.
    /// </summary>
    protected int SocketWaitInterruptErrno => Deadline != long.MaxValue ? Errors.EINTR : Errors.ERESTARTSYS;

    private int _retryMs;

    /// <summary>
    /// Resumes the call again without readiness (nothing wakes us when it can go on): after <paramref name="firstMs"/>,
    /// then after a delay that doubles each time up to <paramref name="lastMs"/>.
    /// </summary>
    protected internal void RetryWithBackoff(int firstMs, int lastMs)
    {
        _retryMs = _retryMs == 0 ? firstMs : Math.Min(_retryMs * 2, lastMs);
        RetryAt = Environment.TickCount64 + _retryMs;
    }

    /// <summary>The deadline passed: answer as the program expects.</summary>
    public abstract void TimedOut(Redirector handler);

    /// <summary>Frees what the call holds; called exactly once, whether it was answered or abandoned.</summary>
    public abstract void Release();
}

/// <summary>
/// One thread and one epoll set for every call that waits, of every target: 10,000 waiting calls cost
/// 10,000 epoll entries, not threads. Targets wait killable-only (WAIT_KILLABLE_RECV), so a caught signal
/// does not interrupt them by itself: the poller looks for one (soon after parking, then less often) and
/// answers ERESTARTSYS, which lets the kernel deliver it and restart the call as for any interrupted wait.
/// </summary>
internal sealed unsafe class CallPoller : IDisposable
{
    private const int TickMs = 10;
    private const int FirstSignalCheckMs = 20, LastSignalCheckMs = 500;
    private readonly NotificationEngine _engine;
    private readonly Redirector _handler;
    private readonly int _epoll, _wake;
    private readonly object _gate = new();
    private readonly Dictionary<long, ParkedCall> _calls = new();
    private readonly Queue<Action> _commands = new();
    private readonly Thread _thread;
    private long _nextKey;
    private int _count;
    private volatile bool _stopping;

    public CallPoller(NotificationEngine engine, Redirector handler)
    {
        _engine = engine;
        _handler = handler;
        _epoll = epoll_create1(EPOLL_CLOEXEC);
        if (_epoll < 0) throw new global::Interop.ErrnoException(errno, "epoll_create1");
        _wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (_wake < 0) throw new global::Interop.ErrnoException(errno, "eventfd");
        var ev = new epoll_event { events = EPOLLIN };
        ev.data.u64 = 0; // key 0 is the wake-up
        epoll_ctl(_epoll, EPOLL_CTL_ADD, _wake, &ev);
        _thread = new Thread(Run, 256 * 1024) { IsBackground = true, Name = "unsock-poller" };
    }

    public int Count => Volatile.Read(ref _count);

    public void Start() => _thread.Start();

    /// <summary>Takes over <paramref name="call"/>; false (nothing taken) when the per-listener or total cap is reached.</summary>
    public bool TryPark(ParkedCall call, int perListenerLimit, int totalLimit)
    {
        if (_stopping) return false;
        if (Interlocked.Increment(ref _count) > totalLimit)
        {
            Interlocked.Decrement(ref _count);
            return false;
        }
        if (!call.Attachment.TryReserveParking(perListenerLimit))
        {
            Interlocked.Decrement(ref _count);
            return false;
        }
        call.SignalCheckInterval = FirstSignalCheckMs;
        call.NextSignalCheck = Environment.TickCount64 + FirstSignalCheckMs;
        lock (_gate)
        {
            call.Key = ++_nextKey;
            _calls[call.Key] = call;
        }
        if (_engine.Journal is { } journal)
        {
            // Before the call can be answered: from now on the poller's slot keeps it for a successor.
            call.JournalSlot = journal.Rent();
            journal.Record(call.JournalSlot, call.Attachment.Target.Key, call.Request);
        }
        Arm(call);
        if (call.WaitFd < 0) Wake(); // a timer-only call: the loop may be sleeping past its retry time
        return true;
    }

    /// <summary>Answers and drops every waiting call of <paramref name="attachment"/> (on the poller thread), then runs <paramref name="then"/>.</summary>
    public void Drop(ListenerAttachment attachment, int errno, Action then) => Enqueue(() =>
    {
        foreach (var call in CallsOf(attachment))
        {
            if (errno != 0) attachment.Listener.Fail(call.Request.Id, errno);
            Finish(call);
        }
        then();
    });

    private List<ParkedCall> CallsOf(ListenerAttachment? attachment)
    {
        lock (_gate) return _calls.Values.Where(c => attachment is null || c.Attachment == attachment).ToList();
    }

    private void Enqueue(Action command)
    {
        lock (_gate) _commands.Enqueue(command);
        Wake();
    }

    private void Wake()
    {
        ulong one = 1;
        write(_wake, &one, 8);
    }

    private void Arm(ParkedCall call)
    {
        if (call.ArmedFd >= 0 && call.ArmedFd != call.WaitFd)
        {
            epoll_ctl(_epoll, EPOLL_CTL_DEL, call.ArmedFd, null);
            call.ArmedFd = -1;
        }
        call.ArmFailed = false;
        if (call.WaitFd < 0) return;
        var ev = new epoll_event { events = call.WaitEvents | EPOLLONESHOT };
        ev.data.u64 = (ulong)call.Key;
        if (call.ArmedFd == call.WaitFd)
        {
            epoll_ctl(_epoll, EPOLL_CTL_MOD, call.WaitFd, &ev);
            return;
        }
        // Recorded first: the event can fire, and the poller re-arm the call, before epoll_ctl returns here.
        call.ArmedFd = call.WaitFd;
        call.ArmFailed = epoll_ctl(_epoll, EPOLL_CTL_ADD, call.WaitFd, &ev) != 0;
        if (call.ArmFailed) call.ArmedFd = -1; // resumed on every scan instead
    }

    private void Run()
    {
        const int MaxEvents = 64;
        var events = stackalloc epoll_event[MaxEvents];
        long nextScan = Environment.TickCount64 + TickMs;
        while (true)
        {
            int timeout = (int)Math.Clamp(nextScan - Environment.TickCount64, 0, TickMs);
            int n = epoll_wait(_epoll, events, MaxEvents, timeout);
            try
            {
                for (int i = 0; i < n; i++)
                {
                    long key = (long)events[i].data.u64;
                    if (key == 0)
                    {
                        ulong drained;
                        read(_wake, &drained, 8);
                        RunCommands();
                        if (_stopping) return;
                        continue;
                    }
                    ParkedCall? call;
                    lock (_gate) _calls.TryGetValue(key, out call);
                    if (call is not null) Step(call);
                }
                if (Environment.TickCount64 >= nextScan)
                {
                    Scan();
                    nextScan = Environment.TickCount64 + TickMs;
                }
            }
            catch (Exception e)
            {
                _engine.Log.ThreadFault(e, "unsock-poller");
            }
        }
    }

    private void RunCommands()
    {
        while (true)
        {
            Action? command;
            lock (_gate)
                if (!_commands.TryDequeue(out command)) return;
            try { command(); }
            catch (Exception e) { _engine.Log.ThreadFault(e, "unsock-poller"); }
        }
    }

    /// <summary>Deadlines, retries, and the targets' signals and liveness.</summary>
    private void Scan()
    {
        long now = Environment.TickCount64;
        List<ParkedCall>? due = null;
        lock (_gate)
            foreach (var c in _calls.Values)
                if (now >= c.Deadline || now >= c.RetryAt || now >= c.NextSignalCheck || c.ArmFailed) (due ??= new()).Add(c);
        if (due is null) return;
        foreach (var call in due)
        {
            var r = call.Request;
            var listener = call.Attachment.Listener;
            if (now >= call.NextSignalCheck)
            {
                if (!listener.IsValid(r.Id)) { Finish(call); continue; } // killed, or its listener is gone
                if (TargetProcess.HasDeliverableSignal(r.Pid))
                {
                    listener.Fail(r.Id, call.InterruptErrno);
                    Finish(call);
                    continue;
                }
                call.SignalCheckInterval = Math.Min(call.SignalCheckInterval * 2, LastSignalCheckMs);
                call.NextSignalCheck = now + call.SignalCheckInterval;
            }
            if (now >= call.Deadline)
            {
                Guarded(call, () => call.TimedOut(_handler));
                Finish(call);
            }
            else if (now >= call.RetryAt || call.ArmFailed) Step(call);
        }
    }

    private void Step(ParkedCall call)
    {
        bool done = true;
        Guarded(call, () => done = call.Resume(_handler));
        if (done) Finish(call);
        else Arm(call);
    }

    /// <summary>Runs one step of a call on the poller's handler; a bug of ours costs that call EIO, nothing else.</summary>
    private void Guarded(ParkedCall call, Action step)
    {
        _handler.Enter(call.Attachment);
        try { step(); }
        catch (Exception e)
        {
            _engine.Log.InternalError(e, call.Request.Pid, Syscalls.Name(call.Request.Nr));
            call.Attachment.Listener.Fail(call.Request.Id, Errors.EIO);
        }
    }

    private void Finish(ParkedCall call)
    {
        lock (_gate)
            if (!_calls.Remove(call.Key)) return;
        if (call.ArmedFd >= 0) epoll_ctl(_epoll, EPOLL_CTL_DEL, call.ArmedFd, null);
        call.ArmedFd = -1;
        // Handed over unanswered: the slot stays written, for the successor to handle the call again.
        if (!call.Attachment.HandingOver) _engine.Journal?.Return(call.JournalSlot);
        try { call.Release(); }
        finally
        {
            call.Attachment.ReleaseParking();
            Interlocked.Decrement(ref _count);
        }
    }

    /// <summary>Stops the thread after answering every waiting call with <paramref name="errno"/>.</summary>
    public void Stop(int errno)
    {
        if (!_thread.IsAlive) return;
        Enqueue(() =>
        {
            foreach (var call in CallsOf(null))
            {
                if (errno != 0) call.Attachment.Listener.Fail(call.Request.Id, errno);
                Finish(call);
            }
            _stopping = true;
        });
        _thread.Join();
    }

    public void Dispose()
    {
        close(_epoll);
        close(_wake);
    }
}
