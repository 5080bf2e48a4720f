using System.Runtime.InteropServices;
using Unsock.Core.ControlFiles;
using Unsock.Core.Engine;
using Unsock.Core.Filter;
using Unsock.Core.Policies;
using Unsock.Core.Supervision;

[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

namespace Unsock.Launcher;

internal static class Program
{
    // Exit statuses of our own, as env(1) and timeout(1) use them.
    internal const int ExitUsage = 2, ExitLauncherFailure = 125, ExitNotExecutable = 126, ExitNotFound = 127;

    /// <summary>Where named policies live (the supervisor's default, read directly in embedded mode).</summary>
    private const string PolicyDirectory = "/etc/unsock/policies";

    private static int Main(string[] args)
    {
        // First of all: a signal that arrives before the child exists must wait for it.
        using var signals = SignalRelay.Start(out string signalProblem);
        if (signals is null) return Fail(ExitLauncherFailure, signalProblem);
        if (ControlShow.IsRequested(args)) return ControlShow.Run(args, Console.Out, Console.Error);
        if (PolicyCheck.IsRequested(args)) return PolicyCheck.Run(args, EnvironmentVariables(), Console.Out, Console.Error);
        CommandLine cl;
        try
        {
            cl = CommandLine.Parse(args);
        }
        catch (UsageException e)
        {
            return Fail(ExitUsage, $"{e.Message}\n{CommandLine.Usage}");
        }
        if (cl.Help)
        {
            Console.Out.WriteLine(CommandLine.Usage);
            return 0;
        }
        var env = EnvironmentVariables();
        if (cl.Status) return StatusCommand.Run(cl, env, Console.Out);
        if (cl.Command.Count == 0 && !cl.PrintPolicy)
        {
            // The original's library doubled as the control-file tool when run as a program.
            if (env.ContainsKey("UNSOCK_FILE")) return ControlFileTool.Run(env, Console.Out, Console.Error);
            return Fail(ExitUsage, $"no command given\n{CommandLine.Usage}");
        }

        // Which supervisor: one asked for must answer; the default one is used when something listens there.
        ControlChannel? supervisor = null;
        if (!cl.Embedded && !cl.PrintPolicy)
        {
            string? asked = cl.SupervisorPath ?? NonEmpty(env.GetValueOrDefault(ControlProtocol.SocketVariable));
            try
            {
                supervisor = asked is not null ? ControlChannel.Connect(asked) : TryConnect(ControlProtocol.DefaultSocketPath);
            }
            catch (ControlChannelException e)
            {
                return Fail(ExitLauncherFailure, $"{e.Message} (--embedded runs without it)");
            }
        }
        using var _ = supervisor;

        Policy? policy = null;
        ControlRequest register;
        try
        {
            if (cl.PolicyPath is null)
            {
                policy = Policy.FromEnvironment(env);
                register = new ControlRequest { Kind = ControlProtocol.Register, PolicyText = policy.ToJson(), PolicySource = policy.Source };
            }
            else if (CommandLine.IsPolicyName(cl.PolicyPath))
            {
                if (supervisor is null) policy = Policy.Load(Path.Combine(PolicyDirectory, cl.PolicyPath + ".json"));
                register = new ControlRequest { Kind = ControlProtocol.Register, Policy = cl.PolicyPath };
            }
            else
            {
                // Read with our user's rights; the supervisor checks it again, but a bad file stops here first.
                policy = Policy.Load(cl.PolicyPath, out string text);
                register = new ControlRequest { Kind = ControlProtocol.Register, PolicyText = text, PolicySource = Path.GetFullPath(cl.PolicyPath) };
            }
        }
        catch (PolicyException e)
        {
            return Fail(ExitUsage, e.Message);
        }
        if (cl.PrintPolicy)
        {
            Console.Out.WriteLine(policy!.ToJson());
            return 0;
        }

        int resolveStatus = CommandResolver.Resolve(cl.Command[0], env.GetValueOrDefault("PATH"), out string path, out string problem);
        if (resolveStatus != 0) return Fail(resolveStatus, problem);

        if (supervisor is not null)
        {
            return SupervisedLaunch.Run(supervisor, register with { Command = cl.Command }, path, cl.Command, signals);
        }

        // Checked here to say which file and why in our words; the filter compiler only sees a DllNotFoundException.
        if (!Dl.TryOpen("libseccomp.so.2", out string loadProblem))
        {
            return Fail(ExitLauncherFailure, $"cannot load libseccomp.so.2, which builds the seccomp filter (install the libseccomp2 package): {loadProblem}");
        }
        // Started now, it gets going while the filter is compiled.
        var spawner = SpawnThread.Start(signals);
        SeccompProgram program;
        try
        {
            program = FilterCompiler.Compile(FilterPlan.For(policy!));
        }
        catch (Exception e) when (e is SeccompException or DllNotFoundException)
        {
            spawner.Cancel();
            return Fail(ExitLauncherFailure, $"cannot build the seccomp filter: {e.Message}");
        }
        return EmbeddedSupervisor.Run(policy!, program, path, cl.Command, cl.Verbose, signals, spawner);
    }

    internal static int Fail(int status, string message)
    {
        Console.Error.WriteLine($"unsock-launch: {message}");
        return status;
    }

    private static string? NonEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    /// <summary>The default supervisor when something listens there; null (embedded mode) otherwise.</summary>
    private static ControlChannel? TryConnect(string path)
    {
        try
        {
            return ControlChannel.Connect(path);
        }
        catch (ControlChannelException)
        {
            return null;
        }
    }

    private static Dictionary<string, string> EnvironmentVariables()
    {
        var env = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (System.Collections.DictionaryEntry e in Environment.GetEnvironmentVariables())
            env[(string)e.Key] = (string?)e.Value ?? "";
        return env;
    }
}
