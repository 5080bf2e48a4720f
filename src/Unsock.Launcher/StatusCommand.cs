using Unsock.Core.Supervision;

namespace Unsock.Launcher;

/// <summary>
/// <c>unsock-launch status [--json] [--supervisor PATH]</c>: asks the supervisor service which targets it
/// serves and prints them as <c>unsock-supervisor status</c> does. The supervisor is chosen as for a launch
/// (--supervisor, else $UNSOCK_SUPERVISOR, else the default socket); there is no embedded mode to fall back
/// to, so a supervisor that does not answer is an error (exit 125).
/// </summary>
internal static class StatusCommand
{
    private static readonly TimeSpan ReplyTimeout = TimeSpan.FromSeconds(15);

    public static int Run(CommandLine cl, IReadOnlyDictionary<string, string> env, TextWriter output)
    {
        if (cl.Embedded) return Program.Fail(Program.ExitUsage, $"status asks a supervisor service; --embedded has none\n{CommandLine.Usage}");
        if (cl.PolicyPath is not null || cl.PrintPolicy || cl.Verbose)
            return Program.Fail(Program.ExitUsage, $"status takes only --json and --supervisor PATH\n{CommandLine.Usage}");
        string socket = cl.SupervisorPath
            ?? (env.GetValueOrDefault(ControlProtocol.SocketVariable) is { Length: > 0 } v ? v : ControlProtocol.DefaultSocketPath);
        try
        {
            using var channel = ControlChannel.Connect(socket);
            channel.Send(new ControlRequest { Kind = ControlProtocol.Status });
            var reply = channel.ReceiveReply(ReplyTimeout);
            if (!reply.Ok)
                return Program.Fail(Program.ExitLauncherFailure, $"the supervisor at {socket} refused: {reply.Error ?? "no reason given"}");
            var targets = reply.Targets ?? [];
            output.Write(cl.Json ? StatusTable.ToJson(targets) : StatusTable.Format(targets));
            return 0;
        }
        catch (ControlChannelException e)
        {
            string where = cl.SupervisorPath is not null ? "--supervisor"
                : env.ContainsKey(ControlProtocol.SocketVariable) ? "$" + ControlProtocol.SocketVariable : "the default socket";
            return Program.Fail(Program.ExitLauncherFailure, $"status: no supervisor answered ({where}): {e.Message}");
        }
    }
}
