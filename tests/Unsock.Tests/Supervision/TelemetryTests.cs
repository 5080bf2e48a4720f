using System.Diagnostics.Metrics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Unsock.Core.Engine;
using Unsock.Supervisor;
using Unsock.Tests.Engine;
using Unsock.Tests.Integration;
using Spawn = Unsock.Launcher.Spawn;

namespace Unsock.Tests.Supervision;

/// <summary>The supervisor's metrics as an OTLP receiver gets them: names, units, attributes and counts.</summary>
public class TelemetryTests
{
    private static string Py => Integration.Launcher.Python;
    private static string EngineProbe => Integration.Launcher.Program("engineprobe.py");

    private static IHost Supervising(OtlpReceiver receiver, Dictionary<string, string?> extra)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        var settings = new Dictionary<string, string?>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.Endpoint,
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
            ["OTEL_METRIC_EXPORT_INTERVAL"] = "200",
        };
        foreach (var (k, v) in extra) settings[k] = v;
        builder.Configuration.AddInMemoryCollection(settings);
        Assert.True(builder.AddUnsockTelemetry());
        builder.Services.AddSingleton(sp => new NotificationEngine(null, null, sp.GetRequiredService<IMeterFactory>()));
        return builder.Build();
    }

    [Fact]
    public void TheEnginesMetricsArriveOverOtlpWithTheirNamesUnitsAttributesAndCounts()
    {
        using var dir = new TempDir();
        using var receiver = new OtlpReceiver();
        var host = Supervising(receiver, new() { ["OTEL_RESOURCE_ATTRIBUTES"] = "deployment.environment=test" });
        host.Start();
        var engine = host.Services.GetRequiredService<NotificationEngine>();
        engine.Start();
        var policyA = NotificationEngineTests.PolicyFor(dir, "a");
        var policyB = NotificationEngineTests.PolicyFor(dir, "b");
        // Two targets with their own policies; each binds a listener and makes 5 redirected connects to it.
        string Script(string name, int port) => $"{Py} {EngineProbe} victim 127.0.0.1 {port} 5 > {dir[name + ".out"]}";
        var (fdA, pidA) = NotificationEngineTests.SpawnFiltered(policyA, Script("a", 9701));
        var (fdB, pidB) = NotificationEngineTests.SpawnFiltered(policyB, Script("b", 9702));
        var a = engine.Attach(fdA, policyA, new TargetContext(pidA, PolicyName: "web"));
        var b = engine.Attach(fdB, policyB, new TargetContext(pidB, PolicyName: "inline"));
        Spawn.WaitForExit(pidA);
        Spawn.WaitForExit(pidB);
        Assert.True(Wait.Until(() => a.Completion.IsCompleted && b.Completion.IsCompleted, TimeSpan.FromSeconds(30)));
        long redirected = a.Counters.Redirected + b.Counters.Redirected;
        Assert.True(redirected >= 12, $"{redirected} redirected");
        // The observable gauges are read at an export while the engine runs; the last export (at Dispose,
        // after Stop) has none, so a test faster than the export interval saw none of them.
        Assert.True(Wait.Until(() => receiver.Metrics.Any(m => m.Name == "unsock.listeners"), TimeSpan.FromSeconds(30)), $"{receiver.Requests} requests");
        engine.Stop();
        host.Dispose(); // the MeterProvider exports what it has on the way out

        Assert.Empty(receiver.Problems);
        var metrics = receiver.Metrics;
        Assert.NotEmpty(metrics);
        var last = metrics.Where(m => m.Name == "unsock.notifications").Last();
        Assert.Equal("Unsock", last.Scope);
        Assert.Equal("{notification}", last.Unit);
        Assert.Equal("sum", last.Kind);
        Assert.True(last.Monotonic);
        Assert.Equal("unsock-supervisor", last.Resource["service.name"]);
        Assert.Equal("test", last.Resource["deployment.environment"]);
        // Cumulative sums: the last export holds every answer, by call, outcome and policy (other tests' engines
        // in this process export under the same Meter name, with the policy name "embedded").
        static bool Ours(OtlpPoint p) => p.Attributes.TryGetValue("unsock.policy", out var policy) && policy is "web" or "inline";
        var ours = last.Points.Where(Ours).ToList();
        Assert.Equal(10, ours.Where(p => p.Attributes["unsock.call"] == "connect" && p.Attributes["unsock.outcome"] == "redirected").Sum(p => p.Value));
        Assert.Equal(2, ours.Where(p => p.Attributes["unsock.call"] == "bind" && p.Attributes["unsock.outcome"] == "redirected").Sum(p => p.Value));
        // Per target by policy name, not pid: each policy's target made 5 connects and 1 bind.
        foreach (string policy in new[] { "web", "inline" })
            Assert.Equal(6, ours.Where(p => p.Attributes["unsock.policy"] == policy && p.Attributes["unsock.outcome"] == "redirected").Sum(p => p.Value));
        Assert.Equal(redirected, (long)ours.Where(p => p.Attributes["unsock.outcome"] == "redirected").Sum(p => p.Value));
        Assert.All(last.Points, p => Assert.DoesNotContain(p.Attributes.Keys, k => k.Contains("pid")));

        var latency = metrics.Where(m => m.Name == "unsock.answer.duration").Last();
        Assert.Equal("s", latency.Unit);
        Assert.Equal("histogram", latency.Kind);
        Assert.Equal((ulong)ours.Sum(p => p.Value), (ulong)latency.Points.Where(Ours).Sum(p => (double)p.Count));
        // Seconds, not milliseconds: our targets' connects (other tests' engines in this process export under the same
        // Meter, and a call of theirs parked for a second is rightly counted as a second).
        Assert.All(latency.Points.Where(Ours), p => Assert.InRange(p.Sum / p.Count, 0, 1));

        var redirects = metrics.Where(m => m.Name == "unsock.redirects").Last();
        Assert.Equal(redirected, (long)redirects.Points.Where(p => Ours(p) && p.Attributes["network.transport"] == "unix").Sum(p => p.Value));
        Assert.Contains(metrics, m => m.Name == "unsock.listeners" && m.Unit == "{listener}");
    }

    [Fact]
    public void OffWithoutAnEndpointAndOtelServiceNameWins()
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        Assert.False(builder.AddUnsockTelemetry());
        using var receiver = new OtlpReceiver();
        using (var host = Supervising(receiver, new() { ["OTEL_SERVICE_NAME"] = "edge-supervisor" }))
        {
            host.Start();
            var engine = host.Services.GetRequiredService<NotificationEngine>();
            engine.Start();
            Assert.True(Wait.Until(() => receiver.Metrics.Any(m => m.Name == "unsock.listeners"), TimeSpan.FromSeconds(30)), $"{receiver.Requests} requests");
            engine.Stop();
        }
        Assert.All(receiver.Metrics, m => Assert.Equal("edge-supervisor", m.Resource["service.name"]));
    }

    [Fact]
    public async Task APrometheusEndpointOnLoopbackServesTheSameCounters()
    {
        using var dir = new TempDir();
        int port = FreeLoopbackPort();
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { [Telemetry.PrometheusUrlKey] = $"http://127.0.0.1:{port}/" });
        Assert.True(builder.AddUnsockTelemetry());
        builder.Services.AddSingleton(sp => new NotificationEngine(null, null, sp.GetRequiredService<IMeterFactory>()));
        using var host = builder.Build();
        host.Start();
        var engine = host.Services.GetRequiredService<NotificationEngine>();
        engine.Start();
        var policy = NotificationEngineTests.PolicyFor(dir, "p");
        var (fd, pid) = NotificationEngineTests.SpawnFiltered(policy, $"{Py} {EngineProbe} victim 127.0.0.1 9703 3 > {dir["p.out"]}");
        var target = engine.Attach(fd, policy, new TargetContext(pid, PolicyName: "scraped"));
        Spawn.WaitForExit(pid);
        Assert.True(Wait.Until(() => target.Completion.IsCompleted, TimeSpan.FromSeconds(30)));

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(20) };
        string text = await http.GetStringAsync($"http://127.0.0.1:{port}/metrics");
        engine.Stop();
        // The text format: unsock.notifications becomes unsock_notifications_total, attributes become labels.
        var connects = text.Split('\n').Where(l => l.StartsWith("unsock_notifications_total{", StringComparison.Ordinal) &&
            l.Contains("unsock_policy=\"scraped\"") && l.Contains("unsock_call=\"connect\"") && l.Contains("unsock_outcome=\"redirected\"")).ToList();
        Assert.True(connects.Count == 1, text);
        Assert.Equal(3, double.Parse(connects[0].Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture));
        Assert.Contains("# TYPE unsock_answer_duration_seconds histogram", text);
    }

    [Theory]
    [InlineData("http://0.0.0.0:9464/", "is not on a loopback address")]
    [InlineData("http://localhost:9464/", "is not on a loopback address")]
    [InlineData("https://127.0.0.1:9464/", "is not an http:// URL")]
    [InlineData("127.0.0.1:9464", "is not an http:// URL")]
    [InlineData("http://127.0.0.1:9464/stats", "has a path")]
    public void APrometheusUrlThatIsNotAPlainLoopbackAddressIsRefusedByName(string url, string why)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { [Telemetry.PrometheusUrlKey] = url });
        var e = Assert.Throws<Microsoft.Extensions.Options.OptionsValidationException>(() => builder.AddUnsockTelemetry());
        Assert.StartsWith($"Unsock:Metrics:PrometheusUrl: '{url}' {why}", Assert.Single(e.Failures));
    }

    private static int FreeLoopbackPort()
    {
        using var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        l.Start();
        return ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
    }
}
