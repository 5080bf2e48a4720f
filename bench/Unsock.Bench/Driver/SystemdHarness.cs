using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Unsock.Bench.Driver;

/// <summary>
/// A supervisor service run by tests/Unsock.Tests/Programs/fakesystemd.py, which plays systemd's part (fd store,
/// NOTIFY_SOCKET, LISTEN_FDS): SIGUSR1 to it restarts the service gracefully (SIGTERM, wait, start again), SIGUSR2
/// kills it (SIGKILL, then the same). Its stdout carries its JSON event lines and the service's log lines; each line
/// is stamped when it arrives, so a restart can be cut into its parts.
/// </summary>
internal sealed partial class SystemdHarness : IDisposable
{
    private readonly Process _process;
    private readonly List<(long Stamp, string Line)> _lines = new();
    // The CPU time of each start's service when its READY=1 line arrived, by start number.
    private readonly Dictionary<int, double> _startCpuMs = new();
    private int _starts = 1;

    /// <summary>A restart as measured: the harness's pause, and its parts from the event and log lines (NaN when a line is missing).</summary>
    public sealed record Restart(double PauseMs, double StoppedMs, double HandoverMs, double HostStartMs, double ServiceStartMs, double ReadyMs, int Targets, double StartCpuMs);

    public SystemdHarness(string python, string script, string notify, string control, string supervisor, IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(python) { UseShellExecute = false, RedirectStandardOutput = true };
        foreach (var a in (string[])[script, notify, control, "--", supervisor, .. args]) psi.ArgumentList.Add(a);
        // Ours if the driver runs under systemd: the service must see only the harness's.
        foreach (var name in (string[])["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "FDSTORE", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"])
            psi.Environment.Remove(name);
        _process = Process.Start(psi) ?? throw new BenchIoException($"cannot start {python} {script}", 0);
        new Thread(Read) { IsBackground = true, Name = "fakesystemd-stdout" }.Start();
        Pid = Ready(0, TimeSpan.FromSeconds(60)).GetProperty("pid").GetInt32();
    }

    /// <summary>The service's pid (changes at every restart).</summary>
    public int Pid { get; private set; }

    public bool HasExited => _process.HasExited;

    /// <summary>A graceful restart (SIGTERM to the service) or a SIGKILL one, measured from the signal to READY=1 of the next service.</summary>
    public Restart RestartService(bool kill)
    {
        int from;
        lock (_lines) from = _lines.Count;
        var wallAtSignal = DateTime.Now;
        long atSignal = Stopwatch.GetTimestamp();
        Tmds.Linux.LibC.kill(_process.Id, kill ? Tmds.Linux.LibC.SIGUSR2 : Tmds.Linux.LibC.SIGUSR1);
        int start = _starts++;
        var ready = Ready(start, TimeSpan.FromSeconds(120));
        Pid = ready.GetProperty("pid").GetInt32();
        List<(long Stamp, string Line)> lines;
        lock (_lines) lines = _lines.Skip(from).ToList();

        // Before the harness's "exited" line the old service wrote; after it the new one.
        int exited = lines.FindIndex(l => Event(l.Line) is { } e && e.GetProperty("event").GetString() == "exited");
        double stopped = exited < 0 ? double.NaN : Stopwatch.GetElapsedTime(atSignal, lines[exited].Stamp).TotalMilliseconds;
        double Logged(int first, int last, string text)
        {
            for (int i = Math.Max(first, 0); i < last; i++)
                if (lines[i].Line.Contains(text, StringComparison.Ordinal) && LogTime().Match(lines[i].Line) is { Success: true } m)
                {
                    var at = TimeSpan.ParseExact(m.Groups[1].Value, @"hh\:mm\:ss\.fff", CultureInfo.InvariantCulture);
                    double ms = (at - wallAtSignal.TimeOfDay).TotalMilliseconds;
                    return ms < -12 * 3600_000 ? ms + 24 * 3600_000 : ms; // past midnight
                }
            return double.NaN;
        }
        double handover = double.NaN;
        foreach (var (_, line) in exited < 0 ? [] : lines.Take(exited))
            if (HandedOver().Match(line) is { Success: true } h) handover = double.Parse(h.Groups[1].Value, CultureInfo.InvariantCulture);
        // The new service's first line (TargetKeeper.Open, in its first hosted service's StartAsync) and the host's "started".
        double opened = Logged(exited + 1, lines.Count, "targets are kept across restarts");
        double started = Logged(exited + 1, lines.Count, "Application started");
        double pause = ready.GetProperty("pauseMs").GetDouble();
        double cpu;
        lock (_lines) cpu = _startCpuMs.GetValueOrDefault(start, double.NaN);
        return new(pause, stopped, handover, opened - stopped, started - opened, pause - started, ready.GetProperty("store").GetArrayLength(), cpu);
    }

    /// <summary>SIGTERM: the harness stops the service (a graceful stop) and ends.</summary>
    public void Dispose()
    {
        ChildProcess.Stop(_process);
        _process.Dispose();
    }

    private JsonElement Ready(int start, TimeSpan within)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(within.TotalSeconds * Stopwatch.Frequency);
        for (int seen = 0; ; )
        {
            List<string> fresh;
            lock (_lines) { fresh = _lines.Skip(seen).Select(l => l.Line).ToList(); seen = _lines.Count; }
            foreach (var line in fresh)
                if (Event(line) is { } e && e.GetProperty("event").GetString() is "ready" or "not-ready")
                {
                    if (e.GetProperty("event").GetString() == "not-ready") throw new BenchIoException($"fakesystemd: start {start} of the supervisor did not say READY=1", 0);
                    if (e.GetProperty("start").GetInt32() == start) return e;
                }
            if (_process.HasExited) throw new BenchIoException($"fakesystemd exited (status {_process.ExitCode}) before start {start} of the supervisor was ready", 0);
            if (Stopwatch.GetTimestamp() > deadline) throw new BenchIoException($"fakesystemd: start {start} of the supervisor not ready after {within.TotalSeconds} s", 0);
            Thread.Sleep(5);
        }
    }

    private static JsonElement? Event(string line)
    {
        if (!line.StartsWith('{')) return null;
        try { return JsonDocument.Parse(line).RootElement; }
        catch (JsonException) { return null; }
    }

    private void Read()
    {
        while (_process.StandardOutput.ReadLine() is { } line)
        {
            long stamp = Stopwatch.GetTimestamp();
            // The new service's CPU time at once: from here on it serves the calls that waited, which is not its start.
            double cpu = double.NaN;
            int start = -1;
            if (Event(line) is { } e && e.GetProperty("event").GetString() == "ready")
            {
                start = e.GetProperty("start").GetInt32();
                long ns = ProcessCpu.FromStat(e.GetProperty("pid").GetInt32());
                if (ns >= 0) cpu = ns / 1e6;
            }
            lock (_lines)
            {
                _lines.Add((stamp, line));
                if (start >= 0) _startCpuMs[start] = cpu;
            }
        }
    }

    // The service's console lines start with HH:mm:ss.fff (local time).
    [GeneratedRegex(@"^(\d\d:\d\d:\d\d\.\d\d\d) ")]
    private static partial Regex LogTime();

    [GeneratedRegex(@"handed \d+ targets over to the next supervisor in (\d+) ms")]
    private static partial Regex HandedOver();
}
