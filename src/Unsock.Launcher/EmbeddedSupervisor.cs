using System.Runtime.InteropServices;
using Unsock.Core.Engine;
using Unsock.Core.Filter;
using Unsock.Core.Policies;

namespace Unsock.Launcher;

/// <summary>
/// Embedded mode: this process is the supervisor and the command is its child. The filter goes onto one
/// dedicated thread, which spawns the command (the child inherits that thread's filter) and ends; no
/// other thread of ours ever carries the filter, so our own socket calls are never trapped.
/// </summary>
internal static class EmbeddedSupervisor
{
    public static int Run(Policy policy, SeccompProgram program, string path, IReadOnlyList<string> argv, bool verbose, SignalRelay signals)
    {
        using var prepared = new Spawn.Prepared(path, argv, SignalRelay.Inherited, signals.IgnoredAtStart);
        int childPid = 0;

        int listenerFd = -1, spawnError = 0;
        string? filterError = null;
        var spawner = new Thread(() =>
        {
            try
            {
                // Once we have received a call the target waits killable-only (WAIT_KILLABLE_RECV, 5.19): a
                // signal cannot cut a swap in half; our long waits (full backlog, accept, proxy handshake)
                // watch for the target's signals themselves.
                listenerFd = SeccompFilter.InstallWithListener(program, waitKillableRecv: true);
            }
            catch (SeccompException e)
            {
                filterError = e.Message;
                return;
            }
            signals.TakePendingBeforeChild();
            spawnError = prepared.Run(out int pid);
            Volatile.Write(ref childPid, pid);
        }) { Name = "unsock-spawn" };
        spawner.Start();
        spawner.Join();

        if (filterError is not null) return Program.Fail(125, filterError);
        var engine = new NotificationEngine(null, new StderrLoggerFactory(verbose));
        var attachment = engine.Attach(listenerFd, policy, new TargetContext(childPid));
        if (spawnError != 0)
        {
            engine.Dispose();
            string problem = Marshal.GetPInvokeErrorMessage(spawnError);
            return Program.Fail(spawnError == 2 ? 127 : 126, $"{path}: {problem}");
        }
        // Socket files are created by us for the target: nobody else may use them before the chmod.
        SupervisorProcess.RestrictUmask();
        engine.Start();

        int status = signals.RelayUntilExit(childPid);
        // Descendants may still use the filter (a daemonised server): serve them until the last one is gone.
        attachment.Completion.Wait();
        engine.Dispose();
        return status;
    }
}
