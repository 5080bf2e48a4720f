using System.Text.Json;
using Unsock.Core.Engine;
using Unsock.Core.Filter;
using Unsock.Core.Policies;
using Unsock.Tests.Integration;
using Spawn = Unsock.Launcher.Spawn;

namespace Unsock.Tests.Engine;

/// <summary>
/// The receiving role: one thread receives and answers calls one after another without handing over (no other
/// thread is woken per call), threads are started only when calls overlap, and overlapping calls are still
/// answered side by side.
/// </summary>
public class ReceivingRoleTests
{
    private static string Py => Integration.Launcher.Python;
    private static string EngineProbe => Integration.Launcher.Program("engineprobe.py");

    private static (int Listener, int Pid) SpawnFiltered(Policy policy, string script) => NotificationEngineTests.SpawnFiltered(policy, script);

    private static Policy PolicyFor(TempDir dir) => NotificationEngineTests.PolicyFor(dir, "socks");

    [Fact]
    public void CallsOneAfterAnotherAreAnsweredByOneThreadWithoutHandingOver()
    {
        using var dir = new TempDir();
        using var engine = new NotificationEngine();
        engine.Start();
        Assert.Equal(1, engine.NotificationThreadCount);
        var policy = PolicyFor(dir);
        // A first program warms the engine up (this test host compiles our code as it first runs it: slow first calls).
        NotificationEngineTests.RunAttached(engine, policy, $"{Py} {EngineProbe} victim 127.0.0.1 9669 20 > {dir["warm"]} 2>&1");
        long changesBefore = engine.RoleChanges;
        // 300 connects and 300 trapped accepts, strictly one after another.
        var attachment = NotificationEngineTests.RunAttached(engine, policy, $"{Py} {EngineProbe} victim 127.0.0.1 9660 300 > {dir["out"]} 2>&1");
        Assert.Equal(2, JsonDocument.Parse(File.ReadAllText(dir["out"])).RootElement.GetProperty("family").GetInt32());
        Assert.True(attachment.Counters.Redirected >= 301, $"{attachment.Counters.Redirected} redirected");
        // A deputy watches the holder; more only when the holder was stuck (slow first calls, a busy machine preempting it).
        long changes = engine.RoleChanges - changesBefore;
        Assert.True(engine.NotificationThreadCount <= 4, $"{engine.NotificationThreadCount} notification threads for calls that never overlapped ({changes} role changes)");
        // Handing the role over after every call would change it about 600 times; a holder preempted for over a
        // millisecond (a busy machine) loses it to the deputy now and then.
        Assert.True(changes < 150, $"the receiving role changed threads {changes} times in 600 calls one after another");
    }

    [Fact]
    public void OverlappingCallsStartMoreThreadsAndAreAllAnswered()
    {
        using var dir = new TempDir();
        using var engine = new NotificationEngine();
        engine.Start();
        var policy = PolicyFor(dir);
        // Eight programs connecting at once, each to its own listener.
        string script = string.Join(" ", Enumerable.Range(0, 8).Select(i => $"{Py} {EngineProbe} victim 127.0.0.1 {9670 + i} 100 > {dir[$"out{i}"]} 2>&1 &")) + " wait";
        var (fd, pid) = SpawnFiltered(policy, script);
        var attachment = engine.Attach(fd, policy, new TargetContext(pid));
        Assert.Equal(0, Spawn.WaitForExit(pid));
        Assert.True(Wait.Until(() => attachment.Completion.IsCompleted, TimeSpan.FromSeconds(30)), "the attachment did not complete");
        for (int i = 0; i < 8; i++)
        {
            var victim = JsonDocument.Parse(File.ReadAllText(dir[$"out{i}"])).RootElement;
            Assert.Equal(2, victim.GetProperty("family").GetInt32());
            Assert.True(victim.GetProperty("slowest").GetDouble() < 5.0, $"program {i}: a connect took {victim.GetProperty("slowest")} s");
        }
        Assert.True(attachment.Counters.Redirected >= 808, $"{attachment.Counters.Redirected} redirected");
        Assert.True(engine.NotificationThreadCount > 1, "calls that overlapped were all answered by one thread");
    }
}
