namespace Unsock.Core.Engine;

internal sealed partial class Redirector
{
    /// <summary>After a swap, before the answer: epoll sets that watched the old socket watch the new one (see <see cref="EpollTransfer"/>).</summary>
    private void MoveEpollRegistrations(in SyscallRequest r, int targetFd, int oldCopy, int replacement)
    {
        var report = EpollTransfer.AfterSwap(r.Pid, targetFd, oldCopy, replacement);
        foreach (var line in report) _log.Decision(r.Pid, "epoll", $"fd {targetFd}", line);
    }
}
