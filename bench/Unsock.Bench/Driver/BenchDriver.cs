using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Unsock.Bench.Driver;

/// <summary>
/// Runs every scenario for every variant in interleaved rounds (the order of the variants rotates from
/// round to round) and writes the markdown report. The servers and one supervisor service live for the
/// whole run; every client run is a fresh process, started under the launcher for the redirected variants
/// (embedded: the launcher supervises; external: the launcher hands over to the run's supervisor and execs).
/// </summary>
internal sealed partial class BenchDriver(DriverOptions o)
{
    public const string Tcp = "tcp", Unix = "unix", Embedded = "embedded", External = "external", Alone = "alone";
    /// <summary>Scenario 1's floor: the client under bench/reference/minisup (a minimal C supervisor), to the native AF_UNIX server.</summary>
    public const string Floor = "floor";

    /// <summary>Scenario 4's floor: the empty NativeAOT program (bench/Unsock.Bench.Empty).</summary>
    public const string EmptyAot = "empty-aot";

    /// <summary>How a program is started: as it is, under an embedded launcher, or by a launcher in front of the supervisor service.</summary>
    private enum Launch { None, Embedded, External }
    // Scenario 8's variants: the engine's states and phases, as engine-scale names them.
    public const string Engine = "engine", EngineAlone = "one-alone", EngineAmong = "one-among-n", EngineAll = "all-n";
    public static readonly string[] EngineStates = ["none", "idle1", "idle_n", "busy", "after"];
    private const int TcpServerPort = 19001, RedirectedServerPort = 19002, ExternalServerPort = 19003, TcpHoldPort = 19011, RedirectedHoldPort = 19012;
    private const int RedisPort = 16379, RedisRedirectedPort = 16380, RedisExternalPort = 16381;

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
    private string SupervisorSocket => Path.Combine(o.Work, "supervisor", "control.sock");
    private string? _redisServer, _redisBenchmark;
    private Process? _supervisor;

    /// <summary>Where a variant's clients connect, and how they (and their server) are started.</summary>
    private sealed record NetVariant(string Key, string Address, string HoldAddress, Launch Launch)
    {
        public bool Redirected => Launch != Launch.None;
    }

    // Both redirected variants hold their idle connections of scenario 7 on the same plain listener (RedirectedHoldPort).
    private NetVariant[] NetVariants =>
    [
        new(Tcp, $"tcp:127.0.0.1:{TcpServerPort}", $"tcp:127.0.0.1:{TcpHoldPort}", Launch.None),
        new(Unix, $"unix:{UnixServer}", $"unix:{Path.Combine(o.Work, "unix", "hold.sock")}", Launch.None),
        new(Embedded, $"tcp:127.0.0.1:{RedirectedServerPort}", $"tcp:127.0.0.1:{RedirectedHoldPort}", Launch.Embedded),
        new(External, $"tcp:127.0.0.1:{ExternalServerPort}", $"tcp:127.0.0.1:{RedirectedHoldPort}", Launch.External),
    ];

    private static string KeyOf(Launch l) => l switch { Launch.Embedded => Embedded, Launch.External => External, _ => Alone };

    public int Run()
    {
        var started = Stopwatch.GetTimestamp();
        Prepare();
        try
        {
            StartSupervisor();
            if (o.Runs("metrics")) StartMetricsSupervisor();
            if (o.Runs("restart")) StartRestartSupervisor();
            StartServers();
            WarmUp();
            for (int round = 0; round < o.Rounds; round++)
            {
                Progress($"round {round + 1}/{o.Rounds}");
                var order = Rotate(NetVariants, round);
                if (o.Runs("conn")) Measure("short connections", () => ShortConnections(order, round));
                if (o.Runs("pingpong")) Measure("ping-pong", () => PingPong(order, round));
                if (o.Runs("stream")) Measure("stream", () => Stream(order, round));
                if (o.Runs("startup")) Measure("start-up", () => StartUp(round));
                if (o.Runs("syscalls")) Measure("untrapped calls", () => Syscalls(round));
                if (o.Runs("redis") && _redisServer is not null) Measure("redis", () => Redis(order, round));
                if (o.Runs("scale")) Measure("scale", () => Scale(order, round));
                if (o.Runs("engine")) Measure("engine scale", () => EngineScale(round));
                if (_metricsSupervisor is not null) Measure("metrics export", () => MetricsExport(round));
                if (_restartHarness is not null) Measure("restart", () => RestartPause(round));
            }
        }
        finally
        {
            foreach (var s in _servers) ChildProcess.Stop(s.Process);
            if (_supervisor is not null) ChildProcess.Stop(_supervisor);
            StopOperationsSupervisors();
        }
        var elapsed = Stopwatch.GetElapsedTime(started);
        var report = new MarkdownReport(o, _m, _errors, elapsed, _redisServer is not null && o.Runs("redis"), Operations).Write();
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

    /// <summary>
    /// One supervisor service for the whole run, binding its own control socket in the work dir (no systemd), with
    /// an empty policy directory: the launchers send the run's policy file as text (inline), as a user would.
    /// </summary>
    private void StartSupervisor()
    {
        string dir = Path.GetDirectoryName(SupervisorSocket)!;
        Directory.CreateDirectory(Path.Combine(dir, "policies"));
        string config = Path.Combine(dir, "supervisor.json");
        File.WriteAllText(config, "{ }\n"); // not /etc/unsock/supervisor.json: the machine's settings stay out of the run
        _supervisor = ChildProcess.Start(o.SupervisorBin,
            ["--config", config, $"--Unsock:ControlSocket={SupervisorSocket}", $"--Unsock:PolicyDirectory={Path.Combine(dir, "policies")}",
             "--Logging:LogLevel:Default=Warning"], capture: false);
        ChildProcess.WaitUntil(() => ChildProcess.AcceptsSeqpacket(SupervisorSocket), "unsock-supervisor", _supervisor);
        Progress($"unsock-supervisor pid {_supervisor.Id} at {SupervisorSocket}");
    }

    /// <summary>
    /// A few seconds of every redirected path before the first round, not recorded, so that round 1 does not time
    /// what only the first connections of a path do (the service compiling the run's policy, its threads' first
    /// caches and page faults).
    /// </summary>
    private void WarmUp()
    {
        WarmUpOperations();
        foreach (var v in NetVariants.Where(v => v.Redirected))
        {
            RunBench(v.Launch, "conn", v.Address, "--clients", "8", "--seconds", "0.5");
            RunBench(v.Launch, "pingpong", v.Address, "--count", "2000");
            RunBench(v.Launch, "stream", v.Address, "--seconds", "0.2");
        }
    }

    private void StartServers()
    {
        StartBench(Launch.None, "serve", $"tcp:127.0.0.1:{TcpServerPort}");
        StartBench(Launch.None, "serve", $"unix:{UnixServer}");
        StartBench(Launch.Embedded, "serve", $"tcp:127.0.0.1:{RedirectedServerPort}");
        StartBench(Launch.External, "serve", $"tcp:127.0.0.1:{ExternalServerPort}");
        StartBench(Launch.None, "listen", $"tcp:127.0.0.1:{TcpHoldPort}");
        StartBench(Launch.None, "listen", $"unix:{Path.Combine(o.Work, "unix", "hold.sock")}");
        // The scale scenario's idle connections of the redirected variants land here without a second launcher.
        StartBench(Launch.None, "listen", $"unix:{Path.Combine(Socks, $"{RedirectedHoldPort}.sock")}");
        StartOperationsServers();
        if (_redisServer is null || !o.Runs("redis")) return;
        string[] common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning", "--dir", o.Work];
        _servers.Add(new("redis-server (native)", () =>
        {
            var p = ChildProcess.Start(_redisServer, [.. common, "--port", $"{RedisPort}", "--unixsocket", RedisSocket], capture: false);
            ChildProcess.WaitUntil(() => ChildProcess.Accepts(new IPEndPoint(IPAddress.Loopback, RedisPort)) && ChildProcess.Accepts(new UnixDomainSocketEndPoint(RedisSocket)), "redis-server (native)", p);
            return p;
        }));
        foreach (var (launch, port) in new[] { (Launch.Embedded, RedisRedirectedPort), (Launch.External, RedisExternalPort) })
        {
            string name = $"redis-server ({Describe(launch)})";
            _servers.Add(new(name, () =>
            {
                var (file, argv) = Command(launch, _redisServer, [.. common, "--port", $"{port}"]);
                var p = ChildProcess.Start(file, argv, capture: false);
                ChildProcess.WaitUntil(() => ChildProcess.Accepts(new UnixDomainSocketEndPoint(Path.Combine(Socks, $"{port}.sock"))), name, p);
                return p;
            }));
        }
    }

    private static string Describe(Launch l) => l switch
    {
        Launch.Embedded => "under the launcher",
        Launch.External => "under the launcher, external supervisor",
        _ => "native",
    };

    private void StartBench(Launch launch, params string[] args) => StartBenchUnder(launch, null, args);

    /// <summary>A server of the run; external, in front of <paramref name="supervisor"/> (by default the run's service).</summary>
    private void StartBenchUnder(Launch launch, string? supervisor, params string[] args)
    {
        string name = $"unsock-bench {string.Join(' ', args)}{(launch != Launch.None ? $" ({Describe(launch)}{(supervisor is null ? "" : $" {supervisor}")})" : "")}";
        string ready = Path.Combine(o.Work, $"ready.{_servers.Count}");
        var server = new Server(name, () =>
        {
            File.Delete(ready);
            var (file, argv) = Command(launch, o.Bench, [.. args, "--ready", ready], supervisor);
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
        if (_supervisor is { HasExited: true })
        {
            _errors.Add($"unsock-supervisor had exited (status {_supervisor.ExitCode}, not by this run); started it again, but programs it served before run without it");
            _supervisor.Dispose();
            StartSupervisor();
        }
        EnsureOperationsSupervisors();
        foreach (var s in _servers)
            if (s.Restart()) _errors.Add($"{s.Name} had exited (not by this run); restarted it");
    }

    /// <summary>The command line of <paramref name="file"/> started as <paramref name="launch"/> says (external: in front of <paramref name="supervisor"/>, by default the run's service).</summary>
    private (string File, string[] Args) Command(Launch launch, string file, string[] args, string? supervisor = null) => launch switch
    {
        Launch.Embedded => (o.Launcher, ["--policy", Policy, "--", file, .. args]),
        Launch.External => (o.Launcher, ["--supervisor", supervisor ?? SupervisorSocket, "--policy", Policy, "--", file, .. args]),
        _ => (file, args),
    };

    private string RunBench(Launch launch, params string[] args) => RunBenchUnder(launch, null, args);

    private string RunBenchUnder(Launch launch, string? supervisor, params string[] args)
    {
        var (file, argv) = Command(launch, o.Bench, args, supervisor);
        return ChildProcess.Run(file, argv);
    }

    private void ShortConnections(NetVariant[] order, int round)
    {
        foreach (int clients in (int[])[1, 8])
        {
            string metric = clients == 1 ? "conn_seq" : "conn_8";
            // The floor runs between the others, at a place that moves from round to round as theirs do.
            int floorAt = o.ReferenceSupervisor is null ? -1 : round % (order.Length + 1);
            for (int i = 0; i <= order.Length; i++)
            {
                if (i == floorAt) ShortConnectionsOfFloor(metric, clients, round);
                if (i == order.Length) break;
                var v = order[i];
                var output = RunBench(v.Launch, "conn", v.Address, "--clients", $"{clients}", "--seconds", Invariant(o.Seconds), "--cpu-of", CpuWatched(v));
                _m.Add(metric, v.Key, round, ChildProcess.Value(output, "conn_per_s"));
                // CPU per connection over the timed part: client, server and the supervision: embedded, both launchers;
                // external, the supervisor service (the launchers are gone: client and server run in their place).
                double client = ChildProcess.Value(output, "cpu_client_us"), server = ChildProcess.Value(output, "cpu_server_us");
                double supervisors = v.Launch switch
                {
                    Launch.Embedded => ChildProcess.Value(output, "cpu_supervisor_us") + ChildProcess.Value(output, "cpu_server_supervisor_us"),
                    Launch.External => ChildProcess.Value(output, "cpu_supervisor_us"),
                    _ => 0,
                };
                _m.Add($"{metric}_cpu_us", v.Key, round, client + server + supervisors);
                if (v.Redirected) _m.Add($"{metric}_supervisor_cpu_us", v.Key, round, supervisors);
            }
        }
    }

    /// <summary>
    /// The client under the minimal C supervisor, which swaps each of its connects to a TCP address for a connect to the
    /// native AF_UNIX server: what a seccomp swap costs at the least, on this machine, in this run.
    /// </summary>
    private void ShortConnectionsOfFloor(string metric, int clients, int round)
    {
        string serverPid = File.ReadAllText(_serveServers[$"unix:{UnixServer}"].ReadyFile).Trim();
        var output = ChildProcess.Run(o.ReferenceSupervisor!, [UnixServer, o.Bench, "conn", $"tcp:127.0.0.1:{TcpServerPort}", "--clients", $"{clients}",
            "--seconds", Invariant(o.Seconds), "--cpu-of", $"server={serverPid},supervisor=parent"]);
        _m.Add(metric, Floor, round, ChildProcess.Value(output, "conn_per_s"));
        double supervisor = ChildProcess.Value(output, "cpu_supervisor_us");
        _m.Add($"{metric}_cpu_us", Floor, round, ChildProcess.Value(output, "cpu_client_us") + ChildProcess.Value(output, "cpu_server_us") + supervisor);
        _m.Add($"{metric}_supervisor_cpu_us", Floor, round, supervisor);
    }

    /// <summary>
    /// --cpu-of for a client of <paramref name="v"/>: its server and the supervision: embedded, its own launcher and
    /// the server's; external, the supervisor service (whose threads also serve the run's idle targets, which make no calls meanwhile).
    /// </summary>
    private string CpuWatched(NetVariant v)
    {
        var (server, ready) = _serveServers[v.Address];
        string serverPid = File.ReadAllText(ready).Trim();
        return v.Launch switch
        {
            Launch.Embedded => $"server={serverPid},supervisor=parent,server_supervisor={server.Process.Id}",
            Launch.External => $"server={serverPid},supervisor={_supervisor!.Id}",
            _ => $"server={serverPid}",
        };
    }

    private void PingPong(NetVariant[] order, int round)
    {
        foreach (var v in order)
        {
            var output = RunBench(v.Launch, "pingpong", v.Address, "--count", $"{o.PingPongCount}");
            _m.Add("pp_median", v.Key, round, ChildProcess.Value(output, "median_us"));
            _m.Add("pp_p99", v.Key, round, ChildProcess.Value(output, "p99_us"));
        }
    }

    private void Stream(NetVariant[] order, int round)
    {
        foreach (var v in order)
        {
            var output = RunBench(v.Launch, "stream", v.Address, "--seconds", Invariant(o.Seconds));
            _m.Add("stream", v.Key, round, ChildProcess.Value(output, "gb_per_s"));
        }
    }

    private void StartUp(int round)
    {
        string truePath = FindOnPath("true") ?? "/bin/true";
        string[] alone = ["spawn", "--count", $"{o.SpawnCount}", "--", truePath];
        string[] launched = ["spawn", "--count", $"{o.SpawnCount}", "--", o.Launcher, "--policy", Policy, "--", truePath];
        string[] external = ["spawn", "--count", $"{o.SpawnCount}", "--", o.Launcher, "--supervisor", SupervisorSocket, "--policy", Policy, "--", truePath];
        (string, string[])[] commands = [(Alone, alone), (Embedded, launched), (External, external)];
        if (o.EmptyProgram is { } empty) commands = [.. commands, (EmptyAot, ["spawn", "--count", $"{o.SpawnCount}", "--", empty])];
        foreach (var (key, args) in Rotate(commands, round))
            _m.Add("startup_ms", key, round, ChildProcess.Value(RunBench(Launch.None, args), "median_us") / 1000);
    }

    private void Syscalls(int round)
    {
        foreach (var (op, count) in (ReadOnlySpan<(string, int)>)[("getpid", o.GetpidCount), ("pipe", o.PipeCount)])
            foreach (var launch in Rotate([Launch.None, Launch.Embedded, Launch.External], round))
            {
                var output = RunBench(launch, "syscalls", "--op", op, "--count", $"{count}");
                _m.Add($"sys_{op}", KeyOf(launch), round, ChildProcess.Value(output, "ns_per_op"));
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
                Embedded => ["-h", "127.0.0.1", "-p", $"{RedisRedirectedPort}"],
                _ => ["-h", "127.0.0.1", "-p", $"{RedisExternalPort}"],
            };
            var (file, args) = Command(v.Launch, _redisBenchmark!, [.. target, "-t", "set,get", "-n", $"{o.RedisRequests}", "-c", "50", "--csv"]);
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
        // Idle cost: the same supervisor with 1 and with N targets that made one connection each and hold it.
        foreach (var redirected in order.Where(v => v.Redirected))
        {
            var (_, idleOne, _) = Storm(redirected, round, targets: 1, conns: 1);
            var (_, idleN, _) = Storm(redirected, round, o.ScaleTargets, conns: 1);
            _m.Add("rss_idle_1", redirected.Key, round, idleOne);
            _m.Add("rss_idle_n", redirected.Key, round, idleN);
            _m.Add("rss_per_target", redirected.Key, round, (idleN - idleOne) / (o.ScaleTargets - 1));
        }
        foreach (var v in order)
        {
            var (rate, after, peak) = Storm(v, round, o.ScaleTargets, o.ScaleConnections);
            _m.Add("scale_rate", v.Key, round, rate);
            if (!v.Redirected) continue;
            _m.Add("rss_after_storm", v.Key, round, after);
            _m.Add("rss_peak_storm", v.Key, round, peak);
        }
        // Issue 11's yardstick: what the supervisor holds once 100k short connections have gone through it (--quick too).
        foreach (var redirected in order.Where(v => v.Redirected))
        {
            var (_, after, _) = Storm(redirected, round, ManyConnectionsTargets, ManyConnections / ManyConnectionsTargets);
            _m.Add("rss_after_many", redirected.Key, round, after);
        }
    }

    /// <summary>Scenario 7's long run: this many short connections, made by <see cref="ManyConnectionsTargets"/> targets at once.</summary>
    public const int ManyConnections = 100_000, ManyConnectionsTargets = 10;

    /// <summary>
    /// Scenario 8: unsock-bench engine-scale hosts one engine and attaches a listener per target; its key=value
    /// line holds each state's footprint and each phase's connections/s (see bench/README.md). Then the same
    /// against the run's supervisor service (metrics xs_*), each target under its own launcher; the order alternates.
    /// </summary>
    private void EngineScale(int round)
    {
        foreach (bool external in round % 2 == 0 ? [false, true] : new[] { true, false })
        {
            string work = Path.Combine(o.Work, $"engine-scale-{(external ? "external" : "embedded")}-{round}");
            string[] args = ["engine-scale", "--listeners", $"{o.EngineListeners}", "--seconds", Invariant(o.EngineSeconds), "--work", work];
            if (external) args = [.. args, "--supervisor", SupervisorSocket, "--supervisor-pid", $"{_supervisor!.Id}", "--launcher", o.Launcher];
            var output = ChildProcess.Run(o.Bench, args, TimeSpan.FromSeconds(300 + 0.2 * o.EngineListeners));
            string p = external ? "xs" : "es";
            foreach (var state in EngineStates)
            {
                _m.Add($"{p}_threads", state, round, ChildProcess.Value(output, $"{state}_threads"));
                _m.Add($"{p}_engine_threads", state, round, ChildProcess.Value(output, $"{state}_engine_threads"));
                _m.Add($"{p}_fds", state, round, ChildProcess.Value(output, $"{state}_fds"));
                _m.Add($"{p}_rss", state, round, ChildProcess.Value(output, $"{state}_rss_kb"));
                if (!external) _m.Add("es_heap", state, round, ChildProcess.Value(output, $"{state}_heap_kb"));
            }
            _m.Add($"{p}_rss_per_listener", Engine, round, ChildProcess.Value(output, "rss_per_listener_kb"));
            if (!external) _m.Add("es_heap_per_listener", Engine, round, ChildProcess.Value(output, "heap_per_listener_kb"));
            _m.Add($"{p}_conn", EngineAlone, round, ChildProcess.Value(output, "one_alone_conn_per_s"));
            _m.Add($"{p}_conn", EngineAmong, round, ChildProcess.Value(output, "one_among_n_conn_per_s"));
            _m.Add($"{p}_conn", EngineAll, round, ChildProcess.Value(output, "all_conn_per_s"));
        }
    }

    /// <summary>
    /// Scenario 7: one shell (under one launcher for the redirected variants) starts the targets as its
    /// children; they wait for a common start time, connect, then each hold one idle connection.
    /// Returns the aggregate connection rate and the supervisor's VmRSS with idle targets and VmHWM, in kB:
    /// embedded, the launcher's (it lives only for this storm); external, the supervisor service's, whose
    /// VmHWM is reset before the storm (clear_refs 5) and which also serves the run's servers meanwhile.
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
        if (v.Launch == Launch.External) ChildProcess.ResetPeak(_supervisor!.Id);
        var (file, args) = Command(v.Launch, "/bin/sh", ["-c", script, o.Bench]);
        using var shell = ChildProcess.Start(file, args, capture: false);
        int supervisorPid = v.Launch == Launch.External ? _supervisor!.Id : shell.Id;
        double idle = double.NaN, peak = double.NaN;
        try
        {
            ChildProcess.WaitUntil(() => Enumerable.Range(1, targets).All(i => Reported(Path.Combine(dir, $"{i}.out"))),
                $"scale ({v.Key}): {targets} targets reporting", shell, seconds: 60);
            if (v.Redirected)
            {
                Thread.Sleep(1500); // past the engine's 1 s sweep of closed sockets: idle means nothing left to clean
                idle = ChildProcess.StatusKb(supervisorPid, "VmRSS");
                peak = ChildProcess.StatusKb(supervisorPid, "VmHWM");
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
