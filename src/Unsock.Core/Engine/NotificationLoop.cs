using Unsock.Core.Filter;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace Unsock.Core.Engine;

/// <summary>
/// Receives and answers the notifications of one seccomp listener until no task uses the filter any more
/// (POLLHUP, kernel 5.9). Several threads serve it, one receiving at a time (leader/followers): a swap
/// waits for the target to take the new fd (ADDFD), and other programs' calls must not queue behind
/// that. The thread that receives also answers, which is what SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP rewards.
/// </summary>
internal sealed unsafe class NotificationLoop(SeccompListener listener, Redirector[] redirectors, SocketRegistry registry, EngineLog log)
{
    private const int SweepIntervalMs = 1000;
    private const short PollIn = 0x1, PollHangUp = 0x8 | 0x10 | 0x20; // POLLERR | POLLHUP | POLLNVAL
    private readonly object _receiveGate = new();
    private readonly object _sweepSignal = new();
    private volatile bool _done;

    public void Run()
    {
        // poll, not epoll: SYNC_WAKE_UP's "wake on this CPU" reaches a poll waiter, but epoll's own
        // wake-up of epoll_wait drops it.
        if (!listener.TrySetSyncWakeUp()) log.Message("kernel without SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (6.6): answers take a scheduler round trip");
        var threads = new List<Thread>();
        // Sweeping reads /proc/net/unix and asks sock_diag: its own thread, so that receiving never waits for it.
        var sweeper = new Thread(Sweep, 256 * 1024) { IsBackground = true, Name = "unsock-sweep" };
        sweeper.Start();
        for (int i = 1; i < redirectors.Length; i++)
        {
            var redirector = redirectors[i];
            var t = new Thread(() => Serve(redirector), 256 * 1024) { IsBackground = true, Name = $"unsock-notify-{i}" };
            t.Start();
            threads.Add(t);
        }
        try
        {
            Serve(redirectors[0]);
            foreach (var t in threads) t.Join();
        }
        finally
        {
            lock (_sweepSignal)
            {
                _done = true;
                Monitor.Pulse(_sweepSignal);
            }
            sweeper.Join();
            foreach (var path in registry.Sweep(everythingGone: true)) log.Message($"removed {path}: no target is left");
        }
    }

    private void Sweep()
    {
        while (true)
        {
            lock (_sweepSignal)
            {
                if (_done) return;
                Monitor.Wait(_sweepSignal, SweepIntervalMs);
                if (_done) return;
            }
            if (registry.IsEmpty) continue;
            try
            {
                foreach (var path in registry.Sweep(everythingGone: false)) log.Message($"removed {path}: its socket is closed");
            }
            catch (Exception e)
            {
                log.Message($"sweep failed, will try again: {e.Message}");
            }
        }
    }

    private void Serve(Redirector redirector)
    {
        while (true)
        {
            SyscallRequest request;
            lock (_receiveGate)
            {
                if (_done || !TryReceive(out request)) return;
            }
            if (request.Id != 0) Answer(redirector, request);
        }
    }

    /// <summary>Waits for the next notification (Id 0 when it vanished before we got it); false when no target is left.</summary>
    private bool TryReceive(out SyscallRequest request)
    {
        request = default;
        var pfd = new pollfd { fd = listener.Fd, events = PollIn };
        while (true)
        {
            int n = poll(&pfd, 1, -1);
            if (n < 0 && errno != Errors.EINTR) throw new global::Interop.ErrnoException(errno, "poll");
            if (n > 0 && (pfd.revents & PollIn) != 0)
            {
                // Not blocking: each pending notification counts once, and only the gate holder receives.
                listener.TryReceive(out request);
                return true;
            }
            if (n > 0 && (pfd.revents & PollHangUp) != 0)
            {
                _done = true; // no task uses the filter any more
                return false;
            }
        }
    }

    private void Answer(Redirector redirector, in SyscallRequest request)
    {
        Outcome outcome;
        try
        {
            outcome = redirector.Handle(request);
        }
        catch (Exception e)
        {
            // A bug of ours must cost the target one call, never the supervisor.
            log.Message($"pid {request.Pid} {Syscalls.Name(request.Nr)}: internal error, answered EIO: {e}");
            outcome = Outcome.Fail(Errors.EIO);
        }
        Send(listener, request, outcome);
        redirector.AfterAnswer();
    }

    internal static void Send(SeccompListener listener, in SyscallRequest r, Outcome outcome)
    {
        switch (outcome.Kind)
        {
            case OutcomeKind.Continue:
                listener.Continue(r.Id);
                break;
            case OutcomeKind.Fail:
                listener.Fail(r.Id, outcome.Errno);
                break;
            case OutcomeKind.Succeed:
                // If the target was interrupted after the swap, the entry stays unanswered and its restart is ours.
                if (listener.Succeed(r.Id, outcome.Value) == 0 && outcome.Swapped is { } s) s.Answered = true;
                break;
        }
        if (outcome.CloseAfterAnswer1 >= 0) global::Interop.Socket.Close(outcome.CloseAfterAnswer1);
        if (outcome.CloseAfterAnswer2 >= 0) global::Interop.Socket.Close(outcome.CloseAfterAnswer2);
    }
}
