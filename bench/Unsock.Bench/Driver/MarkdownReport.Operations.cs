namespace Unsock.Bench.Driver;

/// <summary>The report's sections of scenarios 9 (the cost of exporting metrics) and 10 (the restart pause).</summary>
internal sealed partial class MarkdownReport
{
    private void MetricsExport()
    {
        string secs = operations.MetricsSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        _s.AppendLine("## 9. Cost of metrics: the supervisor service with the OTLP exporter off and on").AppendLine();
        _s.AppendLine($"Short connections as in 1 ({secs} s per run), client and server under `unsock-launch --supervisor S`, through two services: the");
        _s.AppendLine("run's (no OTEL_* variables: exporter off) and a second one started with `OTEL_EXPORTER_OTLP_ENDPOINT=" + operations.SinkEndpoint + "`,");
        _s.AppendLine("`OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`, `OTEL_METRIC_EXPORT_INTERVAL=1000` (an export every second), exporting to a sink");
        _s.AppendLine("in the driver that answers 200 to every request; each serves its own redirected `unsock-bench serve`. Each round runs");
        _s.AppendLine("both, the order swapping from round to round, after an unrecorded 0.3 s through each (the second service idles between");
        _s.AppendLine("rounds, the run's serves the other scenarios). Supervisor CPU per connection is the service's threads' run time");
        _s.AppendLine("(/proc/PID/task/*/schedstat, the exporter's thread among them) over the timed part / connections. On vs off is the");
        _s.AppendLine("median of the per-round ratios (a speed ratio: below 1.00x the exporter costs). The spread is (largest - smallest) /");
        _s.AppendLine("median of the off column over the rounds: how much the same measurement moves from round to round. Goal: on vs off");
        _s.AppendLine("within that noise.").AppendLine();
        _s.AppendLine("| scenario | exporter off | exporter on | on vs off | off: spread over rounds | goal: within noise |");
        _s.AppendLine("|---|---|---|---|---|---|");
        foreach (var (label, key, format, higherIsBetter) in new[]
        {
            ("connections/s, sequential, 1 client", "otlp_conn_seq", "F0", true),
            ("connections/s, 8 concurrent clients", "otlp_conn_8", "F0", true),
            ("supervisor CPU per connection (us), 1 client", "otlp_conn_seq_supervisor_cpu_us", "F1", false),
            ("supervisor CPU per connection (us), 8 clients", "otlp_conn_8_supervisor_cpu_us", "F1", false),
        })
        {
            double ratio = m.SpeedRatio(key, BenchDriver.OtlpOn, BenchDriver.OtlpOff, higherIsBetter);
            double spread = Spread(m.Values(key, BenchDriver.OtlpOff));
            string verdict = double.IsNaN(spread) || double.IsNaN(ratio) ? "not judged (needs 2 rounds or more)"
                : Math.Abs(ratio - 1) <= spread ? "met" : $"**missed** ({Math.Abs(ratio - 1) * 100:F0}% off, noise {spread * 100:F0}%)";
            _s.AppendLine($"| {label} | {F(m.Median(key, BenchDriver.OtlpOff), format)} | {F(m.Median(key, BenchDriver.OtlpOn), format)} | {Ratio(ratio)} | " +
                          $"{(double.IsNaN(spread) ? "n/a (1 round)" : $"{spread * 100:F0}%")} | {verdict} |");
        }
        _s.AppendLine();
        _s.AppendLine($"The exporter exported: the sink received {operations.Exports} requests ({operations.ExportBytes / 1024.0:F1} KiB of bodies) over the run" +
                      $"{(operations.ExportPaths.Length > 0 ? $" ({operations.ExportPaths})" : "")}, {F(m.Median("otlp_exports", BenchDriver.OtlpOn), "F0")} during a round's runs (median).");
        _s.AppendLine();
    }

    private void Restart()
    {
        _s.AppendLine("## 10. Restart pause: the supervisor service restarted under a client that connects in a loop").AppendLine();
        _s.AppendLine("A third service runs under `tests/Unsock.Tests/Programs/fakesystemd.py`, which plays systemd: the fd store (the targets'");
        _s.AppendLine("listeners survive the service), NOTIFY_SOCKET, LISTEN_FDS, and `--Unsock:StateDirectory`. One redirected `unsock-bench serve`");
        _s.AppendLine("runs under it, and for each restart a client under `unsock-launch --supervisor S` (`unsock-bench probe`) makes short");
        _s.AppendLine("connections one after another (connect, 1-byte request, 1-byte answer, close), each timed, from 0.3 s before the signal");
        _s.AppendLine("to 0.3 s after READY=1; a failed connection is counted and the loop goes on. Graceful: SIGTERM to the service (it hands its");
        _s.AppendLine("targets over and exits), SIGKILL: the service is killed. Either way the harness starts the next one with the stored fds.");
        _s.AppendLine("The pause is the harness's (from the signal to READY=1 of the next service); its parts come from the lines the harness");
        _s.AppendLine("and the service print, stamped (the service's log lines carry their time, in ms): the old service reaped, the new one's");
        _s.AppendLine("first step (\"targets are kept across restarts\", at the start of its hosted service: before it the .NET runtime starts");
        _s.AppendLine("and the host is built), \"Application started\" (targets taken back, control socket served), READY=1 seen by the harness.");
        _s.AppendLine("Calls made during the pause wait in the kernel until the next service answers them. Goal: no failed connection; a failed");
        _s.AppendLine("one is listed under the errors below with when it failed and how long it had waited (about the pause: it waited through");
        _s.AppendLine("the restart).").AppendLine();
        _s.AppendLine("| restart | graceful (SIGTERM) | SIGKILL |").AppendLine("|---|---|---|");
        string Row(string key, string format) => $"{F(m.Median(key, BenchDriver.Graceful), format)} | {F(m.Median(key, BenchDriver.Killed), format)}";
        _s.AppendLine($"| **pause**: signal to READY=1 of the next service (ms) | {Row("restart_pause_ms", "F0")} |");
        _s.AppendLine($"| signal to the old service reaped (ms) | {Row("restart_stopped_ms", "F0")} |");
        _s.AppendLine($"| of which the handover, as the old service logged it (ms) | {F(m.Median("restart_handover_ms", BenchDriver.Graceful), "F0")} | (none) |");
        _s.AppendLine($"| reaped to the new service's first step: .NET start, host built (ms) | {Row("restart_host_ms", "F0")} |");
        _s.AppendLine($"| first step to \"Application started\": targets taken back (ms) | {Row("restart_service_ms", "F0")} |");
        _s.AppendLine($"| \"Application started\" to READY=1 at the harness (ms) | {Row("restart_ready_ms", "F0")} |");
        _s.AppendLine($"| CPU time of the new service up to READY=1, all threads (ms; /proc/PID/stat, 10 ms steps) | {Row("restart_start_cpu_ms", "F0")} |");
        _s.AppendLine($"| targets in the fd store at the new start | {Row("restart_targets", "F0")} |");
        _s.AppendLine($"| client: longest connection, connect to answer (ms) | {Row("restart_client_max_ms", "F0")} |");
        _s.AppendLine($"| client: connections made | {Row("restart_client_conns", "F0")} |");
        double failedG = m.Values("restart_client_failed", BenchDriver.Graceful).Where(v => !double.IsNaN(v)).Sum();
        double failedK = m.Values("restart_client_failed", BenchDriver.Killed).Where(v => !double.IsNaN(v)).Sum();
        _s.AppendLine($"| client: failed connections, all rounds (goal: 0) | {failedG:F0} ({Verdict(failedG == 0)}) | {failedK:F0} ({Verdict(failedK == 0)}) |");
        _s.AppendLine();
        foreach (var (kind, label) in new[] { (BenchDriver.Graceful, "graceful"), (BenchDriver.Killed, "SIGKILL") })
        {
            double pause = m.Median("restart_pause_ms", kind);
            var parts = new[]
            {
                ("stopping the old service", m.Median("restart_stopped_ms", kind)),
                ("the .NET start of the new one up to its first step (runtime, host, configuration)", m.Median("restart_host_ms", kind)),
                ("the new service's start (targets taken back)", m.Median("restart_service_ms", kind)),
                ("READY=1 reaching the harness", m.Median("restart_ready_ms", kind)),
            }.Where(p => !double.IsNaN(p.Item2)).OrderByDescending(p => p.Item2).ToArray();
            if (parts.Length == 0 || double.IsNaN(pause)) continue;
            _s.AppendLine($"{char.ToUpperInvariant(label[0])}{label[1..]} restart: of the {pause:F0} ms pause, the largest part is {parts[0].Item1} ({parts[0].Item2:F0} ms, {parts[0].Item2 / pause * 100:F0}%).");
        }
        double runtime = m.Median("restart_runtime_ms", BenchDriver.Help);
        if (!double.IsNaN(runtime))
            _s.AppendLine().AppendLine($"For comparison, `unsock-supervisor --help` (the .NET runtime starts, Main prints the usage and returns, no host is built) " +
                $"takes {runtime:F0} ms from spawn to exit (median of 5 per round): of the new service's start up to its first step, about that much is the " +
                "runtime's own start; the rest builds the host (configuration, logging, dependency injection, options, OpenTelemetry).");
        _s.AppendLine();
    }

    /// <summary>(largest - smallest) / median over the rounds; NaN with fewer than 2 values.</summary>
    private static double Spread(double[] values)
    {
        var v = values.Where(x => !double.IsNaN(x)).ToArray();
        return v.Length < 2 ? double.NaN : (v.Max() - v.Min()) / Measurements.MedianOf(v);
    }
}
