using Unsock.Core.Policies;
using Unsock.Core.Supervision;

namespace Unsock.Tests.Integration;

/// <summary>
/// The launcher in front of a supervisor: it hands the listener over and becomes the program (same pid, fds,
/// environment, signals, exit status), or stops with the supervisor's reason; it never runs a command unfiltered.
/// </summary>
public class HandOffTests : IntegrationTest
{
    private static Dictionary<string, string?> Through(InProcessSupervisor s) => new() { [ControlProtocol.SocketVariable] = s.SocketPath };

    [Fact]
    public void TheProgramReplacesTheLauncherInPlaceAndIsRedirectedByTheSupervisor()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var supervisor = new InProcessSupervisor(dir["sup.sock"]);
        const string Script = """
            import os, socket
            s = socket.socket(); s.bind(("127.0.0.1", 7301)); s.listen()
            print(os.getpid(), os.getppid(), flush=True)
            """;
        using var p = new RunningProgram(Launcher.Path, ["--supervisor", supervisor.SocketPath, "--policy", policy, "--", Py, "-c", Script]);
        Assert.Equal(0, p.WaitForExit(Long));
        string[] ids = p.Stdout.Trim().Split(' ');
        // RunningProgram starts env(1), which execs the launcher, which execs python: one pid throughout.
        Assert.Equal(p.Pid.ToString(), ids[0]);
        Assert.Equal(Environment.ProcessId.ToString(), ids[1]);
        var (pid, request) = Assert.Single(supervisor.Received, r => r.Request.Kind == ControlProtocol.Register);
        Assert.Equal(p.Pid, pid);
        Assert.Equal(Path.GetFullPath(policy), request.PolicySource);
        Assert.Equal(Py, request.Command![0]);
        Assert.Contains(supervisor.Received, r => r.Request.Kind == ControlProtocol.Attach);
        // The bind went through the supervisor: the socket file was made (and removed once the program was gone).
        Assert.True(Directory.Exists(dir["socks"]), p.Describe());
    }

    [Fact]
    public void ServesARealServerAndClientThroughTheSupervisor()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var supervisor = new InProcessSupervisor(dir["sup.sock"]);
        File.WriteAllText(dir["index.html"], "through the supervisor\n");
        using var server = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, "-m", "http.server", "--bind", "127.0.0.1", "7302"],
            Through(supervisor), workingDirectory: dir.Path);
        Assert.True(Wait.Until(() => File.Exists(dir["socks/7302.sock"]), TimeSpan.FromSeconds(30)), server.Describe());
        using var curl = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "curl", "-sS", "http://127.0.0.1:7302/index.html"], Through(supervisor));
        Assert.Equal(0, curl.WaitForExit(Long));
        Assert.Equal("through the supervisor\n", curl.Stdout);
        Assert.Equal(2, supervisor.Received.Count(r => r.Request.Kind == ControlProtocol.Attach));
    }

    [Fact]
    public void ExitStatusAndSignalDeathAreTheProgramsOwn()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var supervisor = new InProcessSupervisor(dir["sup.sock"]);
        using (var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "sh", "-c", "exit 7"], Through(supervisor)))
            Assert.Equal(7, p.WaitForExit(Long));
        // Killed by a signal for real (no launcher left to turn it into 128+N): the test sees the signal's status.
        using (var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "sh", "-c", "kill -TERM $$"], Through(supervisor)))
            Assert.Equal(128 + 15, p.WaitForExit(Long));
    }

    [Fact]
    public void TheProgramInheritsExactlyTheLaunchersEnvironmentFdsAndSignalState()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var supervisor = new InProcessSupervisor(dir["sup.sock"]);
        var env = Through(supervisor);
        env["UNSOCK_TEST_MARKER"] = "42";
        // fd 7 inherited from the shell; SIGHUP ignored as nohup would; the rest as a terminal starts it.
        const string Inner = "env | sort; echo fds; ls /proc/self/fd; grep -E '^Sig(Blk|Ign)' /proc/self/status";
        string Outer(string launcher) => $"exec 7</dev/null; trap '' HUP; exec {launcher} sh -c \"{Inner}\"";
        using var direct = new RunningProgram("sh", ["-c", Outer("")], env);
        using var launched = new RunningProgram("sh", ["-c", Outer($"{Launcher.Path} --policy {policy} --")], env);
        Assert.Equal(0, direct.WaitForExit(Long));
        Assert.Equal(0, launched.WaitForExit(Long));
        Assert.Contains("UNSOCK_TEST_MARKER=42", launched.Stdout);
        Assert.Contains("\n7\n", launched.Stdout);
        Assert.Equal(Comparable(direct.Stdout), Comparable(launched.Stdout));
    }

    /// <summary>
    /// Without `_=` (the shell's last command) and SIGPIPE's bit: the .NET runtime ignores SIGPIPE before our
    /// Main, so what the launcher inherited is unknowable and the program gets the default, as in embedded mode.
    /// </summary>
    private static string Comparable(string output) => string.Join('\n', output.Split('\n')
        .Where(l => !l.StartsWith("_=", StringComparison.Ordinal))
        .Select(l => l.StartsWith("SigIgn:", StringComparison.Ordinal) ? $"SigIgn: {Convert.ToUInt64(l[7..].Trim(), 16) & ~(1UL << 12):x16}" : l));

    [Fact]
    public void ARefusalStopsWithTheSupervisorsReasonAndNothingRuns()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var supervisor = new InProcessSupervisor(dir["sup.sock"], r => r.Kind == ControlProtocol.Register ? ControlReply.Refused("policy web is not allowed for user nobody") : null);
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "touch", dir["ran"]], Through(supervisor));
        Assert.Equal(125, p.WaitForExit(Long));
        Assert.Contains($"the supervisor at {supervisor.SocketPath} refused: policy web is not allowed for user nobody", p.Stderr);
        Assert.False(File.Exists(dir["ran"]));
    }

    [Fact]
    public void ARefusedAttachStopsAfterTheFilterIsInstalledAndNothingRuns()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var supervisor = new InProcessSupervisor(dir["sup.sock"], r => r.Kind == ControlProtocol.Attach ? ControlReply.Refused("too many targets (limit 1)") : null);
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "touch", dir["ran"]], Through(supervisor));
        Assert.Equal(125, p.WaitForExit(Long));
        Assert.Contains("refused: too many targets (limit 1)", p.Stderr);
        Assert.False(File.Exists(dir["ran"]));
    }

    [Fact]
    public void AGarbledFilterIsRefusedAndNothingRuns()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var supervisor = new InProcessSupervisor(dir["sup.sock"], r => r.Kind == ControlProtocol.Register ? new ControlReply { Ok = true, Filter = "AAAA" } : null);
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "touch", dir["ran"]], Through(supervisor));
        Assert.Equal(125, p.WaitForExit(Long));
        Assert.Contains("sent a filter that is not a seccomp program", p.Stderr);
        Assert.False(File.Exists(dir["ran"]));
    }

    [Fact]
    public void ASupervisorAskedForButUnreachableIsAnErrorNotAFallback()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using (var p = new RunningProgram(Launcher.Path, ["--supervisor", dir["nobody-here.sock"], "--policy", policy, "--", "touch", dir["ran"]]))
        {
            Assert.Equal(125, p.WaitForExit(Long));
            Assert.Contains($"cannot connect to the supervisor at {dir["nobody-here.sock"]}: No such file or directory", p.Stderr);
        }
        using (var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "touch", dir["ran"]],
            new Dictionary<string, string?> { [ControlProtocol.SocketVariable] = dir["nobody-here.sock"] }))
        {
            Assert.Equal(125, p.WaitForExit(Long));
            Assert.Contains("cannot connect to the supervisor", p.Stderr);
        }
        Assert.False(File.Exists(dir["ran"]));
        // --embedded runs without it, whatever the environment says.
        using (var p = new RunningProgram(Launcher.Path, ["--embedded", "--policy", policy, "--", "touch", dir["ran"]],
            new Dictionary<string, string?> { [ControlProtocol.SocketVariable] = dir["nobody-here.sock"] }))
            Assert.Equal(0, p.WaitForExit(Long));
        Assert.True(File.Exists(dir["ran"]));
    }

    [Fact]
    public void ANamedPolicyTravelsByNameAndTheEnvironmentPolicyInline()
    {
        using var dir = new TempDir();
        using var supervisor = new InProcessSupervisor(dir["sup.sock"]);
        supervisor.Named["web"] = Policy.Load(Policies.Loopback(dir));
        using (var p = new RunningProgram(Launcher.Path, ["--policy", "web", "--", "true"], Through(supervisor)))
            Assert.Equal(0, p.WaitForExit(Long));
        Assert.Equal("web", supervisor.Received[0].Request.Policy);
        Assert.Null(supervisor.Received[0].Request.PolicyText);
        var env = Through(supervisor);
        env["UNSOCK_DIR"] = dir["env-socks"];
        using (var p = new RunningProgram(Launcher.Path, ["--", "true"], env))
            Assert.Equal(0, p.WaitForExit(Long));
        var inline = supervisor.Received.Last(r => r.Request.Kind == ControlProtocol.Register).Request;
        Assert.Equal(Policy.FromEnvironment(new Dictionary<string, string> { ["UNSOCK_DIR"] = dir["env-socks"] }), Policy.Parse(inline.PolicyText!, "sent"));
        // A name the supervisor does not know: its reason, exit 125.
        using (var p = new RunningProgram(Launcher.Path, ["--policy", "nope", "--", "true"], Through(supervisor)))
        {
            Assert.Equal(125, p.WaitForExit(Long));
            Assert.Contains("no policy named nope", p.Stderr);
        }
    }
}
