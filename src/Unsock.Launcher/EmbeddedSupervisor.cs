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
    private static readonly int[] ForwardedSignals = [1 /* HUP */, 2 /* INT */, 3 /* QUIT */, 10 /* USR1 */, 12 /* USR2 */, 15 /* TERM */, 28 /* WINCH */];

    public static int Run(Policy policy, SeccompProgram program, string path, IReadOnlyList<string> argv, bool verbose)
    {
        using var prepared = new Spawn.Prepared(path, argv);
        int childPid = 0;
        var registrations = ForwardSignals(() => Volatile.Read(ref childPid));

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

        int status = Spawn.WaitForExit(childPid);
        // Descendants may still use the filter (a daemonised server): serve them until the last one is gone.
        attachment.Completion.Wait();
        engine.Dispose();
        foreach (var r in registrations) r.Dispose();
        return status;
    }

    private static List<PosixSignalRegistration> ForwardSignals(Func<int> child)
    {
        var list = new List<PosixSignalRegistration>();
        foreach (int signo in ForwardedSignals)
        {
            var signal = signo switch
            {
                1 => PosixSignal.SIGHUP, 2 => PosixSignal.SIGINT, 3 => PosixSignal.SIGQUIT,
                15 => PosixSignal.SIGTERM, 28 => PosixSignal.SIGWINCH, _ => (PosixSignal)signo,
            };
            list.Add(PosixSignalRegistration.Create(signal, ctx =>
            {
                ctx.Cancel = true;
                int pid = child();
                if (pid > 0) Spawn.Kill(pid, signo);
            }));
        }
        return list;
    }
}
