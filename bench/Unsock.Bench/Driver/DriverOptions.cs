namespace Unsock.Bench.Driver;

/// <summary>What one run of the driver measures, and how long it may take.</summary>
internal sealed record DriverOptions(
    string Bench, string Launcher, string SupervisorBin, string Output, string Work, int Rounds, string? Commit,
    double Seconds, int PingPongCount, int SpawnCount, int GetpidCount, int PipeCount,
    int RedisRequests, int ScaleTargets, int ScaleConnections, int EngineListeners, double EngineSeconds,
    string? FakeSystemd, IReadOnlySet<string>? Only, string? ReferenceSupervisor = null, string? EmptyProgram = null)
{
    /// <summary>The scenarios' names for --only.</summary>
    public static readonly string[] Scenarios = ["conn", "pingpong", "stream", "startup", "syscalls", "redis", "scale", "engine", "metrics", "restart"];

    /// <summary>Whether this run measures <paramref name="scenario"/> (every one unless --only names some).</summary>
    public bool Runs(string scenario) => Only is null || Only.Contains(scenario);

    public static DriverOptions From(Options o)
    {
        string launcher = Path.GetFullPath(o.Text("--launcher") ?? throw new BenchUsageException("drive needs --launcher PATH (the published unsock-launch)"));
        if (!File.Exists(launcher)) throw new BenchUsageException($"--launcher {launcher}: no such file");
        string supervisor = Path.GetFullPath(o.Text("--supervisor-bin") ?? throw new BenchUsageException("drive needs --supervisor-bin PATH (the published unsock-supervisor)"));
        if (!File.Exists(supervisor)) throw new BenchUsageException($"--supervisor-bin {supervisor}: no such file");
        string output = Path.GetFullPath(o.Text("--out") ?? throw new BenchUsageException("drive needs --out FILE (the markdown report)"));
        string bench = Environment.ProcessPath ?? throw new BenchUsageException("cannot tell the path of unsock-bench itself");
        string work = Path.GetFullPath(o.Text("--work") ?? "/tmp/unsock-bench");
        bool quick = o.Flag("--quick");
        string? fakeSystemd = o.Text("--fakesystemd") is { } f ? Path.GetFullPath(f) : null;
        if (fakeSystemd is not null && !File.Exists(fakeSystemd)) throw new BenchUsageException($"--fakesystemd {fakeSystemd}: no such file");
        string? reference = o.Text("--reference-supervisor") is { } r ? Path.GetFullPath(r) : null;
        if (reference is not null && !File.Exists(reference)) throw new BenchUsageException($"--reference-supervisor {reference}: no such file");
        // Scenario 4's floor (bench/Unsock.Bench.Empty); without it that column says n/a.
        string? empty = o.Text("--empty-bin") is { } e ? Path.GetFullPath(e) : null;
        if (empty is not null && !File.Exists(empty)) throw new BenchUsageException($"--empty-bin {empty}: no such file");
        HashSet<string>? only = null;
        if (o.Text("--only") is { } names)
        {
            only = names.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet(StringComparer.Ordinal);
            if (only.FirstOrDefault(n => !Scenarios.Contains(n)) is { } unknown)
                throw new BenchUsageException($"--only {unknown}: the scenarios are {string.Join(", ", Scenarios)}");
        }
        return new DriverOptions(bench, launcher, supervisor, output, work,
            Rounds: o.Int("--rounds", quick ? 1 : 5),
            Commit: o.Text("--commit"),
            Seconds: quick ? 0.3 : 1.0,
            PingPongCount: quick ? 5_000 : 20_000,
            SpawnCount: quick ? 5 : 20,
            GetpidCount: quick ? 500_000 : 3_000_000,
            PipeCount: quick ? 100_000 : 500_000,
            RedisRequests: quick ? 20_000 : 100_000,
            ScaleTargets: o.Int("--targets", quick ? 20 : 100),
            ScaleConnections: quick ? 20 : 100,
            EngineListeners: o.Int("--listeners", quick ? 100 : 1000),
            EngineSeconds: quick ? 1.0 : 2.0,
            FakeSystemd: fakeSystemd,
            Only: only,
            ReferenceSupervisor: reference,
            EmptyProgram: empty);
    }
}
