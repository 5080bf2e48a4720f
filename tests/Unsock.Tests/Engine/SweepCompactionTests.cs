using System.Diagnostics.Metrics;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Unsock.Core.Engine;
using Unsock.Core.Filter;
using Unsock.Core.Policies;
using Unsock.Tests.Integration;
using Spawn = Unsock.Launcher.Spawn;

namespace Unsock.Tests.Engine;

/// <summary>
/// After a burst of connections is swept, the sweeper gives the heap it grew back with one full compacting
/// collection; a steady load, small or large, never triggers it.
/// </summary>
public class SweepCompactionTests
{
    [Fact]
    public void ABurstEndsOnceItsRecordsFallBelowAnEighthOfThePeak()
    {
        var burst = new BurstEnd(4096);
        foreach (int records in (int[])[0, 100, 3000, 10000, 20000, 5000, 2501])
            Assert.False(burst.Observe(records), $"{records} records after a peak of 20000 do not end the burst");
        Assert.True(burst.Observe(2499));
        // Said once: the next sweeps of the same quiet period do not collect again.
        Assert.False(burst.Observe(2499));
        Assert.False(burst.Observe(0));
        // A second burst is told again.
        Assert.False(burst.Observe(8000));
        Assert.True(burst.Observe(900));
    }

    [Fact]
    public void AHostileOrBusyTargetCannotMakeItCollectWithoutBursts()
    {
        var burst = new BurstEnd(4096);
        // Records that rise and fall below the threshold, however often: never.
        for (int i = 0; i < 10000; i++) Assert.False(burst.Observe(i % 2 == 0 ? 4095 : 0));
        // A steady large load that never falls to an eighth: never.
        var steady = new BurstEnd(4096);
        for (int i = 0; i < 10000; i++) Assert.False(steady.Observe(i % 2 == 0 ? 50000 : 6300));
    }

    [Fact]
    public void TheEngineCompactsOnceTheConnectionsOfABurstAreSwept()
    {
        using var dir = new TempDir();
        using var meters = new NotificationEngineTests.TestMeterFactory();
        long compactions = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (meters.Meters.Contains(instrument.Meter) && instrument.Name == "unsock.heap_compactions") l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref compactions, value));
        listener.Start();
        // A low threshold and quick sweeps stand in for the 4096 records and 1 s sweeps of a real burst.
        var options = new EngineOptions { SweepInterval = TimeSpan.FromMilliseconds(20), CompactAfterRecords = 8 };
        using var engine = new NotificationEngine(Options.Create(options), null, meters);
        engine.Start();
        var policy = NotificationEngineTests.PolicyFor(dir, "socks");
        string script = $"{Integration.Launcher.Python} {Integration.Launcher.Program("engineprobe.py")} victim 127.0.0.1 9690 400 > {dir["out"]} 2>&1";
        var (fd, pid) = NotificationEngineTests.SpawnFiltered(policy, script);
        var attachment = engine.Attach(fd, policy, new TargetContext(pid));
        Assert.Equal(0, Spawn.WaitForExit(pid));
        Assert.Equal(2, JsonDocument.Parse(File.ReadAllText(dir["out"])).RootElement.GetProperty("family").GetInt32());
        Assert.True(attachment.Counters.Redirected >= 401, $"{attachment.Counters.Redirected} redirected");
        Assert.True(Wait.Until(() => Interlocked.Read(ref compactions) > 0, TimeSpan.FromSeconds(30)),
            "the heap was not compacted after the burst's records were swept");
    }
}
