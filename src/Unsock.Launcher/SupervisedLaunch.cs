using Unsock.Core.Filter;
using Unsock.Core.Supervision;

namespace Unsock.Launcher;

/// <summary>
/// The launcher in front of the supervisor service: asks it for the filter of a policy, installs that filter
/// on one dedicated thread, hands the listener over, and once the supervisor has it, execs the command from
/// that thread. The program keeps our pid, environment, fds, stdio and exit status; no process of ours stays.
/// The connection to the supervisor is made before the filter exists, so no call of ours waits on it.
/// </summary>
internal static class SupervisedLaunch
{
    private static readonly TimeSpan ReplyTimeout = TimeSpan.FromSeconds(15);

    public static int Run(ControlChannel channel, ControlRequest register, string path, IReadOnlyList<string> argv, SignalRelay signals)
    {
        using var prepared = new Spawn.Prepared(path, argv, SignalRelay.Inherited, signals.IgnoredAtStart);
        // Not disposed: on a refusal the thread may still be on its way into Wait when we return.
        var filterKnown = new ManualResetEventSlim();
        using var installed = new ManualResetEventSlim();
        using var go = new ManualResetEventSlim();
        SeccompProgram? program = null;
        int listenerFd = -1, execError = 0;
        bool attached = false;
        string? filterError = null;
        // Started while the supervisor compiles the filter, so that the thread's start costs no time of its own.
        var execThread = new Thread(() =>
        {
            filterKnown.Wait();
            if (Volatile.Read(ref program) is not { } filter) return; // refused: nothing to install
            try
            {
                listenerFd = SeccompFilter.InstallWithListener(filter, waitKillableRecv: true);
            }
            catch (SeccompException e)
            {
                filterError = e.Message;
                return;
            }
            finally
            {
                installed.Set();
            }
            // From here this thread makes no call the filter could trap until it execs: it only waits.
            go.Wait();
            if (!Volatile.Read(ref attached)) return;
            Spawn.Close(listenerFd);
            execError = prepared.Exec(SignalRelay.Inherited, signals.IgnoredAtStart);
        }) { Name = "unsock-exec" };

        try
        {
            channel.Send(register);
            execThread.Start();
            ControlReply reply = channel.ReceiveReply(ReplyTimeout);
            if (!reply.Ok) return Refused(channel, reply);
            Volatile.Write(ref program, new SeccompProgram(Convert.FromBase64String(reply.Filter ?? "")));
        }
        catch (ControlChannelException e)
        {
            return Program.Fail(Program.ExitLauncherFailure, e.Message);
        }
        catch (Exception e) when (e is FormatException or ArgumentException)
        {
            return Program.Fail(Program.ExitLauncherFailure, $"the supervisor at {channel.Peer} sent a filter that is not a seccomp program: {e.Message}");
        }
        finally
        {
            // Without a program the thread ends at once; the process ends with our status below.
            filterKnown.Set();
        }

        installed.Wait();
        if (filterError is not null)
        {
            execThread.Join();
            return Program.Fail(Program.ExitLauncherFailure, filterError);
        }

        try
        {
            ControlReply reply = Ask(channel, new ControlRequest { Kind = ControlProtocol.Attach }, listenerFd);
            if (!reply.Ok) return Refused(channel, reply);
            Volatile.Write(ref attached, true);
        }
        catch (ControlChannelException e)
        {
            return Program.Fail(Program.ExitLauncherFailure, e.Message);
        }
        finally
        {
            // Not attached: the thread closes nothing and ends; the process ends with our status below.
            go.Set();
        }
        execThread.Join();
        // Only an exec that failed comes back (the file changed since we resolved it).
        return Program.Fail(execError == 2 ? Program.ExitNotFound : Program.ExitNotExecutable,
            $"{path}: {System.Runtime.InteropServices.Marshal.GetPInvokeErrorMessage(execError)}");
    }

    private static ControlReply Ask(ControlChannel channel, ControlRequest request, int passFd = -1)
    {
        channel.Send(request, passFd);
        return channel.ReceiveReply(ReplyTimeout);
    }

    private static int Refused(ControlChannel channel, ControlReply reply) =>
        Program.Fail(Program.ExitLauncherFailure, $"the supervisor at {channel.Peer} refused: {reply.Error ?? "no reason given"}");
}
