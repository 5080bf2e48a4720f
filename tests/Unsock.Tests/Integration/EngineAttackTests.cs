using System.Text.Json;

namespace Unsock.Tests.Integration;

/// <summary>
/// Programs that try to stall or exhaust the engine, each next to a victim that must still be served
/// promptly by the same supervisor (one launcher runs attacker and victim). They run alone: 8,000 target
/// threads on two cores would starve whatever ran beside them.
/// </summary>
[Collection(RunsAlone.Name)]
public class EngineAttackTests : IntegrationTest
{
    private static string EngineProbe => Launcher.Program("engineprobe.py");

    private static string ParkFlood => CompiledC.Build("parkflood.c", "-pthread");

    private static string StatusField(int pid, string key) =>
        File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith(key, StringComparison.Ordinal))[key.Length..].Trim();

    private static int FdCount(int pid) => Directory.GetFiles($"/proc/{pid}/fd").Length;

    private static RunningProgram Under(string policy, string script) =>
        new(Launcher.Path, ["--policy", policy, "--", "/bin/sh", "-c", script]);

    [Fact]
    public void EightThousandWaitingConnectsCostNoThreadEachAndDoNotSlowOthers()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        string flood = dir["flood.out"];
        using var run = Under(policy,
            $"{Py} {Probe} never-accept 127.0.0.1 9500 & " +
            $"while [ ! -S {dir["socks/9500.sock"]} ]; do sleep 0.1; done; sleep 0.5; " +
            $"{ParkFlood} 127.0.0.1 9500 8000 > {flood} & " +
            $"until grep -q 'returned 3' {flood} 2>/dev/null; do sleep 0.2; done; " +
            $"{Py} {EngineProbe} victim 127.0.0.1 9501 20; sleep 600");
        Assert.True(Wait.Until(() => run.Stdout.Contains("slowest") || run.HasExited, TimeSpan.FromSeconds(180)), run.Describe());
        int threads = int.Parse(StatusField(run.Pid, "Threads:"));
        int fds = FdCount(run.Pid);
        const string Expected = "returned 3904 timedout 3903 other 0";
        Wait.Until(() => File.ReadAllLines(flood).LastOrDefault() == Expected, TimeSpan.FromSeconds(30));
        string last = File.ReadAllLines(flood).Last();
        var victim = JsonDocument.Parse(run.Stdout.Trim().Split('\n').Last()).RootElement;

        // The first connect fits the backlog, 4,096 wait (the default cap per listener), the rest are refused
        // with ETIMEDOUT at once.
        Assert.Equal(Expected, last);
        Assert.True(threads <= 24, $"the supervisor has {threads} threads with 4,096 calls waiting");
        // Two per waiting connect (the program's socket and ours), plus the capped caches of 8 threads.
        Assert.True(fds <= 2 * 4096 + 3 * 64 * 8 + 300, $"the supervisor holds {fds} fds with 4,096 calls waiting");
        Assert.True(victim.GetProperty("slowest").GetDouble() < 1.0, $"a victim's connect took {victim.GetProperty("slowest")} s");
        Assert.Contains("calls already wait for this listener (limit 4096), answered ETIMEDOUT", run.Stderr);
        int logged = run.Stderr.Split('\n').Count(l => l.Contains("calls already wait"));
        Assert.True(logged <= 60, $"{logged} log lines for 3,903 refusals: the warning is not rate-limited");
    }

    [Fact]
    public void NonBlockingConnectIntoAFullBacklogReturnsAtOnce()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var run = Under(policy, $"{Py} {EngineProbe} nonblock-full 127.0.0.1 9510");
        Assert.True(0 == run.WaitForExit(TimeSpan.FromSeconds(60)), run.Describe());
        var results = JsonDocument.Parse(run.Stdout).RootElement.EnumerateArray().ToList();
        Assert.All(results, r => Assert.True(r.GetProperty("seconds").GetDouble() < 0.5, run.Stdout));
        Assert.Equal(0, results[0].GetProperty("errno").GetInt32());
        // A full backlog refuses (as TCP does with tcp_abort_on_overflow); never EAGAIN, which TCP programs read as "no ports".
        Assert.Contains(results, r => r.GetProperty("errno").GetInt32() == 111);
        Assert.DoesNotContain(results, r => r.GetProperty("errno").GetInt32() == 11);
    }

    [Fact]
    public void AListenerHandedToAnotherProcessKeepsItsSocketFile()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        string handoff = dir["handoff.sock"];
        using var holder = new RunningProgram(Py, [EngineProbe, "hold-listener", handoff]);
        Assert.True(Wait.Until(() => holder.Stdout.Contains("ready"), Long), holder.Describe());
        using var run = Under(policy, $"{Py} {EngineProbe} pass-listener 127.0.0.1 9520 {handoff}");
        Assert.True(0 == run.WaitForExit(Long), run.Describe());
        Assert.True(Wait.Until(() => holder.Stdout.Contains("holding"), Long), holder.Describe());

        // The launcher and its targets are gone; the holder still accepts on the socket behind the file.
        string file = dir["socks/9520.sock"];
        Assert.True(File.Exists(file), "the socket file of a listener someone still holds was removed\n" + run.Describe());
        using var client = new RunningProgram(Py, ["-c", $"import socket; s = socket.socket(socket.AF_UNIX); s.connect('{file}'); print(s.recv(10).decode().strip())"]);
        Assert.True(0 == client.WaitForExit(Long), client.Describe());
        Assert.Equal("held", client.Stdout.Trim());
    }

    [Fact]
    public void ManyThreadsAskingAtOnceNeverSeeTheRealUnixAddress()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var run = Under(policy, $"{Py} {EngineProbe} names-from-threads 127.0.0.1 9530 1500 & sleep 1; " +
                                      $"until [ -n \"$(ls /proc/$!/task | sed -n 1400p)\" ]; do sleep 0.1; done; sleep 0.5; ls /proc/$PPID/fd | wc -l; wait");
        Assert.True(0 == run.WaitForExit(TimeSpan.FromSeconds(120)), run.Describe());
        var lines = run.Stdout.Trim().Split('\n');
        int supervisorFds = int.Parse(lines[0].Trim());
        var families = JsonDocument.Parse(lines[^1]).RootElement;
        Assert.Equal(1500, families.GetProperty("inet").GetInt32());
        // Per-thread caches are capped: 1,500 target threads do not cost 1,500 pidfds per notification thread.
        Assert.True(supervisorFds < 1200, $"the supervisor held {supervisorFds} fds while 1,500 threads asked");
    }
}
