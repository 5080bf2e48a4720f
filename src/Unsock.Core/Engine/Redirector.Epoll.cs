using static Tmds.Linux.LibC;
using Sock = global::Interop.Socket;

namespace Unsock.Core.Engine;

internal sealed partial class Redirector
{
    /// <summary>
    /// After a swap, before the answer: epoll sets that watched the old socket must watch the new one (see
    /// <see cref="EpollTransfer"/>). Returns <paramref name="swapped"/> (through <paramref name="finish"/>) when
    /// nothing needs moving; otherwise the call is parked until a mover is done with it, so that this thread
    /// never waits for a program's epoll set.
    /// </summary>
    private Outcome AnswerAfterEpollMove(in SyscallRequest r, int targetFd, int oldCopy, int replacement, Outcome swapped,
        Func<Outcome, Outcome>? finish)
    {
        var job = EpollTransfer.Start(EpollTransfer.For(_attachment), r.Pid, targetFd, oldCopy, replacement,
            _target.OpenFdCount(r.Pid), out string? note);
        if (note is not null && _log.Enabled) _log.Decision(r.Pid, "epoll", $"fd {targetFd}", note);
        if (job is null) return finish is null ? swapped : finish(swapped);
        var options = _engine.Options;
        var wait = new EpollMoveWait(_attachment, r, job, swapped, finish);
        if (_engine.Poller.TryPark(wait, options.MaxParkedCallsPerListener, options.MaxParkedCalls)) return Outcome.Parked;
        // No room to wait: answered now, the registrations left where they are.
        EpollTransfer.Leave(job, outOfTime: false);
        Sock.Close(job.WakeFd);
        _log.Decision(r.Pid, "epoll", $"fd {targetFd}", "not moved: too many calls wait already");
        return finish is null ? swapped : finish(swapped);
    }

    /// <summary>A swapped call waiting for its epoll registrations to be moved; answered when they are, or when its time is up.</summary>
    private sealed class EpollMoveWait : ParkedCall
    {
        private readonly EpollTransfer.Job _job;
        private readonly Outcome _swapped;
        private readonly Func<Outcome, Outcome>? _finish;
        private bool _answered;

        public EpollMoveWait(ListenerAttachment attachment, SyscallRequest request, EpollTransfer.Job job, Outcome swapped, Func<Outcome, Outcome>? finish)
            : base(attachment, request)
        {
            _job = job;
            _swapped = swapped;
            _finish = finish;
            WaitFd = job.WakeFd;
            WaitEvents = EPOLLIN;
            Deadline = Environment.TickCount64 + EpollTransfer.MoveTimeoutMs;
        }

        public override bool Resume(Redirector handler)
        {
            if (!EpollTransfer.IsOver(_job, out var report)) return false;
            foreach (var line in report) handler._log.Decision(Request.Pid, "epoll", $"fd {_job.Fd}", line);
            AnswerSwap(handler);
            return true;
        }

        public override void TimedOut(Redirector handler)
        {
            // Over at the last moment (its wake-up not yet seen): what it did is logged all the same.
            if (EpollTransfer.IsOver(_job, out var report))
                foreach (var done in report) handler._log.Decision(Request.Pid, "epoll", $"fd {_job.Fd}", done);
            else if (EpollTransfer.Leave(_job, outOfTime: true) is { } line) handler._log.Decision(Request.Pid, "epoll", $"fd {_job.Fd}", line);
            AnswerSwap(handler);
        }

        private void AnswerSwap(Redirector handler)
        {
            _answered = true;
            var outcome = _finish is null ? _swapped : _finish(_swapped);
            // The old socket is ours to close, or to keep while the program holds the set it is still registered in.
            EpollTransfer.CloseOrKeep(Attachment, _job, outcome.CloseAfterAnswer2);
            handler.Answer(this, outcome with { CloseAfterAnswer2 = -1 });
        }

        public override void Release()
        {
            if (!_answered)
            {
                // Interrupted or gone: no mover may copy our fds once they are closed (their numbers get reused).
                EpollTransfer.Leave(_job, outOfTime: false);
                CopyCloser.Close(Attachment, _swapped.CloseAfterAnswer1);
                EpollTransfer.CloseOrKeep(Attachment, _job, _swapped.CloseAfterAnswer2);
            }
            Sock.Close(_job.WakeFd);
        }
    }
}
