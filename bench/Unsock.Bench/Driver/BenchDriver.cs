using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Unsock.Bench.Driver;

/// <summary>
/// Runs every scenario for every variant in interleaved rounds (the order of the variants rotates from
/// round to round) and writes the markdown report. The servers live for the whole run; every client
/// run is a fresh process, started under the launcher for the redirected variant.
/// </summary>
internal sealed class BenchDriver(DriverOptions o)
{
    public const string Tcp = "tcp", Unix = "unix", Embedded = "embedded", Alone = "alone";
    // Scenario 8's variants: the engine's states and phases, as engine-scale names them.
    public const string Engine = "engine", EngineAlone = "one-alone", EngineAmong = "one-among-n", EngineAll = "all-n";
    public static readonly string[] EngineStates = ["none", "idle1", "idle_n", "busy", "after"];
    private const int TcpServerPort = 19001, RedirectedServerPort = 19002, TcpHoldPort = 19011, RedirectedHoldPort = 19012;
    private const int RedisPort = 16379, RedisRedirectedPort = 16380;

    private readonly Measurements _m = new(o.Rounds);
    private readonly List<string> _errors = new();
    private readonly List<Server> _servers = new();
    // The ready file of each address's server holds the server's pid (its CPU is reported per connection).
    private readonly Dictionary<string, (Server Server, string ReadyFile)> _serveServers = new();

    /// <summary>A long-lived server of the run and how to start it again if something ended it.</summary>
    private sealed class Server(string name, Func<Process> start)
    {
        public string Name { get; } = name;
        public Process Process { get; private set; } = start();
        public bool Restart()
        {
            if (!Process.HasExited) return false;
            Process.Dispose();
            Process = start();
            return true;
        }
    }
    private string Policy => Path.Combine(o.Work, "policy.json");
    private string Socks => Path.Combine(o.Work, "socks");
    private string UnixServer => Path.Combine(o.Work, "unix", "bench.sock");
    private string RedisSocket => Path.Combine(o.Work, "unix", "redis.sock");
    private string? _redisServer, _redisBenchmark;

    /// <summary>Where a variant's clients connect, and whether they (and their server) run under the launcher.</summary>
    private sealed record NetVariant(string Key, string Address, string HoldAddress, bool Redirected);

    private NetVariant[] NetVariants =>
    [
        new(Tcp, $"tcp:127.0.0.1:{TcpServerPort}", $"tcp:127.0.0.1:{TcpHoldPort}", false),
        new(Unix, $"unix:{UnixServer}", $"unix:{Path.Combine(o.Work, "unix", "hold.sock")}", false),
        new(Embedded, $"tcp:127.0.0.1:{RedirectedServerPort}", $"tcp:127.0.0.1:{RedirectedHoldPort}", true),
    ];

    public int Run()
    {
        var started = Stopwatch.GetTimestamp();
        Prepare();
        try
        {
            StartServers();
            for (int round = 0; round < o.Rounds; round++)
            {
                Progress($"round {round + 1}/{o.Rounds}");
                var order = Rotate(NetVariants, round);
                Measure("short connections", () => ShortConnections(order, round));
                Measure("ping-pong", () => PingPong(order, round));
                Measure("stream", () => Stream(order, round));
                Measure("start-up", () => StartUp(round));
                Measure("untrapped calls", () => Syscalls(round));
                if (_redisServer is not null) Measure("redis", () => Redis(order, round));
                Measure("scale", () => Scale(order, round));
                Measure("engine scale", () => EngineScale(round));
            }
        }
        finally
        {
            foreach (var s in _servers) ChildProcess.Stop(s.Process);
        }
        var elapsed = Stopwatch.GetElapsedTime(started);
        var report = new MarkdownReport(o, _m, _errors, elapsed, _redisServer is not null).Write();
        Directory.CreateDirectory(Path.GetDirectoryName(o.Output)!);
        File.WriteAllText(o.Output, report);
        Console.Out.Write(report);
        Progress($"wrote {o.Output} after {elapsed.TotalSeconds:F0} s");
        return 0;
    }

    private void Prepare()
    {
        if (Directory.Exists(o.Work)) Directory.Delete(o.Work, recursive: true);
        Directory.CreateDirectory(Path.Combine(o.Work, "unix"));
        Directory.CreateDirectory(Socks);
        File.WriteAllText(Policy, $$"""{ "rules": [ { "address": "127.0.0.0/8", "directory": "{{Socks}}" } ] }""" + "\n");
        _redisServer = FindOnPath("redis-server");
        _redisBenchmark = FindOnPath("redis-benchmark");
        if (_redisBenchmark is null) _redisServer = null;
    }

    private void StartServers()
    {
        StartBench(false, "serve", $"tcp:127.0.0.1:{TcpServerPort}");
        StartBench(false, "serve", $"unix:{UnixServer}");
        StartBench(true, "serve", $"tcp:127.0.0.1:{RedirectedServerPort}");
        StartBench(false, "listen", $"tcp:127.0.0.1:{TcpHoldPort}");
        StartBench(false, "listen", $"unix:{Path.Combine(o.Work, "unix", "hold.sock")}");
        // The scale scenario's idle connections of the redirected variant land here without a second launcher.
        StartBench(false, "listen", $"unix:{Path.Combine(Socks, $"{RedirectedHoldPort}.sock")}");
        if (_redisServer is null) return;
        string[] common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning", "--dir", o.Work];
        _servers.Add(new("redis-server (native)", () =>
        {
            var p = ChildProcess.Start(_redisServer, [.. common, "--port", $"{RedisPort}", "--unixsocket", RedisSocket], capture: false);
            ChildProcess.WaitUntil(() => ChildProcess.Accepts(new IPEndPoint(IPAddress.Loopback, RedisPort)) && ChildProcess.Accepts(new UnixDomainSocketEndPoint(RedisSocket)), "redis-server (native)", p);
            return p;
        }));
        _servers.Add(new("redis-server (under the launcher)", () =>
        {
            var p = ChildProcess.Start(o.Launcher, ["--policy", Policy, "--", _redisServer, .. common, "--port", $"{RedisRedirectedPort}"], capture: false);
            ChildProcess.WaitUntil(() => ChildProcess.Accepts(new UnixDomainSocketEndPoint(Path.Combine(Socks, $"{RedisRedirectedPort}.sock"))), "redis-server (under the launcher)", p);
            return p;
        }));
    }

    private void StartBench(bool redirected, params string[] args)
    {
        string name = $"unsock-bench {string.Join(' ', args)}{(redirected ? " (under the launcher)" : "")}";
        string ready = Path.Combine(o.Work, $"ready.{_servers.Count}");
        var server = new Server(name, () =>
        {
            File.Delete(ready);
            var (file, argv) = Command(redirected, o.Bench, [.. args, "--ready", ready]);
            var p = ChildProcess.Start(file, argv, capture: false);
            ChildProcess.WaitUntil(() => File.Exists(ready), name, p);
            return p;
        });
        _servers.Add(server);
        if (args[0] == "serve") _serveServers[args[1]] = (server, ready);
    }

    /// <summary>Something outside the run may end a server (a shared machine): start it again, and say so in the report.</summary>
    private void EnsureServers()
    {
        foreach (var s in _servers)
            if (s.Restart()) _errors.Add($"{s.Name} had exited (not by this run); restarted it");
    }

    private (string File, string[] Args) Command(bool underLauncher, string file, string[] args) =>
        underLauncher ? (o.Launcher, ["--policy", Policy, "--", file, .. args]) : (file, args);

    private string RunBench(bool underLauncher, params string[] args)
    {
        var (file, argv) = Command(underLauncher, o.Bench, args);
        return ChildProcess.Run(file, argv);
    }

    private void ShortConnections(NetVariant[] order, int round)
    {
        foreach (int clients in (int[])[1, 8])
            foreach (var v in order)
            {
                string metric = clients == 1 ? "conn_seq" : "conn_8";
                var output = RunBench(v.Redirected, "conn", v.Address, "--clients", $"{clients}", "--seconds", Invariant(o.Seconds), "--cpu-of", CpuWatched(v));
                _m.Add(metric, v.Key, round, ChildProcess.Value(output, "conn_per_s"));
                // CPU per connection over the timed part: client, server and, redirected, both launchers (the supervisors).
                double client = ChildProcess.Value(output, "cpu_client_us"), server = ChildProcess.Value(output, "cpu_server_us");
                double supervisors = v.Redirected ? ChildProcess.Value(output, "cpu_supervisor_us") + ChildProcess.Value(output, "cpu_server_supervisor_us") : 0;
                _m.Add($"{metric}_cpu_us", v.Key, round, client + server + supervisors);
                if (v.Redirected) _m.Add($"{metric}_supervisor_cpu_us", v.Key, round, supervisors);
            }
    }

    /// <summary>--cpu-of for a client of <paramref name="v"/>: its server and, redirected, its own launcher and the server's.</summary>
    private string CpuWatched(NetVariant v)
    {
        var (server, ready) = _serveServers[v.Address];
        string serverPid = File.ReadAllText(ready).Trim();
        return v.Redirected ? $"server={serverPid},supervisor=parent,server_supervisor={server.Process.Id}" : $"server={serverPid}";
    }

    private void PingPong(NetVariant[] order, int round)
    {
        foreach (var v in order)
        {
            var output = RunBench(v.Redirected, "pingpong", v.Address, "--count", $"{o.PingPongCount}");
            _m.Add("pp_median", v.Key, round, ChildProcess.Value(output, "median_us"));
            _m.Add("pp_p99", v.Key, round, ChildProcess.Value(output, "p99_us"));
        }
    }

    private void Stream(NetVariant[] order, int round)
    {
        foreach (var v in order)
        {
            var output = RunBench(v.Redirected, "stream", v.Address, "--seconds", Invariant(o.Seconds));
            _m.Add("stream", v.Key, round, ChildProcess.Value(output, "gb_per_s"));
        }
    }

    private void StartUp(int round)
    {
        string truePath = FindOnPath("true") ?? "/bin/true";
        string[] alone = ["spawn", "--count", $"{o.SpawnCount}", "--", truePath];
        string[] launched = ["spawn", "--count", $"{o.SpawnCount}", "--", o.Launcher, "--policy", Policy, "--", truePath];
        foreach (var (key, args) in round % 2 == 0 ? [(Alone, alone), (Embedded, launched)] : new[] { (Embedded, launched), (Alone, alone) })
            _m.Add("startup_ms", key, round, ChildProcess.Value(RunBench(false, args), "median_us") / 1000);
    }

    private void Syscalls(int round)
    {
        foreach (var (op, count) in (ReadOnlySpan<(string, int)>)[("getpid", o.GetpidCount), ("pipe", o.PipeCount)])
            foreach (bool filtered in round % 2 == 0 ? [false, true] : new[] { true, false })
            {
                var output = RunBench(filtered, "syscalls", "--op", op, "--count", $"{count}");
                _m.Add($"sys_{op}", filtered ? Embedded : Alone, round, ChildProcess.Value(output, "ns_per_op"));
            }
    }

    private void Redis(NetVariant[] order, int round)
    {
        foreach (var v in order)
        {
            string[] target = v.Key switch
            {
                Tcp => ["-h", "127.0.0.1", "-p", $"{RedisPort}"],
                Unix => ["-s", RedisSocket],
                _ => ["-h", "127.0.0.1", "-p", $"{RedisRedirectedPort}"],
            };
            var (file, args) = Command(v.Redirected, _redisBenchmark!, [.. target, "-t", "set,get", "-n", $"{o.RedisRequests}", "-c", "50", "--csv"]);
            var output = ChildProcess.Run(file, args);
            foreach (var line in output.Split('\n'))
            {
                var cells = line.Split(',').Select(c => c.Trim().Trim('"')).ToArray();
                if (cells.Length > 1 && cells[0] is "SET" or "GET")
                    _m.Add($"redis_{cells[0].ToLowerInvariant()}", v.Key, round, double.Parse(cells[1], CultureInfo.InvariantCulture));
            }
        }
    }

    private void Scale(NetVariant[] order, int round)
    {
        // Idle cost: the same launcher with 1 and with N targets that made one connection each and hold it.
        var embedded = NetVariants[2];
        var (_, idleOne, _) = Storm(embedded, round, targets: 1, conns: 1);
        var (_, idleN, _) = Storm(embedded, round, o.ScaleTargets, conns: 1);
        _m.Add("rss_idle_1", Embedded, round, idleOne);
        _m.Add("rss_idle_n", Embedded, round, idleN);
        _m.Add("rss_per_target", Embedded, round, (idleN - idleOne) / (o.ScaleTargets - 1));
        foreach (var v in order)
        {
            var (rate, after, peak) = Storm(v, round, o.ScaleTargets, o.ScaleConnections);
            _m.Add("scale_rate", v.Key, round, rate);
            if (!v.Redirected) continue;
            _m.Add("rss_after_storm", v.Key, round, after);
            _m.Add("rss_peak_storm", v.Key, round, peak);
        }
    }

    /// <summary>
    /// Scenario 8: unsock-bench engine-scale hosts one engine and attaches a listener per target; its key=value
    /// line holds each state's footprint and each phase's connections/s (see bench/README.md).
    /// </summary>
    private void EngineScale(int round)
    {
        string work = Path.Combine(o.Work, $"engine-scale-{round}");
        var output = ChildProcess.Run(o.Bench, ["engine-scale", "--listeners", $"{o.EngineListeners}", "--seconds", Invariant(o.EngineSeconds), "--work", work],
            TimeSpan.FromSeconds(300 + 0.2 * o.EngineListeners));
        foreach (var state in EngineStates)
        {
            _m.Add("es_threads", state, round, ChildProcess.Value(output, $"{state}_threads"));
            _m.Add("es_engine_threads", state, round, ChildProcess.Value(output, $"{state}_engine_threads"));
            _m.Add("es_fds", state, round, ChildProcess.Value(output, $"{state}_fds"));
            _m.Add("es_rss", state, round, ChildProcess.Value(output, $"{state}_rss_kb"));
            _m.Add("es_heap", state, round, ChildProcess.Value(output, $"{state}_heap_kb"));
        }
        _m.Add("es_rss_per_listener", Engine, round, ChildProcess.Value(output, "rss_per_listener_kb"));
        _m.Add("es_heap_per_listener", Engine, round, ChildProcess.Value(output, "heap_per_listener_kb"));
        _m.Add("es_conn", EngineAlone, round, ChildProcess.Value(output, "one_alone_conn_per_s"));
        _m.Add("es_conn", EngineAmong, round, ChildProcess.Value(output, "one_among_n_conn_per_s"));
        _m.Add("es_conn", EngineAll, round, ChildProcess.Value(output, "all_conn_per_s"));
    }

    /// <summary>
    /// Scenario 7: one shell (under one launcher for the redirected variant) starts the targets as its
    /// children; they wait for a common start time, connect, then each hold one idle connection.
    /// Returns the aggregate connection rate and the launcher's VmRSS with idle targets and VmHWM, in kB.
    /// </summary>
    private (double Rate, double IdleKb, double PeakKb) Storm(NetVariant v, int round, int targets, int conns)
    {
        string dir = Path.Combine(o.Work, $"storm-{v.Key}-{targets}-{conns}-{round}");
        Directory.CreateDirectory(dir);
        string release = Path.Combine(dir, "release");
        // Leave time for the shell to start every target (a few ms each on a small machine).
        long startAt = Stopwatch.GetTimestamp() + (long)((0.5 + targets * 0.02) * Stopwatch.Frequency);
        string script = $$"""
            i=0
            while [ $i -lt {{targets}} ]; do
              i=$((i+1))
              "$0" storm {{v.Address}} --conns {{conns}} --start-at {{startAt}} --hold {{v.HoldAddress}} --release {{release}} --max-hold 60 >{{dir}}/$i.out 2>{{dir}}/$i.err &
            done
            wait
            """;
        var (file, args) = Command(v.Redirected, "/bin/sh", ["-c", script, o.Bench]);
        using var shell = ChildProcess.Start(file, args, capture: false);
        double idle = double.NaN, peak = double.NaN;
        try
        {
            ChildProcess.WaitUntil(() => Enumerable.Range(1, targets).All(i => Reported(Path.Combine(dir, $"{i}.out"))),
                $"scale ({v.Key}): {targets} targets reporting", shell, seconds: 60);
            if (v.Redirected)
            {
                Thread.Sleep(1500); // past the engine's 1 s sweep of closed sockets: idle means nothing left to clean
                idle = ChildProcess.StatusKb(shell.Id, "VmRSS");
                peak = ChildProcess.StatusKb(shell.Id, "VmHWM");
            }
        }
        finally
        {
            File.WriteAllText(release, "");
            if (!shell.WaitForExit(TimeSpan.FromSeconds(30))) ChildProcess.Stop(shell);
        }
        long first = long.MaxValue, last = long.MinValue, total = 0;
        for (int i = 1; i <= targets; i++)
        {
            string output = File.ReadAllText(Path.Combine(dir, $"{i}.out"));
            first = Math.Min(first, (long)ChildProcess.Value(output, "start"));
            last = Math.Max(last, (long)ChildProcess.Value(output, "end"));
            total += (long)ChildProcess.Value(output, "conns");
        }
        Directory.Delete(dir, recursive: true);
        return (total / ((last - first) / (double)Stopwatch.Frequency), idle, peak);
    }

    private static bool Reported(string path)
    {
        try { return File.Exists(path) && File.ReadAllText(path).Contains("end=", StringComparison.Ordinal); }
        catch (IOException) { return false; }
    }

    /// <summary>Runs one scenario of a round; a failure is retried once (after restarting servers), then recorded.</summary>
    private void Measure(string scenario, Action run)
    {
        var t = Stopwatch.GetTimestamp();
        for (int attempt = 1; ; attempt++)
        {
            EnsureServers();
            try
            {
                run();
                break;
            }
            catch (BenchIoException e)
            {
                _errors.Add($"{scenario}, attempt {attempt}: {e.Message}");
                Progress($"  {scenario}: FAILED (attempt {attempt}): {e.Message}");
                if (attempt == 2) return;
            }
        }
        Progress($"  {scenario}: {Stopwatch.GetElapsedTime(t).TotalSeconds:F1} s");
    }

    private static T[] Rotate<T>(T[] items, int by) => items.Skip(by % items.Length).Concat(items.Take(by % items.Length)).ToArray();

    private static string Invariant(double d) => d.ToString(CultureInfo.InvariantCulture);

    private static void Progress(string text) => Console.Error.WriteLine($"unsock-bench: {text}");

    internal static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);
}
