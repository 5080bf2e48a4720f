using System.Globalization;
using System.Text;

namespace Unsock.Bench.Driver;

/// <summary>docs/benchmarks.md: the machine, medians per variant, ratios with their targets, and every round's raw values.</summary>
internal sealed partial class MarkdownReport(DriverOptions o, Measurements m, IReadOnlyList<string> errors, TimeSpan elapsed, bool redis, BenchDriver.OperationsFacts operations)
{
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
        _s.AppendLine("and whether they run under `unsock-launch` change. Redirected, embedded: each program under its own launcher,");
        _s.AppendLine("which supervises it. Redirected, external supervisor: each program under `unsock-launch --supervisor S`, which");
        _s.AppendLine("hands the program to one `unsock-supervisor` service started for the whole run (control socket in a temp dir,");
        _s.AppendLine("policy sent inline) and execs it in place; that service supervises every program of the column.").AppendLine();
        Machine();
        if (o.Only is not null) _s.AppendLine($"Only some scenarios ran (`--only {string.Join(',', o.Only.Order())}`).").AppendLine();
        if (o.Runs("conn")) ShortConnections();
        if (o.Runs("pingpong") || o.Runs("stream")) DataPath();
        if (o.Runs("startup")) StartUp();
        if (o.Runs("syscalls")) Untrapped();
        if (redis) Redis();
        if (o.Runs("scale")) Scale();
        if (o.Runs("engine")) EngineScale();
        if (operations.Metrics) MetricsExport();
        if (operations.Restart) Restart();
        else if (operations.RestartSkipped is { } why) _s.AppendLine($"Scenario 10 (restart) was left out: {why}.").AppendLine();
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
        _s.AppendLine("Connect, 1-byte request, 1-byte answer, close, for " + Seconds + " per run. Target: 1.1x native TCP loopback; below 0.9x is a defect.").AppendLine();
        NetHeader("target");
        NetRow("sequential, 1 client", "conn_seq", "F0", true, vsTcpTarget: 1.1, defect: 0.9);
        NetRow("8 concurrent clients", "conn_8", "F0", true, vsTcpTarget: 1.1, defect: 0.9);
        _s.AppendLine();
        _s.AppendLine("CPU per connection over the same runs (microseconds of CPU, lower is better; steadier than rates on a busy");
        _s.AppendLine("machine): client + server, plus the supervision: embedded, both launchers; external, the supervisor service's");
        _s.AppendLine("process (the launchers are gone: client and server run in their place). Supervisors are measured from their");
        _s.AppendLine("threads' run time in /proc/PID/task/*/schedstat. Ratios are speed ratios as above (baseline CPU / redirected CPU).").AppendLine();
        _s.AppendLine("| scenario | native TCP | native AF_UNIX | embedded (all) | of which launchers | external (all) | of which supervisor service | embedded vs TCP | embedded vs AF_UNIX | external vs TCP | external vs AF_UNIX |");
        _s.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var (label, key) in new[] { ("sequential, 1 client", "conn_seq_cpu_us"), ("8 concurrent clients", "conn_8_cpu_us") })
        {
            string supervisor = key.Replace("_cpu_us", "_supervisor_cpu_us", StringComparison.Ordinal);
            _s.AppendLine($"| {label} | {F(m.Median(key, BenchDriver.Tcp), "F1")} | {F(m.Median(key, BenchDriver.Unix), "F1")} | {F(m.Median(key, BenchDriver.Embedded), "F1")} | " +
                          $"{F(m.Median(supervisor, BenchDriver.Embedded), "F1")} | {F(m.Median(key, BenchDriver.External), "F1")} | {F(m.Median(supervisor, BenchDriver.External), "F1")} | " +
                          $"{Ratio(m.SpeedRatio(key, BenchDriver.Embedded, BenchDriver.Tcp, false))} | {Ratio(m.SpeedRatio(key, BenchDriver.Embedded, BenchDriver.Unix, false))} | " +
                          $"{Ratio(m.SpeedRatio(key, BenchDriver.External, BenchDriver.Tcp, false))} | {Ratio(m.SpeedRatio(key, BenchDriver.External, BenchDriver.Unix, false))} |");
        }
        _s.AppendLine();
        if (m.Values("conn_seq", BenchDriver.Floor).Length > 0) Floor();
    }

    /// <summary>Scenario 1 against the minimal C supervisor (bench/reference/minisup.c), measured in the same rounds.</summary>
    private void Floor()
    {
        _s.AppendLine("The floor: the same client under a minimal C seccomp supervisor (`bench/reference/minisup.c`, compiled by");
        _s.AppendLine("`bench/run.sh`), which traps connect only and swaps each one for an AF_UNIX connect to the native AF_UNIX server");
        _s.AppendLine("with the 9 syscalls a swap needs (poll, RECV, process_vm_readv, ID_VALID, socket, connect, ADDFD, close, SEND)");
        _s.AppendLine("and no policy, identity, option copies, epoll moves or stall protection. It ran in the same rounds, between the");
        _s.AppendLine("variants above. Its supervisor CPU is the C process's (client side only: its server is native); ours is both");
        _s.AppendLine("launchers (embedded) or the service (external). Target: supervisor CPU per connection within 1.2x of the floor's");
        _s.AppendLine("(a speed ratio of at least 0.83x).").AppendLine();
        _s.AppendLine("| scenario | floor: connections/s | floor vs TCP | floor: supervisor CPU (us) | embedded: launchers' CPU (us) | external: service CPU (us) | embedded vs floor | external vs floor | target |");
        _s.AppendLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var (label, key) in new[] { ("sequential, 1 client", "conn_seq"), ("8 concurrent clients", "conn_8") })
        {
            string cpu = key + "_supervisor_cpu_us";
            double e = m.SpeedRatio(cpu, BenchDriver.Embedded, BenchDriver.Floor, false), x = m.SpeedRatio(cpu, BenchDriver.External, BenchDriver.Floor, false);
            _s.AppendLine($"| {label} | {F(m.Median(key, BenchDriver.Floor), "F0")} | {Ratio(m.SpeedRatio(key, BenchDriver.Floor, BenchDriver.Tcp, true))} | " +
                          $"{F(m.Median(cpu, BenchDriver.Floor), "F1")} | {F(m.Median(cpu, BenchDriver.Embedded), "F1")} | {F(m.Median(cpu, BenchDriver.External), "F1")} | " +
                          $"{Ratio(e)} | {Ratio(x)} | >= 0.83x: embedded {Verdict(e >= 0.83)}, external {Verdict(x >= 0.83)} |");
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
        _s.AppendLine("policy, so it compiles and installs a real filter; with `--supervisor S` it registers with the service (policy");
        _s.AppendLine("sent inline), gets the compiled filter, installs it, hands over the listener and execs `/bin/true` in place.");
        _s.AppendLine("The empty NativeAOT program (`bench/Unsock.Bench.Empty`, `return args.Length;`, the launcher's runtime settings) is");
        _s.AppendLine("the floor: what any NativeAOT program adds before its first line of its own (loading, page faults, the runtime's");
        _s.AppendLine("start and exit); the launcher's own share is what it adds above that. Target (the issue's): at most 2.5 ms more");
        _s.AppendLine("than the command alone.").AppendLine();
        _s.AppendLine("| command | `/bin/true` alone | empty NativeAOT program | `unsock-launch --policy P -- /bin/true` (embedded) | `unsock-launch --supervisor S --policy P -- /bin/true` (external) | floor minus alone | embedded minus alone | external minus alone | target |");
        _s.AppendLine("|---|---|---|---|---|---|---|---|---|");
        double floor = m.Difference("startup_ms", BenchDriver.EmptyAot, BenchDriver.Alone);
        double diff = m.Difference("startup_ms", BenchDriver.Embedded, BenchDriver.Alone);
        double diffX = m.Difference("startup_ms", BenchDriver.External, BenchDriver.Alone);
        _s.AppendLine($"| start-up (ms) | {F(m.Median("startup_ms", BenchDriver.Alone), "F2")} | {F(m.Median("startup_ms", BenchDriver.EmptyAot), "F2")} | " +
                      $"{F(m.Median("startup_ms", BenchDriver.Embedded), "F2")} | {F(m.Median("startup_ms", BenchDriver.External), "F2")} | " +
                      $"{F(floor, "F2")} ms | {F(diff, "F2")} ms | {F(diffX, "F2")} ms | <= 2.5 ms: embedded {Verdict(diff <= 2.5)}, external {Verdict(diffX <= 2.5)} |");
        _s.AppendLine();
    }

    private void Untrapped()
    {
        _s.AppendLine("## 5. Calls that are not trapped (ns per operation, lower is better)").AppendLine();
        _s.AppendLine("A tight loop in one process, without and with the launcher's filter installed (the redirecting policy: the");
        _s.AppendLine("filter checks every syscall and lets these through; external: the filter the supervisor service compiled).");
        _s.AppendLine("pipe = write 1 byte + read 1 byte. Target: at least 0.98x.").AppendLine();
        _s.AppendLine("| loop | without filter | embedded filter | external supervisor's filter | embedded vs without | external vs without | target |");
        _s.AppendLine("|---|---|---|---|---|---|---|");
        foreach (var (label, key) in new[] { ("getpid()", "sys_getpid"), ("pipe write+read", "sys_pipe") })
        {
            double r = m.SpeedRatio(key, BenchDriver.Embedded, BenchDriver.Alone, higherIsBetter: false);
            double x = m.SpeedRatio(key, BenchDriver.External, BenchDriver.Alone, higherIsBetter: false);
            _s.AppendLine($"| {label} | {F(m.Median(key, BenchDriver.Alone), "F1")} | {F(m.Median(key, BenchDriver.Embedded), "F1")} | {F(m.Median(key, BenchDriver.External), "F1")} | " +
                          $"{Ratio(r)} | {Ratio(x)} | >= 0.98x: embedded {Verdict(r >= 0.98)}, external {Verdict(x >= 0.98)} |");
        }
        _s.AppendLine();
    }

    private void Redis()
    {
        _s.AppendLine("## 6. redis-server and redis-benchmark (requests/s, higher is better)").AppendLine();
        _s.AppendLine($"`redis-benchmark -t set,get -n {o.RedisRequests} -c 50` against redis-server over TCP loopback (`-h 127.0.0.1`), its Unix");
        _s.AppendLine("socket (`-s`), and TCP redirected (both programs under their own launcher, embedded or in front of the supervisor");
        _s.AppendLine("service). Target: at least 0.97x native AF_UNIX.").AppendLine();
        NetHeader("target");
        NetRow("SET", "redis_set", "F0", true, vsUnixTarget: 0.97);
        NetRow("GET", "redis_get", "F0", true, vsUnixTarget: 0.97);
        _s.AppendLine();
    }

    private void Scale()
    {
        _s.AppendLine("## 7. Scale: many targets under one supervisor").AppendLine();
        _s.AppendLine($"One shell starts {o.ScaleTargets} client processes as its children (for the redirected variants the shell runs under one");
        _s.AppendLine($"launcher: all share its supervisor). They wait for a common start time, make {o.ScaleConnections} short connections each,");
        _s.AppendLine("then each holds one connection open and idles. Rate = all connections / (last end - first start).");
        _s.AppendLine("Supervisor memory is VmRSS (idle, 1.5 s after the last target reported) and VmHWM (peak) from /proc of the");
        _s.AppendLine("embedded launcher, or of the supervisor service (whose VmHWM is reset before the storm with clear_refs, and which");
        _s.AppendLine("serves the run's redirected servers too: its absolute figures include them). Idle cost: the supervisor with 1 and");
        _s.AppendLine("with all targets that made one connection each and hold it; per target = (VmRSS with all - VmRSS with one) / (targets - 1).");
        _s.AppendLine($"After 100k: {BenchDriver.ManyConnectionsTargets} targets make {BenchDriver.ManyConnections / BenchDriver.ManyConnectionsTargets:N0} short connections each (--quick too), then hold one and idle;");
        _s.AppendLine("VmRSS 1.5 s after the last reported. Both are NativeAOT; the service collects its garbage when its GC decides (no");
        _s.AppendLine("forced collection), so its differences are noisier than the launcher's, which serves fewer programs.").AppendLine();
        NetHeader("target");
        NetRow($"aggregate connections/s, {o.ScaleTargets} targets", "scale_rate", "F0", true, vsTcpTarget: 1.1, defect: 0.9);
        _s.AppendLine();
        _s.AppendLine("| supervisor memory | embedded | external supervisor | target |").AppendLine("|---|---|---|---|");
        double idle1 = m.Median("rss_idle_1", BenchDriver.Embedded), idle1X = m.Median("rss_idle_1", BenchDriver.External);
        double perTarget = m.Median("rss_per_target", BenchDriver.Embedded), perTargetX = m.Median("rss_per_target", BenchDriver.External);
        _s.AppendLine($"| VmRSS idle, 1 target (1 connection made, 1 held) | {Mb(idle1)} | {Mb(idle1X)} | |");
        _s.AppendLine($"| VmRSS idle, {o.ScaleTargets} targets (1 connection made, 1 held, each) | {Mb(m.Median("rss_idle_n", BenchDriver.Embedded))} | {Mb(m.Median("rss_idle_n", BenchDriver.External))} | |");
        _s.AppendLine($"| per additional idle target | {F(perTarget, "F1")} KB | {F(perTargetX, "F1")} KB | < {IdleTargetKb} KB: embedded {Verdict(perTarget < IdleTargetKb)}, external {ServiceVerdict(perTargetX, IdleTargetKb)} |");
        _s.AppendLine($"| VmHWM (peak) of the {o.ScaleTargets}-target storm above | {Mb(m.Median("rss_peak_storm", BenchDriver.Embedded))} | {Mb(m.Median("rss_peak_storm", BenchDriver.External))} | |");
        _s.AppendLine($"| VmRSS after that storm, targets idle | {Mb(m.Median("rss_after_storm", BenchDriver.Embedded))} | {Mb(m.Median("rss_after_storm", BenchDriver.External))} | |");
        double many = m.Median("rss_after_many", BenchDriver.Embedded), manyX = m.Median("rss_after_many", BenchDriver.External);
        _s.AppendLine($"| VmRSS after 100k short connections, targets idle | {Mb(many)} | {Mb(manyX)} | < {AfterManyMb} MB: embedded {Verdict(many < AfterManyMb * 1024)}, external {Verdict(manyX < AfterManyMb * 1024)} |");
        _s.AppendLine();
    }

    private void EngineScale()
    {
        int n = o.EngineListeners;
        string secs = o.EngineSeconds.ToString(CultureInfo.InvariantCulture);
        _s.AppendLine($"## 8. Engine scale: {n} targets, one engine (in the bench process, and in the supervisor service)").AppendLine();
        _s.AppendLine($"`unsock-bench engine-scale --listeners {n} --seconds {secs}`: the bench process hosts one `NotificationEngine` (default options) and");
        _s.AppendLine($"starts {n} target processes, each with its own filter and its own listener attached to that engine. Each target");
        _s.AppendLine("binds a redirected listener on 127.0.0.1:PORT (a port of its own), makes one connection to it and holds it, then idles.");
        _s.AppendLine($"External supervisor: the same with `--supervisor S --supervisor-pid PID --launcher L`: each of the {n} targets starts under");
        _s.AppendLine("`unsock-launch --supervisor S`, which registers with the run's supervisor service (policy inline), hands it the listener and");
        _s.AppendLine("execs the target in place; the service's engine (default options) attaches them all, and its process is measured.");
        _s.AppendLine("Threads, fds and VmRSS are the engine process's, from /proc, 1.5 s after the last change (past the engine's 1 s sweep) and,");
        _s.AppendLine("in the bench process, full GCs (the service collects when its GC decides; its managed heap is not visible from outside).");
        _s.AppendLine("\"Of the engine\" counts its notification threads, poller and sweeper. Its fds include one listener per target and");
        _s.AppendLine("the notification threads' caches of pidfds and /proc files (bounded per thread). The service's first row is before");
        _s.AppendLine("this scenario's targets: it already serves the run's redirected servers (and has its control socket, threads and host).");
        _s.AppendLine("During the phase of all targets the largest values sampled every 100 ms are shown (there the managed heap includes");
        _s.AppendLine("garbage not yet collected).").AppendLine();
        _s.AppendLine("| engine process | bench process: threads (of the engine) | fds | VmRSS | managed heap | supervisor service: threads (of the engine) | fds | VmRSS |");
        _s.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var (state, label) in new[]
        {
            ("none", "engine started, nothing attached (service: before these targets)"),
            ("idle1", "1 idle listener, after its phase alone below"),
            ("idle_n", $"{n} idle listeners"),
            ("busy", $"while all {n} targets make connections (largest)"),
            ("after", $"{n} idle listeners, after that"),
        })
            _s.AppendLine($"| {label} | {F(m.Median("es_threads", state), "F0")} ({F(m.Median("es_engine_threads", state), "F0")}) | {F(m.Median("es_fds", state), "F0")} | " +
                          $"{Mb(m.Median("es_rss", state))} | {Mb(m.Median("es_heap", state))} | " +
                          $"{F(m.Median("xs_threads", state), "F0")} ({F(m.Median("xs_engine_threads", state), "F0")}) | {F(m.Median("xs_fds", state), "F0")} | {Mb(m.Median("xs_rss", state))} |");
        double perListener = m.Median("es_rss_per_listener", BenchDriver.Engine);
        double perListenerX = m.Median("xs_rss_per_listener", BenchDriver.Engine);
        _s.AppendLine().AppendLine($"VmRSS per additional idle listener, ({n} idle - 1 idle) / {n - 1}: bench process **{F(perListener, "F1")} KB** (target < 64 KB: {Verdict(perListener < 64)}),");
        _s.AppendLine($"supervisor service **{F(perListenerX, "F1")} KB** (target < 64 KB: {ServiceVerdict(perListenerX, 64)});");
        _s.AppendLine($"managed heap per additional idle listener in the bench process (live objects after a full GC, which VmRSS may hide in heap already committed): {F(m.Median("es_heap_per_listener", BenchDriver.Engine), "F1")} KB.").AppendLine();
        _s.AppendLine($"Short connections (connect, 1-byte request, 1-byte answer, close) of targets to their own listeners for {secs} s;");
        _s.AppendLine("every connect is a notification of that target's listener. Rate = all connections / (last end - first start).").AppendLine();
        _s.AppendLine("| connections/s | engine in the bench process | vs one target alone | supervisor service | vs one target alone |").AppendLine("|---|---|---|---|---|");
        _s.AppendLine($"| one target, the only one attached | {F(m.Median("es_conn", BenchDriver.EngineAlone), "F0")} | | {F(m.Median("xs_conn", BenchDriver.EngineAlone), "F0")} | |");
        _s.AppendLine($"| one target, {n - 1} others attached and idle | {F(m.Median("es_conn", BenchDriver.EngineAmong), "F0")} | {Ratio(m.SpeedRatio("es_conn", BenchDriver.EngineAmong, BenchDriver.EngineAlone, true))} | " +
                      $"{F(m.Median("xs_conn", BenchDriver.EngineAmong), "F0")} | {Ratio(m.SpeedRatio("xs_conn", BenchDriver.EngineAmong, BenchDriver.EngineAlone, true))} |");
        _s.AppendLine($"| all {n} targets at once (aggregate) | {F(m.Median("es_conn", BenchDriver.EngineAll), "F0")} | {Ratio(m.SpeedRatio("es_conn", BenchDriver.EngineAll, BenchDriver.EngineAlone, true))} | " +
                      $"{F(m.Median("xs_conn", BenchDriver.EngineAll), "F0")} | {Ratio(m.SpeedRatio("xs_conn", BenchDriver.EngineAll, BenchDriver.EngineAlone, true))} |");
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
        _s.AppendLine("| scenario | native TCP | native AF_UNIX | redirected, embedded | redirected, external supervisor | embedded vs TCP | embedded vs AF_UNIX | " +
                      $"external vs TCP | external vs AF_UNIX | {last} |");
        _s.AppendLine("|---|---|---|---|---|---|---|---|---|---|");
    }

    private void NetRow(string label, string key, string format, bool higherIsBetter, double? vsTcpTarget = null, double? vsUnixTarget = null, double? defect = null)
    {
        double vsTcp = m.SpeedRatio(key, BenchDriver.Embedded, BenchDriver.Tcp, higherIsBetter);
        double vsUnix = m.SpeedRatio(key, BenchDriver.Embedded, BenchDriver.Unix, higherIsBetter);
        double xTcp = m.SpeedRatio(key, BenchDriver.External, BenchDriver.Tcp, higherIsBetter);
        double xUnix = m.SpeedRatio(key, BenchDriver.External, BenchDriver.Unix, higherIsBetter);
        string target = "";
        if (vsTcpTarget is { } t)
        {
            string Of(double r) => r >= t * 0.98 ? Verdict(true) : defect is { } d && r < d ? $"**defect** (below {d:F1}x)" : Verdict(false);
            target = $"{t:F2}x TCP: embedded {Of(vsTcp)}, external {Of(xTcp)}";
        }
        else if (vsUnixTarget is { } u)
            target = $">= {u:F2}x AF_UNIX: embedded {Verdict(vsUnix >= u)}, external {Verdict(xUnix >= u)}";
        _s.AppendLine($"| {label} | {F(m.Median(key, BenchDriver.Tcp), format)} | {F(m.Median(key, BenchDriver.Unix), format)} | " +
                      $"{F(m.Median(key, BenchDriver.Embedded), format)} | {F(m.Median(key, BenchDriver.External), format)} | {Ratio(vsTcp)} | {Ratio(vsUnix)} | " +
                      $"{Ratio(xTcp)} | {Ratio(xUnix)} | {target} |");
    }

    private string Seconds => $"{o.Seconds.ToString(CultureInfo.InvariantCulture)} s";

    private static string Verdict(bool met) => met ? "met" : "**missed**";

    // Issue 11's targets for a supervisor's memory: per additional idle target, and all of it after 100k short connections.
    private const int IdleTargetKb = 16, AfterManyMb = 10;

    /// <summary>A difference of the service's VmRSS: below zero its GC freed more between the readings than the targets added.</summary>
    private static string ServiceVerdict(double perTargetKb, double limitKb) =>
        perTargetKb < 0 ? "not measured (below zero: the service's GC ran between the readings)" : Verdict(perTargetKb < limitKb);
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
