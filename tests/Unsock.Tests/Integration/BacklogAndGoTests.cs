using System.Text.Json;

namespace Unsock.Tests.Integration;

/// <summary>A full listen backlog, and a Go program (raw syscalls, SIGURG preemption).</summary>
public class BacklogAndGoTests : IntegrationTest
{
    private static RunningProgram StartNeverAccepting(TempDir dir, string policy, int port)
    {
        var server = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "never-accept", "127.0.0.1", port.ToString()]);
        Wait.ForListener(dir[$"socks/{port}.sock"], server);
        return server;
    }

    [Fact]
    public void FullBacklogWaitsAndTimesOutWithSndtimeoNeverEagain()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var server = StartNeverAccepting(dir, policy, 9870);
        using var client = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "full-backlog", "127.0.0.1", "9870", "300"]);
        Assert.True(0 == client.WaitForExit(Long), client.Describe());
        Assert.Contains("connected 0", client.Stdout);
        Assert.Matches(@"errno 110 after 0\.[2-9]", client.Stdout); // ETIMEDOUT after about 300 ms, not EAGAIN (11)
    }

    [Fact]
    public void SigintInterruptsAConnectWaitingForBacklogRoom()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var server = StartNeverAccepting(dir, policy, 9871);
        using var client = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "full-backlog", "127.0.0.1", "9871", "0"]);
        // The first connect fills the backlog; the second waits for room.
        Assert.True(Wait.Until(() => client.Stdout.Contains("connecting 2") || client.Stdout.Contains("connecting 1") && !client.Stdout.Contains("connected 1"), TimeSpan.FromSeconds(20)), client.Describe());
        Thread.Sleep(500);
        Assert.DoesNotContain("errno", client.Stdout);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        Tmds.Linux.LibC.kill(SocketFileTests.ChildOf(client.Pid), 2);
        Assert.True(Wait.Until(() => client.Stdout.Contains("interrupted after"), TimeSpan.FromSeconds(10)), client.Describe());
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(1.5), $"the SIGINT took {sw.Elapsed} to interrupt the connect");
        Assert.True(0 == client.WaitForExit(Long), client.Describe());
    }

    private static readonly Lazy<string> GoProbe = new(() =>
    {
        string output = Path.Combine(Launcher.RepoRoot, "artifacts", "goprobe");
        using var build = new RunningProgram("go", ["build", "-o", output, "."], new Dictionary<string, string?>
        {
            ["GOFLAGS"] = "-mod=mod", ["GOPROXY"] = "off", ["GOCACHE"] = Path.Combine(Launcher.RepoRoot, "artifacts", "gocache"),
            ["GOPATH"] = Path.Combine(Launcher.RepoRoot, "artifacts", "gopath"), // no dependence on HOME
        }, workingDirectory: Launcher.Program("goprobe"));
        if (build.WaitForExit(TimeSpan.FromMinutes(5)) != 0) throw new InvalidOperationException("go build failed (is golang-go installed?)\n" + build.Describe());
        return output;
    });

    [Fact]
    public void GoServerAndClientsWorkThroughRawSyscallsAndSigurgPreemption()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var server = new RunningProgram(Launcher.Path, ["--policy", policy, "--", GoProbe.Value, "serve", "127.0.0.1:9880"]);
        Wait.ForListener(dir["socks/9880.sock"], server);
        using var clients = new RunningProgram(Launcher.Path, ["--policy", policy, "--", GoProbe.Value, "clients", "127.0.0.1:9880", "2000", "16"]);
        Assert.True(0 == clients.WaitForExit(TimeSpan.FromMinutes(2)), clients.Describe());
        var r = JsonDocument.Parse(clients.Stdout).RootElement;
        Assert.Equal(2000, r.GetProperty("done").GetInt32());
        Assert.True(0 == r.GetProperty("failures").GetInt32(), clients.Stdout);
    }
}
