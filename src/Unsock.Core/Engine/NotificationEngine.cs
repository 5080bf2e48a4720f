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
/// The engine: one per process, serving any number of attached seccomp listeners with a fixed set of
/// notification threads, one poller for calls that wait, and one socket-file sweeper. The threads take
/// turns receiving (one at a time, leader/followers): the one that receives also answers, which is what
/// SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP rewards, and a swap waiting in ADDFD for its target does not hold up
/// other programs' calls.
/// </summary>
public sealed unsafe partial class NotificationEngine : IDisposable
{
    // poll, not epoll, for a few listeners: SYNC_WAKE_UP's "wake on this CPU" reaches a poll waiter, but
    // epoll's own wake-up of epoll_wait drops it. Beyond this many, poll's cost per call grows too much.
    private const int PollListenerLimit = 8;
    private const short PollIn = 0x1, PollHangUp = 0x8 | 0x10 | 0x20; // POLLERR | POLLHUP | POLLNVAL

    private readonly EngineOptions _options;
    private readonly object _receiveGate = new();
    private readonly object _attachLock = new();
    private readonly Dictionary<int, ListenerAttachment> _byId = new();
    private ListenerAttachment[] _attached = [];
    private readonly int _wakeFd, _epollFd;
    private readonly Redirector[] _handlers;
    private readonly List<Thread> _threads = new();
    private readonly SocketSweeper _sweeper;
    private int _nextId, _rotation;
    private volatile bool _stopping;
    private bool _started;

    internal EngineLog Log { get; }
    internal CallPoller Poller { get; }
    public EngineMetrics Metrics { get; }
    internal EngineOptions Options => _options;

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
        _handlers = new Redirector[_options.EffectiveNotificationThreads];
        for (int i = 0; i < _handlers.Length; i++) _handlers[i] = new Redirector(this);
        Poller = new CallPoller(this, new Redirector(this));
        _sweeper = new SocketSweeper(this);
    }

    /// <summary>The listeners attached now.</summary>
    public IReadOnlyList<ListenerAttachment> Attachments => Volatile.Read(ref _attached);

    /// <summary>Starts the threads. Raises the soft fd limit to the hard one first, as systemd does for services.</summary>
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
        for (int i = 0; i < _handlers.Length; i++)
        {
            var handler = _handlers[i];
            string name = $"unsock-notify-{i}";
            var t = new Thread(() => Serve(handler, name), 256 * 1024) { IsBackground = true, Name = name };
            t.Start();
            _threads.Add(t);
        }
    }

    /// <summary>Serves <paramref name="listenerFd"/> (taken over: the engine closes it) for targets under <paramref name="policy"/>.</summary>
    public ListenerAttachment Attach(int listenerFd, Policy policy, TargetContext target)
    {
        var listener = new SeccompListener(listenerFd);
        if (!listener.TrySetSyncWakeUp()) Log.NoSyncWakeUp();
        ListenerAttachment attachment;
        lock (_attachLock)
        {
            if (_stopping) { listener.Dispose(); throw new InvalidOperationException("the engine is stopping"); }
            attachment = new ListenerAttachment(++_nextId, listener, policy, target);
            _byId[attachment.Id] = attachment;
            var ev = new epoll_event { events = EPOLLIN };
            ev.data.u64 = (ulong)attachment.Id;
            epoll_ctl(_epollFd, EPOLL_CTL_ADD, listener.RawFd, &ev);
            Volatile.Write(ref _attached, [.. _attached, attachment]);
        }
        Wake();
        Log.Attached(target.Pid, _attached.Length);
        return attachment;
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

    private void Serve(Redirector handler, string name)
    {
        while (!_stopping)
        {
            try
            {
                ListenerAttachment? attachment;
                SyscallRequest request;
                lock (_receiveGate)
                {
                    if (_stopping) return;
                    attachment = ReceiveNext(out request);
                }
                if (attachment is not null) Handle(handler, attachment, request);
            }
            catch (Exception e)
            {
                // A thread's loop never dies: a bug of ours costs at most the call in hand.
                Log.ThreadFault(e, name);
                Thread.Sleep(10);
            }
        }
    }

    /// <summary>Waits for the next notification of any attached listener; null when woken for a change.</summary>
    private ListenerAttachment? ReceiveNext(out SyscallRequest request)
    {
        request = default;
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

    private void Handle(Redirector handler, ListenerAttachment attachment, in SyscallRequest request)
    {
        long start = Stopwatch.GetTimestamp();
        Outcome outcome;
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
        Send(attachment, request, outcome, start);
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
        if (outcome.CloseAfterAnswer1 >= 0) global::Interop.Socket.Close(outcome.CloseAfterAnswer1);
        if (outcome.CloseAfterAnswer2 >= 0) global::Interop.Socket.Close(outcome.CloseAfterAnswer2);
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
        lock (_attachLock)
        {
            if (_stopping) return;
            _stopping = true;
        }
        Wake();
        foreach (var t in _threads) t.Join();
        foreach (var a in Attachments) Detach(a, "the engine stopped", Errors.EINTR);
        Poller.Stop(Errors.EINTR);
        _sweeper.Stop();
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.Run(Stop, cancellationToken);

    public void Dispose()
    {
        Stop();
        foreach (var h in _handlers) h.Dispose();
        Poller.Dispose();
        Metrics.Dispose();
        close(_wakeFd);
        close(_epollFd);
    }
}
