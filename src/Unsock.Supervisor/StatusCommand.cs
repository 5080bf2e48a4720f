using Unsock.Core.Supervision;

namespace Unsock.Supervisor;

/// <summary><c>unsock-supervisor status [--json] [--socket PATH]</c>: asks a running supervisor for its targets.</summary>
internal static class StatusCommand
{
    public const string Usage = "usage: unsock-supervisor status [--json] [--socket PATH]";

    public static int Run(string[] args)
    {
        bool json = false;
        string socket = Environment.GetEnvironmentVariable(ControlProtocol.SocketVariable) is { Length: > 0 } v ? v : ControlProtocol.DefaultSocketPath;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--json": json = true; break;
                case "--socket" when i + 1 < args.Length: socket = args[++i]; break;
                case "-h" or "--help": Console.Out.WriteLine(Usage); return 0;
                default:
                    Console.Error.WriteLine($"unsock-supervisor: status: unknown argument \"{args[i]}\"\n{Usage}");
                    return 2;
            }
        }
        try
        {
            using var channel = ControlChannel.Connect(socket);
            channel.Send(new ControlRequest { Kind = ControlProtocol.Status });
            var reply = channel.ReceiveReply(TimeSpan.FromSeconds(10));
            if (!reply.Ok)
            {
                Console.Error.WriteLine($"unsock-supervisor: the supervisor at {socket} refused: {reply.Error}");
                return 1;
            }
            var targets = reply.Targets ?? [];
            Console.Out.Write(json ? StatusTable.ToJson(targets) : StatusTable.Format(targets));
            return 0;
        }
        catch (ControlChannelException e)
        {
            Console.Error.WriteLine($"unsock-supervisor: {e.Message}");
            return 1;
        }
    }
}
