using System.Text.Json;

namespace Unsock.Tests.Integration;

/// <summary>The launcher as a command: exit statuses, signals, policy errors, refusals.</summary>
public class LauncherTests : IntegrationTest
{
    [Fact]
    public void ExitStatusIsTheChildsAnd128PlusSignal()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using (var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "sh", "-c", "exit 7"]))
            Assert.Equal(7, p.WaitForExit(Long));
        using (var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "sh", "-c", "kill -SEGV $$"]))
            Assert.Equal(128 + 11, p.WaitForExit(Long));
    }

    [Fact]
    public void CommandNotFoundIs127AndNotExecutableIs126()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using (var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "no-such-command-xyz"]))
        {
            Assert.Equal(127, p.WaitForExit(Long));
            Assert.Contains("no-such-command-xyz: command not found", p.Stderr);
        }
        File.WriteAllText(dir["script"], "#!/bin/sh\necho hi\n");
        using (var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", dir["script"]]))
        {
            Assert.Equal(126, p.WaitForExit(Long));
            Assert.Contains("permission denied", p.Stderr);
        }
    }

    [Theory]
    [InlineData(2, "INT")]
    [InlineData(15, "TERM")]
    [InlineData(1, "HUP")]
    [InlineData(10, "USR1")]
    [InlineData(12, "USR2")]
    [InlineData(3, "QUIT")]
    [InlineData(28, "WINCH")]
    public void SignalsAreForwardedToTheChild(int signal, string name)
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        string script = $"trap 'echo got {name}; exit 3' {name}; echo ready; while :; do sleep 0.05; done";
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "bash", "-c", script]);
        Assert.True(Wait.Until(() => p.Stdout.Contains("ready"), TimeSpan.FromSeconds(20)), p.Describe());
        p.Signal(signal);
        Assert.Equal(3, p.WaitForExit(Long));
        Assert.Contains($"got {name}", p.Stdout);
    }

    [Fact]
    public void TheTargetInheritsExactlyTheLaunchersEnvironmentAndFds()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        // What `sh` sees started directly and started through the launcher must be the same.
        var env = new Dictionary<string, string?> { ["UNSOCK_TEST_MARKER"] = "42" };
        const string Script = "env | sort; echo fds; ls /proc/self/fd";
        using var direct = new RunningProgram("sh", ["-c", Script], env);
        using var launched = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "sh", "-c", Script], env);
        Assert.Equal(0, direct.WaitForExit(Long));
        Assert.Equal(0, launched.WaitForExit(Long));
        Assert.Contains("UNSOCK_TEST_MARKER=42", launched.Stdout);
        static string WithoutVolatile(string s) =>
            string.Join('\n', s.Split('\n').Where(l => !l.StartsWith("_=", StringComparison.Ordinal)));
        Assert.Equal(WithoutVolatile(direct.Stdout), WithoutVolatile(launched.Stdout));
    }

    [Fact]
    public void BadPolicyStopsBeforeAnythingRunsWithExit2NamingFileRuleAndField()
    {
        using var dir = new TempDir();
        string policy = Policies.Write(dir, """{ "rules": [ { "address": "300.1.1.1/8", "directory": "/tmp/x" } ] }""", "bad.json");
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "touch", dir["ran"]]);
        Assert.Equal(2, p.WaitForExit(Long));
        Assert.Contains("bad.json", p.Stderr);
        Assert.Contains("rules[0].address", p.Stderr);
        Assert.False(File.Exists(dir["ran"]));
    }

    [Fact]
    public void BadEnvironmentVariableIsAnErrorNotIgnored()
    {
        using var p = new RunningProgram(Launcher.Path, ["true"], new Dictionary<string, string?> { ["UNSOCK_DIR"] = "/tmp/u", ["UNSOCK_PORT"] = "70000" });
        Assert.Equal(2, p.WaitForExit(Long));
        Assert.Contains("UNSOCK_PORT", p.Stderr);
    }

    [Fact]
    public void PrintPolicyShowsTheEnvironmentAsAPolicy()
    {
        var env = new Dictionary<string, string?>
        {
            ["UNSOCK_DIR"] = "/tmp/unsockets", ["UNSOCK_ADDR"] = "127.0.0.1/0", ["UNSOCK_PORT"] = "8000",
            ["UNSOCK_MODE"] = "660", ["UNSOCK_ACCEPT_CONVERT_ALL"] = "1", ["UNSOCK_BLOCK_INET6"] = "1",
        };
        using var p = new RunningProgram(Launcher.Path, ["--print-policy"], env);
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        var root = JsonDocument.Parse(p.Stdout).RootElement;
        Assert.Equal("127.0.0.1", root.GetProperty("fakeAddress").GetString());
        Assert.Equal("all", root.GetProperty("acceptConvert").GetString());
        Assert.True(root.GetProperty("blockInet6").GetBoolean());
        var rule = root.GetProperty("rules")[0];
        Assert.Equal("/tmp/unsockets", rule.GetProperty("directory").GetString());
        Assert.Equal("0660", rule.GetProperty("mode").GetString());
        Assert.Equal(8000, rule.GetProperty("port").GetInt32());
    }

    [Fact]
    public void RejectRuleFailsConnectWithItsErrnoAndBlockInet6FailsSocket()
    {
        using var dir = new TempDir();
        string policy = Policies.Write(dir, """
            { "blockInet6": true, "rules": [ { "address": "10.0.0.0/8", "reject": "EACCES" }, { "direction": "bind", "port": 1, "reject": 99 } ] }
            """);
        using (var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "connect", "10.1.2.3", "80"]))
        {
            Assert.True(0 == p.WaitForExit(Long), p.Describe());
            Assert.Equal("errno 13\n", p.Stdout);
        }
        using (var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "bind", "127.0.0.1", "1"]))
        {
            p.WaitForExit(Long);
            Assert.Equal("errno 99\n", p.Stdout);
        }
        using (var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "socket", "inet6"]))
        {
            p.WaitForExit(Long);
            Assert.Equal("errno 97\n", p.Stdout); // EAFNOSUPPORT
        }
        using (var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "socket", "inet"]))
        {
            p.WaitForExit(Long);
            Assert.Equal("created\n", p.Stdout);
        }
    }

    [Fact]
    public void ConnectToAPortWithoutSocketFileIsRefusedLikeAClosedTcpPort()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "connect", "127.0.0.1", "8999"]);
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        Assert.Equal("errno 111\n", p.Stdout);
    }

    [Fact]
    public void NestedLauncherSaysItIsAlreadySupervised()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Launcher.Path, "--policy", policy, "--", "true"]);
        p.WaitForExit(Long);
        Assert.Contains("already running under a seccomp supervisor", p.Stderr);
    }

    [Fact]
    public void SigintInterruptsABlockingAcceptTheSupervisorWaitsIn()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir, extraTop: "\"acceptConvert\": \"all\",");
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "sigint-accept", "127.0.0.1", "8400"]);
        Assert.True(Wait.Until(() => p.Stdout.Contains("listening"), TimeSpan.FromSeconds(20)), p.Describe());
        Thread.Sleep(300); // let it block in accept
        var sw = System.Diagnostics.Stopwatch.StartNew();
        Tmds.Linux.LibC.kill(SocketFileTests.ChildOf(p.Pid), 2);
        Assert.True(Wait.Until(() => p.Stdout.Contains("interrupted"), TimeSpan.FromSeconds(5)), p.Describe());
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(2), $"SIGINT took {sw.Elapsed}");
        p.WaitForExit(Long);
    }

    [Fact]
    public void VerboseLogsEachDecision()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var p = new RunningProgram(Launcher.Path, ["-v", "--policy", policy, "--", Py, Probe, "connect", "127.0.0.1", "8998"]);
        p.WaitForExit(Long);
        Assert.Matches(@"unsock: pid \d+ connect 127\.0\.0\.1:8998: rule 0 -> .*/socks/8998\.sock: ECONNREFUSED", p.Stderr);
    }

    [Fact]
    public void VerboseLogsAllowRulesAndCallsNoRuleMatches()
    {
        using var dir = new TempDir();
        string policy = Policies.Write(dir, $$"""
            { "rules": [ { "address": "127.0.0.2", "allow": true }, { "address": "127.0.0.3", "directory": "{{dir.Path}}/socks" } ] }
            """);
        using var allowed = new RunningProgram(Launcher.Path, ["-v", "--policy", policy, "--", Py, Probe, "connect", "127.0.0.2", "8997"]);
        allowed.WaitForExit(Long);
        Assert.Matches(@"unsock: pid \d+ connect 127\.0\.0\.2:8997: rule 0 allows: left to the kernel", allowed.Stderr);
        using var unmatched = new RunningProgram(Launcher.Path, ["-v", "--policy", policy, "--", Py, Probe, "connect", "127.0.0.4", "8997"]);
        unmatched.WaitForExit(Long);
        Assert.Matches(@"unsock: pid \d+ connect 127\.0\.0\.4:8997: no rule matches: left to the kernel", unmatched.Stderr);
    }
}
