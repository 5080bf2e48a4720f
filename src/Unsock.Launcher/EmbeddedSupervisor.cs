using System.Runtime.InteropServices;
using Unsock.Core.Engine;
using Unsock.Core.Filter;
using Unsock.Core.Policies;

namespace Unsock.Launcher;

/// <summary>
/// Embedded mode: this process is the supervisor and the command is its child. The filter goes onto one
/// dedicated thread (<see cref="SpawnThread"/>), which spawns the command (the child inherits that thread's filter) and ends; no
/// other thread of ours ever carries the filter, so our own socket calls are never trapped. The engine
/// starts once the command (or a descendant) makes its first trapped call.
/// </summary>
internal static class EmbeddedSupervisor
{
    public static int Run(Policy policy, SeccompProgram program, string path, IReadOnlyList<string> argv, bool verbose, SignalRelay signals,
        SpawnThread spawner)
    {
        using var prepared = new Spawn.Prepared(path, argv, SignalRelay.Inherited, signals.IgnoredAtStart);
        spawner.Spawn(program, prepared);
        int listenerFd = spawner.ListenerFd, spawnError = spawner.SpawnError, childPid = spawner.ChildPid;
        string? filterError = spawner.FilterError;

        if (filterError is not null) return Program.Fail(125, filterError);
        if (spawnError != 0)
        {
            Spawn.Close(listenerFd);
            string problem = Marshal.GetPInvokeErrorMessage(spawnError);
            return Program.Fail(spawnError == 2 ? 127 : 126, $"{path}: {problem}");
        }

        // The engine (its threads, its handler's setup) starts when the first trapped call waits, not before: a
        // command that never makes one (most of what runs under a launcher for a moment) does not pay for it.
        var target = new Target(listenerFd, policy, childPid, verbose);
        int status = signals.RelayUntilExit(childPid, listenerFd, target.Start);
        // Descendants may still use the filter (a daemonised server): serve them until the last one is gone.
        if (!target.Started && !Spawn.WaitForCallOrHangUp(listenerFd))
        {
            Spawn.Close(listenerFd);
            return status;
        }
        target.Start();
        target.Attachment!.Completion.Wait();
        target.Engine!.Dispose();
        return status;
    }

    /// <summary>The engine serving the child's listener, from its first trapped call on.</summary>
    private sealed class Target(int listenerFd, Policy policy, int childPid, bool verbose)
    {
        public NotificationEngine? Engine { get; private set; }
        public ListenerAttachment? Attachment { get; private set; }
        public bool Started => Engine is not null;

        public void Start()
        {
            if (Engine is not null) return;
            Engine = new NotificationEngine(null, new StderrLoggerFactory(verbose));
            Attachment = Engine.Attach(listenerFd, policy, new TargetContext(childPid));
            // Socket files are created by us for the target: nobody else may use them before the chmod.
            SupervisorProcess.RestrictUmask();
            Engine.Start();
        }
    }
}
