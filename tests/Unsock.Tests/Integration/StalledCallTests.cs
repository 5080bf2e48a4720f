using System.Text.Json;

namespace Unsock.Tests.Integration;

/// <summary>
/// The receiving thread keeps its role between calls; a call that stalls it must not stall anyone else. The
/// attacker puts its connect's address on a userfaultfd page it does not serve, so our read of the address waits in
/// the kernel with the role held; a victim under the same launcher must still be served promptly.
/// </summary>
public class StalledCallTests : IntegrationTest
{
    private static string EngineProbe => Launcher.Program("engineprobe.py");

    private static string StallConnect => CompiledC.Build("c/stallconnect.c", "-pthread");

    [Fact]
    public void ACallStalledInsideTheSupervisorDoesNotHoldUpOtherCalls()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        string release = dir["release"], stall = dir["stall.out"];
        using var run = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "/bin/sh", "-c",
            $"{Py} {Probe} never-accept 127.0.0.1 9650 & np=$!; while [ ! -S {dir["socks/9650.sock"]} ]; do sleep 0.05; done; " +
            $"{StallConnect} 127.0.0.1 9650 {release} > {stall} & st=$!; " +
            $"until grep -q faulted {stall} 2>/dev/null; do sleep 0.05; done; " +
            $"{Py} {EngineProbe} victim 127.0.0.1 9651 20; touch {release}; wait $st; cat {stall}; kill $np"]);
        try
        {
            Assert.True(Wait.Until(() => run.Stdout.Contains("slowest") || run.HasExited, TimeSpan.FromSeconds(60)),
                "the victim was not served while another call stalled a notification thread\n" + run.Describe());
        }
        finally
        {
            File.WriteAllText(release, "");
        }
        Assert.True(0 == run.WaitForExit(Long), run.Describe());
        var victim = JsonDocument.Parse(run.Stdout.Split('\n').First(l => l.Contains("slowest"))).RootElement;
        Assert.True(victim.GetProperty("slowest").GetDouble() < 2.0, $"a victim's connect took {victim.GetProperty("slowest")} s\n{run.Describe()}");
        Assert.Equal(2, victim.GetProperty("family").GetInt32());
        // The stalled connect itself is finished once its address can be read.
        Assert.Contains("faulted", run.Stdout);
        Assert.Contains("connect returned 0 errno 0", run.Stdout);
    }
}
