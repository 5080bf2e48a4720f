using Unsock.Core.Filter;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace Unsock.Core.Engine;

/// <summary>
/// Receives and answers the notifications of one seccomp listener on the calling thread, until no task
/// uses the filter any more (EPOLLHUP, kernel 5.9). The thread that receives also answers, which is what
/// SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP rewards.
/// </summary>
internal sealed unsafe class NotificationLoop(SeccompListener listener, Redirector redirector, SocketRegistry registry, EngineLog log)
{
    private const int SweepIntervalMs = 1000;
    private const short PollIn = 0x1, PollHangUp = 0x8 | 0x10 | 0x20; // POLLERR | POLLHUP | POLLNVAL

    public void Run()
    {
        // poll, not epoll: SYNC_WAKE_UP's "wake on this CPU" reaches a poll waiter, but epoll's own
        // wake-up of epoll_wait drops it.
        if (!listener.TrySetSyncWakeUp()) log.Message("kernel without SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (6.6): answers take a scheduler round trip");
        long nextSweep = Environment.TickCount64 + SweepIntervalMs;
        var pfd = new pollfd { fd = listener.Fd, events = PollIn };
        try
        {
            while (true)
            {
                int timeout = registry.IsEmpty ? -1 : (int)Math.Max(0, nextSweep - Environment.TickCount64);
                pfd.revents = 0;
                int n = poll(&pfd, 1, timeout);
                if (n < 0)
                {
                    if (errno == Errors.EINTR) continue;
                    throw new global::Interop.ErrnoException(errno, "poll");
                }
                if (n > 0)
                {
                    if ((pfd.revents & PollIn) != 0) HandleOne();
                    else if ((pfd.revents & PollHangUp) != 0) break; // no task uses the filter any more
                }
                if (!registry.IsEmpty && Environment.TickCount64 >= nextSweep)
                {
                    foreach (var path in registry.Sweep(everythingGone: false)) log.Message($"removed {path}: its socket is closed");
                    nextSweep = Environment.TickCount64 + SweepIntervalMs;
                }
            }
        }
        finally
        {
            foreach (var path in registry.Sweep(everythingGone: true)) log.Message($"removed {path}: no target is left");
        }
    }

    private void HandleOne()
    {
        if (!listener.TryReceive(out var request)) return;
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
