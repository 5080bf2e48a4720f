using System.Diagnostics;

namespace Unsock.Bench.Driver;

/// <summary>
/// Scenarios 9 and 10, what running the supervisor costs besides supervising: its metrics exported over OTLP
/// (a second service, exporting to a sink of ours, against the run's service, which exports nothing), and a
/// restart (a third service under fakesystemd.py, which plays systemd's fd store) while a client connects in a loop.
/// </summary>
internal sealed partial class BenchDriver
{
    public const string OtlpOff = "otlp-off", OtlpOn = "otlp-on", Graceful = "graceful", Killed = "sigkill", Help = "help";
    private const int MetricsServerPort = 19004, RestartServerPort = 19005, OtlpSinkPort = 19021;

    private string MetricsSocket => Path.Combine(o.Work, "metrics", "control.sock");
    private string RestartDir => Path.Combine(o.Work, "restart");
    private string RestartSocket => Path.Combine(RestartDir, "ctl3.sock");
    private Process? _metricsSupervisor;
    private OtlpSink? _sink;
    private SystemdHarness? _restartHarness;
    private string? _restartSkipped;

    /// <summary>What the report says of scenarios 9 and 10 besides the measurements.</summary>
    internal sealed record OperationsFacts(bool Metrics, bool Restart, string? RestartSkipped, string SinkEndpoint, long Exports, long ExportBytes, string ExportPaths, double MetricsSeconds);

    private OperationsFacts Operations => new(
        o.Runs("metrics"), o.Runs("restart") && _restartSkipped is null, o.Runs("restart") ? _restartSkipped : null,
        _sink?.Endpoint ?? "", _sink?.Requests ?? 0, _sink?.Bytes ?? 0, _sink?.Paths ?? "", MetricsSeconds);

    // Twice the other scenarios' runs: with an export every second, every full-run measurement spans at least one.
    private double MetricsSeconds => 2 * o.Seconds;

    /// <summary>A supervisor service like the run's (own control socket, empty policy directory, log level Warning unless <paramref name="logging"/> says more).</summary>
    private static string[] ServiceArgs(string socket, string dir, params string[] logging)
    {
        Directory.CreateDirectory(Path.Combine(dir, "policies"));
        string config = Path.Combine(dir, "supervisor.json");
        File.WriteAllText(config, "{ }\n");
        return ["--config", config, $"--Unsock:ControlSocket={socket}", $"--Unsock:PolicyDirectory={Path.Combine(dir, "policies")}",
                "--Logging:LogLevel:Default=Warning", .. logging];
    }

    /// <summary>
    /// Scenario 9's second service: the OTLP exporter on (standard OTEL_* variables, http/protobuf, an export every
    /// second) towards the driver's sink. The run's service (no OTEL_* variables) is the exporter-off column.
    /// </summary>
    private void StartMetricsSupervisor()
    {
        _sink ??= new OtlpSink(OtlpSinkPort);
        string dir = Path.GetDirectoryName(MetricsSocket)!;
        var psi = new ProcessStartInfo(o.SupervisorBin) { UseShellExecute = false };
        foreach (var a in ServiceArgs(MetricsSocket, dir)) psi.ArgumentList.Add(a);
        foreach (var name in psi.Environment.Keys.Where(k => k.StartsWith("OTEL_", StringComparison.Ordinal)).ToList()) psi.Environment.Remove(name);
        psi.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = _sink.Endpoint;
        psi.Environment["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf";
        psi.Environment["OTEL_METRIC_EXPORT_INTERVAL"] = "1000";
        _metricsSupervisor = Process.Start(psi) ?? throw new BenchIoException($"cannot start {o.SupervisorBin}", 0);
        ChildProcess.WaitUntil(() => ChildProcess.AcceptsSeqpacket(MetricsSocket), "unsock-supervisor (OTLP exporter on)", _metricsSupervisor);
        Progress($"unsock-supervisor (OTLP exporter on, to {_sink.Endpoint}) pid {_metricsSupervisor.Id} at {MetricsSocket}");
    }

    /// <summary>
    /// Scenario 10's third service, under fakesystemd.py (needs --fakesystemd, which bench/run.sh passes, and python3):
    /// targets kept in its fd store and a state directory. Its log says when it stops and starts (Information for the
    /// host's lifetime and the target keeper only), so that a restart can be cut into its parts.
    /// </summary>
    private void StartRestartSupervisor()
    {
        string? python = FindOnPath("python3");
        if (o.FakeSystemd is null || python is null)
        {
            _restartSkipped = o.FakeSystemd is null ? "no --fakesystemd PATH (bench/run.sh passes tests/Unsock.Tests/Programs/fakesystemd.py)" : "no python3 on PATH";
            Progress($"restart scenario left out: {_restartSkipped}");
            return;
        }
        Directory.CreateDirectory(RestartDir);
        _restartHarness = new SystemdHarness(python, o.FakeSystemd, Path.Combine(RestartDir, "notify"), RestartSocket, o.SupervisorBin,
            ServiceArgs(RestartSocket, RestartDir, "--Logging:LogLevel:Microsoft.Hosting.Lifetime=Information", "--Logging:LogLevel:Unsock.Supervisor.TargetKeeper=Information")
                .Append($"--Unsock:StateDirectory={Path.Combine(RestartDir, "state")}"));
        Progress($"unsock-supervisor under fakesystemd.py pid {_restartHarness.Pid} at {RestartSocket}");
    }

    private void StartOperationsServers()
    {
        if (_metricsSupervisor is not null) StartBenchUnder(Launch.External, MetricsSocket, "serve", $"tcp:127.0.0.1:{MetricsServerPort}");
        if (_restartHarness is not null) StartBenchUnder(Launch.External, RestartSocket, "serve", $"tcp:127.0.0.1:{RestartServerPort}");
    }

    /// <summary>Like the run's service: the exporter-on service's path runs briefly before round 1 (see <see cref="WarmUp"/>).</summary>
    private void WarmUpOperations()
    {
        if (_metricsSupervisor is not null)
            RunBenchUnder(Launch.External, MetricsSocket, "conn", $"tcp:127.0.0.1:{MetricsServerPort}", "--clients", "8", "--seconds", "0.5");
    }

    private void EnsureOperationsSupervisors()
    {
        if (_metricsSupervisor is { HasExited: true })
        {
            _errors.Add($"unsock-supervisor (OTLP exporter on) had exited (status {_metricsSupervisor.ExitCode}, not by this run); started it again");
            _metricsSupervisor.Dispose();
            StartMetricsSupervisor();
        }
        if (_restartHarness is { HasExited: true })
        {
            _errors.Add("fakesystemd.py had exited (not by this run); started it again");
            _restartHarness.Dispose();
            StartRestartSupervisor();
        }
    }

    private void StopOperationsSupervisors()
    {
        if (_metricsSupervisor is not null) ChildProcess.Stop(_metricsSupervisor);
        _restartHarness?.Dispose();
        _sink?.Dispose();
    }

    /// <summary>
    /// Scenario 9: short connections (1 client, 8 clients) through the service without and with the OTLP exporter,
    /// the order alternating by round; connections/s and the service's CPU per connection (its threads' run time,
    /// the exporter's among them). The sink's requests during the round show that the exporter exported.
    /// </summary>
    private void MetricsExport(int round)
    {
        long exportsBefore = _sink!.Requests;
        // Unrecorded, through both: the run's service has just served the other scenarios, the second one has idled
        // since the last round (the first run through an idle service costs it more than the ones that follow).
        RunBenchUnder(Launch.External, SupervisorSocket, "conn", $"tcp:127.0.0.1:{ExternalServerPort}", "--clients", "8", "--seconds", "0.3");
        RunBenchUnder(Launch.External, MetricsSocket, "conn", $"tcp:127.0.0.1:{MetricsServerPort}", "--clients", "8", "--seconds", "0.3");
        foreach (int clients in (int[])[1, 8])
            foreach (var (variant, socket, supervisor, port) in Rotate([(OtlpOff, SupervisorSocket, _supervisor!, ExternalServerPort), (OtlpOn, MetricsSocket, _metricsSupervisor!, MetricsServerPort)], round))
            {
                string address = $"tcp:127.0.0.1:{port}";
                string serverPid = File.ReadAllText(_serveServers[address].ReadyFile).Trim();
                var output = RunBenchUnder(Launch.External, socket, "conn", address, "--clients", $"{clients}", "--seconds", Invariant(MetricsSeconds),
                    "--cpu-of", $"server={serverPid},supervisor={supervisor.Id}");
                string metric = clients == 1 ? "otlp_conn_seq" : "otlp_conn_8";
                _m.Add(metric, variant, round, ChildProcess.Value(output, "conn_per_s"));
                _m.Add($"{metric}_supervisor_cpu_us", variant, round, ChildProcess.Value(output, "cpu_supervisor_us"));
            }
        _m.Add("otlp_exports", OtlpOn, round, _sink.Requests - exportsBefore);
    }

    /// <summary>
    /// Scenario 10: a graceful restart and a SIGKILL one (order alternating by round) of the service under
    /// fakesystemd.py, each while a client (a target of that service) connects to a redirected server in a loop:
    /// the harness's pause (signal to READY=1 of the next service), its parts, and the client's longest connection
    /// and failed ones.
    /// </summary>
    private void RestartPause(int round)
    {
        foreach (var kind in Rotate([Graceful, Killed], round))
        {
            string dir = Path.Combine(RestartDir, $"probe-{round}-{kind}");
            Directory.CreateDirectory(dir);
            string ready = Path.Combine(dir, "ready"), until = Path.Combine(dir, "until");
            var (file, args) = Command(Launch.External, o.Bench, ["probe", $"tcp:127.0.0.1:{RestartServerPort}", "--until", until, "--ready", ready], RestartSocket);
            using var probe = ChildProcess.Start(file, args, capture: true);
            var stdout = probe.StandardOutput.ReadToEndAsync();
            var stderr = probe.StandardError.ReadToEndAsync();
            SystemdHarness.Restart r;
            try
            {
                ChildProcess.WaitUntil(() => File.Exists(ready), "restart: the client's first connection", probe);
                Thread.Sleep(300); // the client in its stride
                r = _restartHarness!.RestartService(kill: kind == Killed);
                Thread.Sleep(300); // and connecting through the new service
            }
            finally
            {
                File.WriteAllText(until, "");
                if (!probe.WaitForExit(TimeSpan.FromSeconds(30))) probe.Kill(entireProcessTree: true);
                probe.WaitForExit();
            }
            if (probe.ExitCode != 0) throw new BenchIoException($"restart ({kind}): the client exited with status {probe.ExitCode}: {stderr.Result.Trim()}", 0);
            string output = stdout.Result;
            if (stderr.Result.Trim() is { Length: > 0 } errors) _errors.Add($"restart ({kind}), round {round + 1}: the client said: {errors.Replace('\n', ' ')}");
            _m.Add("restart_pause_ms", kind, round, r.PauseMs);
            _m.Add("restart_stopped_ms", kind, round, r.StoppedMs);
            _m.Add("restart_handover_ms", kind, round, r.HandoverMs);
            _m.Add("restart_host_ms", kind, round, r.HostStartMs);
            _m.Add("restart_service_ms", kind, round, r.ServiceStartMs);
            _m.Add("restart_ready_ms", kind, round, r.ReadyMs);
            _m.Add("restart_targets", kind, round, r.Targets);
            _m.Add("restart_start_cpu_ms", kind, round, r.StartCpuMs);
            _m.Add("restart_client_max_ms", kind, round, ChildProcess.Value(output, "max_us") / 1000);
            _m.Add("restart_client_failed", kind, round, ChildProcess.Value(output, "failed"));
            _m.Add("restart_client_conns", kind, round, ChildProcess.Value(output, "conns"));
            Directory.Delete(dir, recursive: true);
        }
        // The yardstick of the new service's first part: the runtime starts, Main prints the usage and returns; no host.
        var help = RunBench(Launch.None, "spawn", "--count", "5", "--", o.SupervisorBin, "--help");
        _m.Add("restart_runtime_ms", Help, round, ChildProcess.Value(help, "median_us") / 1000);
    }
}
