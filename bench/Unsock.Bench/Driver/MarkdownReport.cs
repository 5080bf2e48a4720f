using System.Globalization;
using System.Text;

namespace Unsock.Bench.Driver;

/// <summary>docs/benchmarks.md: the machine, medians per variant, ratios with their targets, and every round's raw values.</summary>
internal sealed class MarkdownReport(DriverOptions o, Measurements m, IReadOnlyList<string> errors, TimeSpan elapsed, bool redis)
{
    private const string External = "not landed";
    private readonly StringBuilder _s = new();

    public string Write()
    {
        _s.AppendLine("# Benchmarks").AppendLine();
        _s.AppendLine("Written by `bash bench/run.sh` (do not edit by hand; run it again). Every number is the median over");
        _s.AppendLine($"{o.Rounds} rounds; in each round every variant ran once, in an order that rotates from round to round.");
        _s.AppendLine("Ratios are computed per round and their median is shown, so slow drift of a noisy machine cancels out.");
        _s.AppendLine("A ratio is a speed ratio: above 1.00x the redirected variant is faster than the baseline, below slower");
        _s.AppendLine("(for times and latencies it is baseline time / redirected time). The load generator and the server are");
        _s.AppendLine("the same binaries (`unsock-bench`, `redis-server`, `redis-benchmark`) in every variant; only the addresses");
        _s.AppendLine("and whether they run under `unsock-launch` change. The external supervisor has not landed yet: its column");
        _s.AppendLine("says so.").AppendLine();
        Machine();
        ShortConnections();
        DataPath();
        StartUp();
        Untrapped();
        if (redis) Redis();
        Scale();
        EngineScale();
        Raw();
        if (errors.Count > 0)
        {
            _s.AppendLine("## Errors during the run").AppendLine();
            foreach (var e in errors) _s.AppendLine($"- {e}");
            _s.AppendLine();
        }
        return _s.ToString();
    }

    private void Machine()
    {
        _s.AppendLine("| machine | |").AppendLine("|---|---|");
        _s.AppendLine($"| date | {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC |");
        _s.AppendLine($"| cores (nproc) | {Environment.ProcessorCount} |");
        _s.AppendLine($"| CPU | {CpuModel()} |");
        _s.AppendLine($"| kernel | {File.ReadAllText("/proc/sys/kernel/osrelease").Trim()} |");
        _s.AppendLine($"| .NET | SDK {DotnetVersion()}, runtime {Environment.Version} |");
        if (o.Commit is not null) _s.AppendLine($"| commit | {o.Commit} |");
        _s.AppendLine($"| rounds | {o.Rounds}, whole run {elapsed.TotalMinutes:F1} min |");
        _s.AppendLine();
    }

    private void ShortConnections()
    {
        _s.AppendLine("## 1. Short connections (connections/s, higher is better)").AppendLine();
        _s.AppendLine("Connect, 1-byte request, 1-byte answer, close, for " + Seconds + " per run. Target: 1.0x native TCP loopback; below 0.9x is a defect.").AppendLine();
        NetHeader("target");
        NetRow("sequential, 1 client", "conn_seq", "F0", true, vsTcpTarget: 1.0, defect: 0.9);
        NetRow("8 concurrent clients", "conn_8", "F0", true, vsTcpTarget: 1.0, defect: 0.9);
        _s.AppendLine();
        _s.AppendLine("CPU per connection over the same runs (microseconds of CPU, lower is better; steadier than rates on a busy");
        _s.AppendLine("machine): client + server, plus for the redirected variant both launchers (the supervisors, measured from their");
        _s.AppendLine("threads' run time in /proc/PID/task/*/schedstat). Ratios are speed ratios as above (baseline CPU / redirected CPU).").AppendLine();
        _s.AppendLine("| scenario | native TCP | native AF_UNIX | redirected, embedded (all) | of which supervisors | external supervisor | embedded vs TCP | embedded vs AF_UNIX |");
        _s.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var (label, key) in new[] { ("sequential, 1 client", "conn_seq_cpu_us"), ("8 concurrent clients", "conn_8_cpu_us") })
        {
            string supervisor = key.Replace("_cpu_us", "_supervisor_cpu_us", StringComparison.Ordinal);
            _s.AppendLine($"| {label} | {F(m.Median(key, BenchDriver.Tcp), "F1")} | {F(m.Median(key, BenchDriver.Unix), "F1")} | {F(m.Median(key, BenchDriver.Embedded), "F1")} | " +
                          $"{F(m.Median(supervisor, BenchDriver.Embedded), "F1")} | {External} | {Ratio(m.SpeedRatio(key, BenchDriver.Embedded, BenchDriver.Tcp, false))} | " +
                          $"{Ratio(m.SpeedRatio(key, BenchDriver.Embedded, BenchDriver.Unix, false))} |");
        }
        _s.AppendLine();
    }

    private void DataPath()
    {
        _s.AppendLine("## 2, 3. Data path on one long-lived connection").AppendLine();
        _s.AppendLine($"Ping-pong: {o.PingPongCount} timed 1-byte round trips (microseconds, lower is better). Stream: 64 KiB writes for {Seconds}, until the");
        _s.AppendLine("server has read everything (GB/s = 10^9 bytes/s, higher is better). Target: at least 0.97x native AF_UNIX.").AppendLine();
        NetHeader("target");
        NetRow("ping-pong median (us)", "pp_median", "F2", false, vsUnixTarget: 0.97);
        NetRow("ping-pong p99 (us)", "pp_p99", "F2", false, vsUnixTarget: 0.97);
        NetRow("stream, 64 KiB writes (GB/s)", "stream", "F2", true, vsUnixTarget: 0.97);
        _s.AppendLine();
    }

    private void StartUp()
    {
        _s.AppendLine("## 4. Launcher start-up").AppendLine();
        _s.AppendLine($"posix_spawn to waitpid, median of {o.SpawnCount} runs per round (ms). The launcher runs with the redirecting");
        _s.AppendLine("policy, so it compiles and installs a real filter. Target: under 10 ms more than the command alone.").AppendLine();
        _s.AppendLine("| command | `/bin/true` alone | `unsock-launch --policy P -- /bin/true` (embedded) | external supervisor | embedded minus alone | target |");
        _s.AppendLine("|---|---|---|---|---|---|");
        double diff = m.Difference("startup_ms", BenchDriver.Embedded, BenchDriver.Alone);
        _s.AppendLine($"| start-up (ms) | {F(m.Median("startup_ms", BenchDriver.Alone), "F2")} | {F(m.Median("startup_ms", BenchDriver.Embedded), "F2")} | {External} | {F(diff, "F2")} ms | < 10 ms: {Verdict(diff < 10)} |");
        _s.AppendLine();
    }

    private void Untrapped()
    {
        _s.AppendLine("## 5. Calls that are not trapped (ns per operation, lower is better)").AppendLine();
        _s.AppendLine("A tight loop in one process, without and with the launcher's filter installed (the redirecting policy: the");
        _s.AppendLine("filter checks every syscall and lets these through). pipe = write 1 byte + read 1 byte. Target: at least 0.98x.").AppendLine();
        _s.AppendLine("| loop | without filter | embedded filter | external supervisor | speed vs without | target |");
        _s.AppendLine("|---|---|---|---|---|---|");
        foreach (var (label, key) in new[] { ("getpid()", "sys_getpid"), ("pipe write+read", "sys_pipe") })
        {
            double r = m.SpeedRatio(key, BenchDriver.Embedded, BenchDriver.Alone, higherIsBetter: false);
            _s.AppendLine($"| {label} | {F(m.Median(key, BenchDriver.Alone), "F1")} | {F(m.Median(key, BenchDriver.Embedded), "F1")} | {External} | {Ratio(r)} | >= 0.98x: {Verdict(r >= 0.98)} |");
        }
        _s.AppendLine();
    }

    private void Redis()
    {
        _s.AppendLine("## 6. redis-server and redis-benchmark (requests/s, higher is better)").AppendLine();
        _s.AppendLine($"`redis-benchmark -t set,get -n {o.RedisRequests} -c 50` against redis-server over TCP loopback (`-h 127.0.0.1`), its Unix");
        _s.AppendLine("socket (`-s`), and TCP redirected (both programs under their own launcher). Target: at least 0.97x native AF_UNIX.").AppendLine();
        NetHeader("target");
        NetRow("SET", "redis_set", "F0", true, vsUnixTarget: 0.97);
        NetRow("GET", "redis_get", "F0", true, vsUnixTarget: 0.97);
        _s.AppendLine();
    }

    private void Scale()
    {
        _s.AppendLine("## 7. Scale: many targets under one supervisor").AppendLine();
        _s.AppendLine($"One shell starts {o.ScaleTargets} client processes as its children (for the embedded variant the shell runs under one");
        _s.AppendLine($"launcher: all share its supervisor). They wait for a common start time, make {o.ScaleConnections} short connections each,");
        _s.AppendLine("then each holds one connection open and idles. Rate = all connections / (last end - first start).");
        _s.AppendLine("Supervisor memory is the launcher's VmRSS (idle, 1.5 s after the last target reported) and VmHWM (peak) from");
        _s.AppendLine("/proc. Idle cost: the launcher with 1 and with all targets that made one connection each and hold it;");
        _s.AppendLine("per target = (VmRSS with all - VmRSS with one) / (targets - 1).").AppendLine();
        NetHeader("target");
        NetRow($"aggregate connections/s, {o.ScaleTargets} targets", "scale_rate", "F0", true, vsTcpTarget: 1.0, defect: 0.9);
        _s.AppendLine();
        _s.AppendLine("| supervisor memory | embedded | external supervisor | target |").AppendLine("|---|---|---|---|");
        double idle1 = m.Median("rss_idle_1", BenchDriver.Embedded);
        double perTarget = m.Median("rss_per_target", BenchDriver.Embedded);
        _s.AppendLine($"| VmRSS idle, 1 target (1 connection made, 1 held) | {Mb(idle1)} | {External} | < 40 MB: {Verdict(idle1 < 40 * 1024)} |");
        _s.AppendLine($"| VmRSS idle, {o.ScaleTargets} targets (1 connection made, 1 held, each) | {Mb(m.Median("rss_idle_n", BenchDriver.Embedded))} | {External} | |");
        _s.AppendLine($"| per additional idle target | {F(perTarget, "F1")} KB | {External} | < 64 KB: {Verdict(perTarget < 64)} |");
        _s.AppendLine($"| VmHWM (peak) of the {o.ScaleTargets}-target storm above | {Mb(m.Median("rss_peak_storm", BenchDriver.Embedded))} | {External} | |");
        _s.AppendLine($"| VmRSS after that storm, targets idle | {Mb(m.Median("rss_after_storm", BenchDriver.Embedded))} | {External} | |");
        _s.AppendLine();
    }

    private void EngineScale()
    {
        int n = o.EngineListeners;
        _s.AppendLine($"## 8. Engine scale: {n} listeners, one engine").AppendLine();
        _s.AppendLine($"`unsock-bench engine-scale --listeners {n} --seconds {o.EngineSeconds.ToString(CultureInfo.InvariantCulture)}`: the bench process hosts one `NotificationEngine` (default options) and");
        _s.AppendLine($"starts {n} target processes, each with its own filter and its own listener attached to that engine. Each target");
        _s.AppendLine("binds a redirected listener on 127.0.0.1:PORT (a port of its own), makes one connection to it and holds it, then idles.");
        _s.AppendLine("Threads, fds and VmRSS are the engine process's, from /proc, 1.5 s after the last change (past the engine's 1 s sweep) and full GCs;");
        _s.AppendLine("\"of the engine\" counts its notification threads, poller and sweeper. Its fds include one listener per target and");
        _s.AppendLine("the notification threads' caches of pidfds and /proc files (bounded per thread). During the phase of all targets the");
        _s.AppendLine("largest values sampled every 100 ms are shown (there the managed heap includes garbage not yet collected).").AppendLine();
        _s.AppendLine("| engine process | threads (of the engine) | fds | VmRSS | managed heap | external supervisor |").AppendLine("|---|---|---|---|---|---|");
        foreach (var (state, label) in new[]
        {
            ("none", "engine started, nothing attached"),
            ("idle1", "1 idle listener, after its phase alone below"),
            ("idle_n", $"{n} idle listeners"),
            ("busy", $"while all {n} targets make connections (largest)"),
            ("after", $"{n} idle listeners, after that"),
        })
            _s.AppendLine($"| {label} | {F(m.Median("es_threads", state), "F0")} ({F(m.Median("es_engine_threads", state), "F0")}) | {F(m.Median("es_fds", state), "F0")} | {Mb(m.Median("es_rss", state))} | {Mb(m.Median("es_heap", state))} | {External} |");
        double perListener = m.Median("es_rss_per_listener", BenchDriver.Engine);
        _s.AppendLine().AppendLine($"VmRSS per additional idle listener, ({n} idle - 1 idle) / {n - 1}: **{F(perListener, "F1")} KB** (target < 64 KB: {Verdict(perListener < 64)});");
        _s.AppendLine($"managed heap per additional idle listener (live objects after a full GC, which VmRSS may hide in heap already committed): {F(m.Median("es_heap_per_listener", BenchDriver.Engine), "F1")} KB.").AppendLine();
        _s.AppendLine($"Short connections (connect, 1-byte request, 1-byte answer, close) of targets to their own listeners for {o.EngineSeconds.ToString(CultureInfo.InvariantCulture)} s;");
        _s.AppendLine("every connect is a notification of that target's listener. Rate = all connections / (last end - first start).").AppendLine();
        _s.AppendLine("| connections/s | engine in the bench process | external supervisor | vs one target alone |").AppendLine("|---|---|---|---|");
        _s.AppendLine($"| one target, the only one attached | {F(m.Median("es_conn", BenchDriver.EngineAlone), "F0")} | {External} | |");
        _s.AppendLine($"| one target, {n - 1} others attached and idle | {F(m.Median("es_conn", BenchDriver.EngineAmong), "F0")} | {External} | {Ratio(m.SpeedRatio("es_conn", BenchDriver.EngineAmong, BenchDriver.EngineAlone, true))} |");
        _s.AppendLine($"| all {n} targets at once (aggregate) | {F(m.Median("es_conn", BenchDriver.EngineAll), "F0")} | {External} | {Ratio(m.SpeedRatio("es_conn", BenchDriver.EngineAll, BenchDriver.EngineAlone, true))} |");
        _s.AppendLine();
    }

    private void Raw()
    {
        _s.AppendLine("## Every round").AppendLine();
        _s.Append("| metric | variant |");
        for (int r = 1; r <= o.Rounds; r++) _s.Append($" {r} |");
        _s.AppendLine().Append("|---|---|");
        for (int r = 1; r <= o.Rounds; r++) _s.Append("---|");
        _s.AppendLine();
        foreach (var (metric, variant, values) in m.All())
            _s.AppendLine($"| {metric} | {variant} | {string.Join(" | ", values.Select(v => F(v, Math.Abs(v) >= 100 ? "F0" : "F2")))} |");
        _s.AppendLine();
    }

    private void NetHeader(string last)
    {
        _s.AppendLine($"| scenario | native TCP | native AF_UNIX | redirected, embedded | redirected, external supervisor | embedded vs TCP | embedded vs AF_UNIX | {last} |");
        _s.AppendLine("|---|---|---|---|---|---|---|---|");
    }

    private void NetRow(string label, string key, string format, bool higherIsBetter, double? vsTcpTarget = null, double? vsUnixTarget = null, double? defect = null)
    {
        double vsTcp = m.SpeedRatio(key, BenchDriver.Embedded, BenchDriver.Tcp, higherIsBetter);
        double vsUnix = m.SpeedRatio(key, BenchDriver.Embedded, BenchDriver.Unix, higherIsBetter);
        string target = "";
        if (vsTcpTarget is { } t)
            target = $"{t:F2}x TCP: {(vsTcp >= t * 0.98 ? Verdict(true) : defect is { } d && vsTcp < d ? "**defect** (below 0.9x)" : Verdict(false))}";
        else if (vsUnixTarget is { } u)
            target = $">= {u:F2}x AF_UNIX: {Verdict(vsUnix >= u)}";
        _s.AppendLine($"| {label} | {F(m.Median(key, BenchDriver.Tcp), format)} | {F(m.Median(key, BenchDriver.Unix), format)} | " +
                      $"{F(m.Median(key, BenchDriver.Embedded), format)} | {External} | {Ratio(vsTcp)} | {Ratio(vsUnix)} | {target} |");
    }

    private string Seconds => $"{o.Seconds.ToString(CultureInfo.InvariantCulture)} s";

    private static string Verdict(bool met) => met ? "met" : "**missed**";
    private static string Ratio(double r) => double.IsNaN(r) ? "n/a" : $"{r:F2}x";
    private static string F(double v, string format) => double.IsNaN(v) ? "n/a" : v.ToString(format, CultureInfo.InvariantCulture);
    private static string Mb(double kb) => double.IsNaN(kb) ? "n/a" : $"{kb / 1024:F1} MB";

    private static string CpuModel()
    {
        foreach (var line in File.ReadLines("/proc/cpuinfo"))
            if (line.StartsWith("model name", StringComparison.Ordinal)) return line[(line.IndexOf(':') + 1)..].Trim();
        return "unknown";
    }

    private static string DotnetVersion()
    {
        try
        {
            string? dotnet = BenchDriver.FindOnPath("dotnet");
            return dotnet is null ? "unknown" : ChildProcess.Run(dotnet, ["--version"]).Trim();
        }
        catch (Exception e) when (e is BenchIoException or System.ComponentModel.Win32Exception) { return "unknown"; }
    }
}
