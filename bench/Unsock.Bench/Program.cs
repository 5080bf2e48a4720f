using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Unsock.Bench.Driver;

[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

namespace Unsock.Bench;

internal static class Program
{
    private const string Usage = """
        usage: unsock-bench MODE [options]
          serve ADDR [--threads 16] [--ready FILE]      the server of scenarios 1-3 and 7
          listen ADDR [--ready FILE]                    listens, never accepts (idle connections of scenario 7)
          conn ADDR [--clients 1] [--seconds 1] [--cpu-of LABEL=PID|parent,...]
                                                        short connections per second, CPU per connection
          probe ADDR --until FILE [--ready FILE] [--max-seconds 120]
                                                        short connections one after another until FILE exists:
                                                        the longest one (connect to answer) and how many failed
          pingpong ADDR [--count 20000]                 1-byte round trips: median and p99 in microseconds
          stream ADDR [--seconds 1] [--chunk 65536]     one-connection throughput in GB/s
          storm ADDR --conns N --start-at TICKS [--hold ADDR] [--release FILE] [--max-hold 60]
          syscalls --op getpid|pipe [--count 2000000]   ns per call that is not trapped
          spawn [--count 20] -- /ABS/COMMAND ARGS...    start-up time of a command
          engine-scale [--listeners 1000] [--seconds 2] [--work DIR]
                       [--supervisor SOCKET --supervisor-pid PID --launcher PATH]
                                                        one engine in this process (or the supervisor service's),
                                                        N targets each with its own listener
          engine-target --index I --port P --report FD --parent FD --phase FILE
                                                        one target of engine-scale (started by it)
          drive --launcher PATH --supervisor-bin PATH --out FILE [--rounds 5] [--work DIR] [--listeners 1000] [--quick]
                [--fakesystemd PATH] [--empty-bin PATH] [--only SCENARIO,...]
                                                        scenarios: conn pingpong stream startup syscalls redis
                                                        scale engine metrics restart
        ADDR is tcp:HOST:PORT or unix:PATH.
        """;

    private static int Main(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help")
        {
            Console.Out.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        // engine-scale stops its targets on SIGTERM itself.
        if (args[0] != "engine-scale") PosixSignalRegistration.Create(PosixSignal.SIGTERM, _ => Environment.Exit(0));
        try
        {
            var o = Options.Parse(args.AsSpan(1));
            string result = args[0] switch
            {
                "serve" => Done(BenchServer.Serve(o.Address(), o.Int("--threads", 16), o.Text("--ready"))),
                "listen" => Done(BenchServer.ListenOnly(o.Address(), o.Text("--ready"))),
                "conn" => Workloads.ShortConnections(o.Address(), o.Int("--clients", 1), o.Double("--seconds", 1), ProcessCpu.ParseWatched(o.Text("--cpu-of"))),
                "probe" => Workloads.Probe(o.Address(), o.Text("--until") ?? throw new BenchUsageException("probe needs --until FILE"),
                    o.Text("--ready"), o.Double("--max-seconds", 120)),
                "pingpong" => Workloads.PingPong(o.Address(), o.Int("--count", 20_000)),
                "stream" => Workloads.Stream(o.Address(), o.Double("--seconds", 1), o.Int("--chunk", 65536)),
                "storm" => Workloads.Storm(o.Address(), o.Int("--conns", 100), o.Long("--start-at", Stopwatch.GetTimestamp()),
                    o.Text("--hold") is { } h ? BenchEndpoint.Parse(h) : null, o.Text("--release"), o.Double("--max-hold", 60)),
                "syscalls" => SyscallLoop.Run(o.Text("--op") ?? "getpid", o.Int("--count", 2_000_000)),
                "spawn" => SpawnTimer.Run(o.Rest, o.Int("--count", 20)),
                "engine-scale" => EngineScale.Run(o.Int("--listeners", 1000), o.Double("--seconds", 2), o.Text("--work"), ExternalSupervisor(o)),
                "engine-target" => EngineTarget.Run(o.Int("--index", 0), o.Int("--port", 0), o.Int("--report", -1), o.Int("--parent", -1),
                    o.Text("--phase") ?? throw new BenchUsageException("engine-target needs --phase FILE")),
                "drive" => Done(new BenchDriver(DriverOptions.From(o)).Run()),
                _ => throw new BenchUsageException($"unknown mode {args[0]}"),
            };
            if (result.Length > 0) Console.Out.WriteLine(result);
            return 0;
        }
        catch (BenchUsageException e)
        {
            Console.Error.WriteLine($"unsock-bench: {e.Message}\n{Usage}");
            return 2;
        }
        catch (BenchIoException e)
        {
            Console.Error.WriteLine($"unsock-bench {args[0]}: {e.Message}");
            return 1;
        }
    }

    /// <summary>engine-scale --supervisor SOCKET --supervisor-pid PID --launcher PATH: a running supervisor service instead of an engine of ours.</summary>
    private static EngineScale.External? ExternalSupervisor(Options o)
    {
        if (o.Text("--supervisor") is not { } socket) return null;
        int pid = o.Int("--supervisor-pid", 0);
        if (pid <= 0 || !Directory.Exists($"/proc/{pid}")) throw new BenchUsageException($"--supervisor-pid {o.Text("--supervisor-pid")}: needs the pid of the running supervisor");
        string launcher = o.Text("--launcher") ?? throw new BenchUsageException("--supervisor needs --launcher PATH (unsock-launch)");
        if (!File.Exists(launcher)) throw new BenchUsageException($"--launcher {launcher}: no such file");
        return new(Path.GetFullPath(socket), pid, Path.GetFullPath(launcher));
    }

    private static string Done(int status) => status == 0 ? "" : throw new BenchIoException("driver", 0);
}

/// <summary>--name value options, an optional positional address, and everything after --.</summary>
internal sealed class Options
{
    private readonly Dictionary<string, string> _named = new(StringComparer.Ordinal);
    private readonly HashSet<string> _flags = new(StringComparer.Ordinal);
    private string? _positional;
    public List<string> Rest { get; } = new();

    private static readonly HashSet<string> Flags = ["--quick"];

    public static Options Parse(ReadOnlySpan<string> args)
    {
        var o = new Options();
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (a == "--") { o.Rest.AddRange(args[(i + 1)..].ToArray()); break; }
            if (Flags.Contains(a)) o._flags.Add(a);
            else if (a.StartsWith("--", StringComparison.Ordinal))
            {
                if (i + 1 >= args.Length) throw new BenchUsageException($"{a} needs a value");
                o._named[a] = args[++i];
            }
            else if (o._positional is null) o._positional = a;
            else throw new BenchUsageException($"unexpected argument {a}");
        }
        return o;
    }

    public BenchEndpoint Address() => BenchEndpoint.Parse(_positional ?? throw new BenchUsageException("an address (tcp:HOST:PORT or unix:PATH) is required"));
    public string? Text(string name) => _named.GetValueOrDefault(name);
    public bool Flag(string name) => _flags.Contains(name);

    public int Int(string name, int fallback) => (int)Long(name, fallback);

    public long Long(string name, long fallback) =>
        _named.TryGetValue(name, out var v)
            ? long.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out long r) && r >= 0 ? r : throw new BenchUsageException($"{name} {v}: not a non-negative integer")
            : fallback;

    public double Double(string name, double fallback) =>
        _named.TryGetValue(name, out var v)
            ? double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double r) && r > 0 ? r : throw new BenchUsageException($"{name} {v}: not a positive number")
            : fallback;
}
