using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Tmds.Linux;
using Unsock.Core.Engine;
using Unsock.Core.Filter;
using Unsock.Core.Policies;
using static Tmds.Linux.LibC;

namespace Unsock.Bench;

/// <summary>
/// The engine at scale: this process hosts one <see cref="NotificationEngine"/> (default options) and spawns
/// N targets (engine-target), each with its own filter and listener attached to that engine. Measures this
/// process's threads, fds and VmRSS with 1 and with N idle attached listeners, and connections/s of one
/// target alone, of one target among N-1 idle ones, and of all N at once.
/// With <see cref="External"/> the engine is a running supervisor service's instead: each target starts under
/// <c>unsock-launch --supervisor</c> (which registers, hands over its listener and execs the target in place) and
/// the footprint is the supervisor process's.
/// </summary>
internal sealed unsafe class EngineScale : IDisposable
{
    public const int FirstPort = 20000, MaxListeners = 10_000;
    private const int SigUsr1 = 10, SigKill = 9;
    private const short PollIn = 0x1;

    private readonly int _listeners;
    private readonly double _seconds;
    private readonly string _work, _phaseFile;
    private readonly string _policyFile;
    private readonly External? _external;
    private readonly Policy? _policy;
    private readonly SeccompProgram? _program;
    private readonly NotificationEngine? _engine;
    private readonly int _reportRead, _reportWrite, _parentRead, _parentWrite;
    private readonly object _gate = new();
    private readonly List<(int Pid, ListenerAttachment? Attachment)> _targets = new();
    private readonly StringBuilder _pending = new();
    private readonly HashSet<int> _ready = new();
    private readonly ManualResetEventSlim _stopped = new();
    private bool _closed;

    private static readonly string[] EngineThreadNames = ["unsock-notify-", "unsock-poller", "unsock-sweep"];

    /// <summary>A supervisor service to attach the targets to: its control socket, its pid, and the launcher that talks to it.</summary>
    public sealed record External(string Socket, int Pid, string Launcher);

    /// <summary>
    /// What /proc says about the process that hosts the engine (this one, or the supervisor service): the
    /// supervisor's footprint. The managed heap is known of this process only (-1 for another).
    /// </summary>
    private readonly record struct Footprint(int Threads, int EngineThreads, int Fds, long RssKb, long HeapKb)
    {
        public static Footprint Now(int pid)
        {
            bool self = pid == Environment.ProcessId;
            int threads = 0, engineThreads = 0;
            foreach (var task in Directory.EnumerateDirectories($"/proc/{pid}/task"))
            {
                threads++;
                try
                {
                    string comm = File.ReadAllText(Path.Combine(task, "comm"));
                    if (EngineThreadNames.Any(name => comm.StartsWith(name, StringComparison.Ordinal))) engineThreads++;
                }
                catch (IOException) { } // a thread that ended meanwhile
            }
            // Minus the directory fd the enumeration itself holds open (ours only).
            int fds = Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd").Count() - (self ? 1 : 0);
            return new(threads, engineThreads, fds, Driver.ChildProcess.StatusKb(pid, "VmRSS"), self ? GC.GetTotalMemory(false) / 1024 : -1);
        }

        public static Footprint Max(Footprint a, Footprint b) =>
            new(Math.Max(a.Threads, b.Threads), Math.Max(a.EngineThreads, b.EngineThreads), Math.Max(a.Fds, b.Fds), Math.Max(a.RssKb, b.RssKb), Math.Max(a.HeapKb, b.HeapKb));

        public string Keys(string prefix) => $"{prefix}_threads={Threads} {prefix}_engine_threads={EngineThreads} {prefix}_fds={Fds} {prefix}_rss_kb={RssKb} {prefix}_heap_kb={HeapKb}";
    }

    public static string Run(int listeners, double seconds, string? work, External? external)
    {
        if (listeners < 2 || listeners > MaxListeners) throw new BenchUsageException($"--listeners {listeners}: expected 2 to {MaxListeners}");
        work = Path.GetFullPath(work ?? Path.Combine(Path.GetTempPath(), $"unsock-engine-scale.{Environment.ProcessId}"));
        if (Directory.Exists(work) && Directory.EnumerateFileSystemEntries(work).Any())
            throw new BenchUsageException($"--work {work}: exists and is not empty (it is removed at the end)");
        using var scale = new EngineScale(listeners, seconds, work, external);
        // Ctrl-C and SIGTERM stop the targets and remove the work dir before we go.
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, ctx => scale.Abandon(ctx, 130));
        using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, ctx => scale.Abandon(ctx, 143));
        AppDomain.CurrentDomain.ProcessExit += (_, _) => scale.Dispose();
        return scale.Measure();
    }

    private EngineScale(int listeners, double seconds, string work, External? external)
    {
        _external = external;
        _listeners = listeners;
        _seconds = seconds;
        _work = work;
        string socks = Path.Combine(work, "socks");
        Directory.CreateDirectory(socks);
        _phaseFile = Path.Combine(work, "phase");
        _policyFile = Path.Combine(work, "policy.json");
        File.WriteAllText(_policyFile, $$"""{ "rules": [ { "address": "127.0.0.0/8", "directory": "{{socks}}" } ] }""" + "\n");
        // Targets write lines to one pipe; they hold the read end of another whose end tells them we are gone.
        (_reportRead, _reportWrite) = Pipe(inheritRead: false, inheritWrite: true);
        (_parentRead, _parentWrite) = Pipe(inheritRead: true, inheritWrite: false);
        if (external is not null) return; // the supervisor compiles the filter and hosts the engine
        _policy = Policy.Load(_policyFile);
        _program = FilterCompiler.Compile(FilterPlan.For(_policy));
        _engine = new NotificationEngine();
        // The socket files are made by us for the targets: nobody else may use them before the chmod.
        SupervisorProcess.RestrictUmask();
        _engine.Start();
    }

    private string Measure()
    {
        var bench = Environment.ProcessPath ?? throw new BenchIoException("cannot tell the path of unsock-bench itself", 0);
        var started = Stopwatch.GetTimestamp();
        var none = Settled();
        Progress(_external is null ? $"engine started (default options), nothing attached: {Describe(none)}"
            : $"supervisor pid {_external.Pid} at {_external.Socket}, before our targets: {Describe(none)}");

        SpawnTargets(bench, 1, 1);
        double alone = Phase(1, 1).Rate;
        Progress($"1 target alone: {alone:F0} connections/s");
        // Read after that phase: what the engine grew to serve it does not count as the cost of the next listeners.
        var one = Settled();
        Progress($"1 idle listener: {Describe(one)}");

        SpawnTargets(bench, 2, _listeners);
        var all = Settled();
        double perListener = (all.RssKb - one.RssKb) / (double)(_listeners - 1);
        double heapPerListener = (all.HeapKb - one.HeapKb) / (double)(_listeners - 1);
        Progress($"{_listeners} idle listeners: {Describe(all)}; per additional idle listener {perListener:F1} KB of VmRSS" +
                 (_external is null ? $", {heapPerListener:F1} KB of managed heap" : ""));
        double among = Phase(1, 1).Rate;
        Progress($"1 target, {_listeners - 1} others idle: {among:F0} connections/s");
        var (aggregate, total, busy) = Phase(1, _listeners);
        Progress($"all {_listeners} targets at once: {aggregate:F0} connections/s ({total} in all); during it at most {Describe(busy)}");
        var after = Settled();
        Progress($"{_listeners} idle listeners after that: {Describe(after)}");
        Progress($"done in {Stopwatch.GetElapsedTime(started).TotalSeconds:F0} s; stopping the targets");

        return string.Join(' ',
            $"listeners={_listeners}", $"engine={(_external is null ? "in-process" : "supervisor")}", none.Keys("none"), one.Keys("idle1"), all.Keys("idle_n"),
            $"rss_per_listener_kb={perListener.ToString("F1", CultureInfo.InvariantCulture)}",
            // Another process's managed heap is not visible from here (its keys say -1).
            _external is null ? $"heap_per_listener_kb={heapPerListener.ToString("F1", CultureInfo.InvariantCulture)}" : "",
            $"one_alone_conn_per_s={alone:F0}", $"one_among_n_conn_per_s={among:F0}",
            $"all_conn_per_s={aggregate:F0}", $"all_conns={total}", busy.Keys("busy"), after.Keys("after"));
    }

    private static string Describe(Footprint f) =>
        $"{f.Threads} threads ({f.EngineThreads} of the engine), {f.Fds} fds, VmRSS {f.RssKb / 1024.0:F1} MB" +
        (f.HeapKb >= 0 ? $", managed heap {f.HeapKb / 1024.0:F1} MB" : "");

    private int EnginePid => _external?.Pid ?? Environment.ProcessId;

    /// <summary>
    /// The footprint once the engine's 1 s sweep has passed and, in this process, garbage (with what finalizers
    /// free) is collected; the supervisor's garbage is collected when its own GC decides.
    /// </summary>
    private Footprint Settled()
    {
        Thread.Sleep(1500);
        if (_external is null)
        {
            GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
            GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        }
        return Footprint.Now(EnginePid);
    }

    /// <summary>Starts targets <paramref name="first"/>..<paramref name="last"/> and waits until each holds its connection.</summary>
    private void SpawnTargets(string bench, int first, int last)
    {
        var t = Stopwatch.GetTimestamp();
        for (int i = first; i <= last; i++)
        {
            lock (_gate)
            {
                if (_closed) throw new BenchIoException("stopped", 0);
                string[] target = [bench, "engine-target", "--index", $"{i}", "--port", $"{FirstPort + i}",
                    "--report", $"{_reportWrite}", "--parent", $"{_parentRead}", "--phase", _phaseFile];
                if (_external is { } x)
                {
                    // The launcher registers with the supervisor, hands it the listener and becomes the target (same pid).
                    var (_, launched) = FilteredSpawn.Start(null, [x.Launcher, "--supervisor", x.Socket, "--policy", _policyFile, "--", .. target]);
                    _targets.Add((launched, null));
                }
                else
                {
                    var (listener, pid) = FilteredSpawn.Start(_program, target);
                    var attachment = _engine!.Attach(listener, _policy!, new TargetContext(pid, Command: $"unsock-bench engine-target --index {i}"));
                    _targets.Add((pid, attachment));
                }
            }
            // Keep the pipe drained while spawning, so that no target waits on a full pipe.
            ReadReports(0, _ => { });
        }
        var deadline = Stopwatch.GetTimestamp() + (long)((60 + 0.1 * (last - first + 1)) * Stopwatch.Frequency);
        while (Enumerable.Range(first, last - first + 1).Any(i => !_ready.Contains(i)))
        {
            if (Stopwatch.GetTimestamp() > deadline)
                throw new BenchIoException($"targets {first}-{last}: only {_ready.Count(i => i >= first && i <= last)} ready after {Stopwatch.GetElapsedTime(t).TotalSeconds:F0} s", 0);
            ReadReports(200, _ => { });
            // A launcher the supervisor refused exits (status 125, its reason on stderr): say so now rather than at the deadline.
            if (_external is not null)
                lock (_gate)
                    for (int i = first; i <= last; i++)
                        if (!_ready.Contains(i) && FilteredSpawn.Reap(_targets[i - 1].Pid, FilteredSpawn.WNoHang) > 0)
                            throw new BenchIoException($"target {i} (pid {_targets[i - 1].Pid}) exited before it was ready; see the launcher's message above", 0);
        }
        Progress($"targets {first}-{last} started and holding a connection in {Stopwatch.GetElapsedTime(t).TotalSeconds:F1} s");
    }

    /// <summary>
    /// Targets <paramref name="first"/>..<paramref name="last"/> make short connections for the run's seconds from a
    /// common start; all connections / (last end - first start), and the largest footprint seen meanwhile.
    /// </summary>
    private (double Rate, long Total, Footprint Busy) Phase(int first, int last)
    {
        int count = last - first + 1;
        // Time for every target to be signalled and read the phase file before the start.
        long startAt = Stopwatch.GetTimestamp() + (long)((0.3 + 0.002 * count) * Stopwatch.Frequency);
        // A lone target warms up first (its first connections fill the engine's caches); 1,000 at once would outlast the lead time.
        int warmUp = count == 1 ? 200 : 0;
        File.WriteAllText(_phaseFile, $"{startAt} {_seconds.ToString(CultureInfo.InvariantCulture)} {warmUp}");
        lock (_gate)
            for (int i = first; i <= last; i++)
                if (kill(_targets[i - 1].Pid, SigUsr1) < 0) throw new BenchIoException($"kill target {i}", errno);
        var done = new Dictionary<int, string>();
        var busy = Footprint.Now(EnginePid);
        var deadline = startAt + (long)((_seconds + 60 + 0.05 * count) * Stopwatch.Frequency);
        while (done.Count < count)
        {
            if (Stopwatch.GetTimestamp() > deadline)
                throw new BenchIoException($"a phase of {count} targets: only {done.Count} reported after {_seconds + 60 + 0.05 * count:F0} s", 0);
            ReadReports(100, line =>
            {
                var words = line.Split(' ', 3);
                if (words[0] == "done" && int.Parse(words[1], CultureInfo.InvariantCulture) is int i && i >= first && i <= last) done[i] = words[2];
            });
            busy = Footprint.Max(busy, Footprint.Now(EnginePid));
        }
        long firstStart = long.MaxValue, lastEnd = long.MinValue, total = 0;
        foreach (var result in done.Values)
        {
            firstStart = Math.Min(firstStart, (long)Driver.ChildProcess.Value(result, "start"));
            lastEnd = Math.Max(lastEnd, (long)Driver.ChildProcess.Value(result, "end"));
            total += (long)Driver.ChildProcess.Value(result, "conns");
        }
        return (total / ((lastEnd - firstStart) / (double)Stopwatch.Frequency), total, busy);
    }

    /// <summary>Waits up to <paramref name="timeoutMs"/> for lines from the targets and hands each complete one on.</summary>
    private void ReadReports(int timeoutMs, Action<string> onLine)
    {
        var pfd = new pollfd { fd = _reportRead, events = PollIn };
        if (poll(&pfd, 1, timeoutMs) <= 0) return;
        var buffer = stackalloc byte[65536];
        long n = read(_reportRead, buffer, 65536);
        if (n <= 0) return;
        _pending.Append(Encoding.UTF8.GetString(buffer, (int)n));
        string text = _pending.ToString();
        int end = text.LastIndexOf('\n');
        if (end < 0) return;
        _pending.Clear().Append(text[(end + 1)..]);
        foreach (var line in text[..end].Split('\n'))
        {
            var words = line.Split(' ');
            if (words[0] == "ready") _ready.Add(int.Parse(words[1], CultureInfo.InvariantCulture));
            else if (words[0] == "failed") throw new BenchIoException($"target {line}", 0);
            onLine(line);
        }
    }

    private static (int Read, int Write) Pipe(bool inheritRead, bool inheritWrite)
    {
        var fds = stackalloc int[2];
        if (pipe2(fds, O_CLOEXEC) < 0) throw new BenchIoException("pipe2", errno);
        // Only the end the targets need loses close-on-exec.
        if (inheritRead) fcntl(fds[0], F_SETFD, 0);
        if (inheritWrite) fcntl(fds[1], F_SETFD, 0);
        fcntl(fds[0], F_SETFL, O_NONBLOCK);
        return (fds[0], fds[1]);
    }

    private void Abandon(PosixSignalContext signal, int status)
    {
        signal.Cancel = true;
        Progress($"{signal.Signal}: stopping the targets");
        Dispose();
        Environment.Exit(status);
    }

    /// <summary>
    /// Stops every target (SIGTERM, then SIGKILL after 10 s), waits for the engine to let go of them, removes the
    /// work dir. A second caller (a signal during the run) waits until the first is done.
    /// </summary>
    public void Dispose()
    {
        List<(int Pid, ListenerAttachment? Attachment)> targets;
        bool first;
        lock (_gate)
        {
            first = !_closed;
            _closed = true;
            targets = _targets.ToList();
        }
        if (!first)
        {
            _stopped.Wait();
            return;
        }
        try
        {
            Stop(targets);
        }
        finally
        {
            _stopped.Set();
        }
    }

    private void Stop(List<(int Pid, ListenerAttachment? Attachment)> targets)
    {
        foreach (var (pid, _) in targets) kill(pid, SIGTERM);
        close(_parentWrite); // a target that missed the signal sees its parent pipe end
        var deadline = Stopwatch.GetTimestamp() + 10 * Stopwatch.Frequency;
        var running = targets.Select(t => t.Pid).ToHashSet();
        while (running.Count > 0 && Stopwatch.GetTimestamp() < deadline)
        {
            running.RemoveWhere(pid => FilteredSpawn.Reap(pid, FilteredSpawn.WNoHang) != 0);
            if (running.Count > 0) Thread.Sleep(20);
        }
        foreach (int pid in running) kill(pid, SigKill);
        foreach (int pid in running) FilteredSpawn.Reap(pid, 0);
        Task.WaitAll(targets.Where(t => t.Attachment is not null).Select(t => t.Attachment!.Completion).ToArray(), TimeSpan.FromSeconds(15));
        _engine?.Dispose();
        close(_reportRead);
        close(_reportWrite);
        close(_parentRead);
        try { Directory.Delete(_work, recursive: true); }
        catch (IOException e) { Progress($"could not remove {_work}: {e.Message}"); }
    }

    private static void Progress(string text) => Console.Error.WriteLine($"unsock-bench engine-scale: {text}");
}
