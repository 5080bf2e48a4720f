using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Unsock.Bench.Driver;

/// <summary>Starting, waiting for and stopping the processes of a run; every wait is bounded.</summary>
internal static class ChildProcess
{
    private static readonly TimeSpan RunLimit = TimeSpan.FromSeconds(120);

    /// <summary>Runs a command to completion and returns its stdout; a non-zero exit is an error naming the command.</summary>
    public static string Run(string file, IEnumerable<string> args, TimeSpan? limit = null)
    {
        using var p = Start(file, args, capture: true);
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        var within = limit ?? RunLimit;
        if (!p.WaitForExit(within))
        {
            p.Kill(entireProcessTree: true);
            throw new BenchIoException($"{Describe(file, args)}: still running after {within.TotalSeconds} s, killed", 0);
        }
        p.WaitForExit();
        if (p.ExitCode != 0) throw new BenchIoException($"{Describe(file, args)}: exit status {p.ExitCode}: {stderr.Result.Trim()}", 0);
        return stdout.Result;
    }

    public static Process Start(string file, IEnumerable<string> args, bool capture)
    {
        var psi = new ProcessStartInfo(file)
        {
            UseShellExecute = false,
            RedirectStandardOutput = capture,
            RedirectStandardError = capture,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Process.Start(psi) ?? throw new BenchIoException($"cannot start {file}", 0);
    }

    /// <summary>SIGTERM (the launcher forwards it to its command), then SIGKILL to the tree if it lingers.</summary>
    public static void Stop(Process p)
    {
        if (p.HasExited) return;
        Tmds.Linux.LibC.kill(p.Id, Tmds.Linux.LibC.SIGTERM);
        if (!p.WaitForExit(TimeSpan.FromSeconds(10))) p.Kill(entireProcessTree: true);
        p.WaitForExit();
    }

    public static void WaitUntil(Func<bool> condition, string what, Process? owner = null, double seconds = 30)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
        while (!condition())
        {
            if (owner is { HasExited: true }) throw new BenchIoException($"{what}: the process exited with status {owner.ExitCode}", 0);
            if (Stopwatch.GetTimestamp() > deadline) throw new BenchIoException($"{what}: not after {seconds} s", 0);
            Thread.Sleep(10);
        }
    }

    /// <summary>True when a connection to the endpoint succeeds now (the server listens).</summary>
    public static bool Accepts(EndPoint endpoint)
    {
        try
        {
            using var s = new Socket(endpoint.AddressFamily, SocketType.Stream, endpoint is UnixDomainSocketEndPoint ? ProtocolType.Unspecified : ProtocolType.Tcp);
            s.Connect(endpoint);
            return true;
        }
        catch (SocketException) { return false; }
    }

    /// <summary>True when a SOCK_SEQPACKET Unix socket (the supervisor's control socket) accepts a connection now.</summary>
    public static bool AcceptsSeqpacket(string path)
    {
        try
        {
            using var s = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
            s.Connect(new UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (SocketException) { return false; }
    }

    /// <summary>Resets VmHWM of <paramref name="pid"/> to its VmRSS now (clear_refs 5, Linux 4.0), so a later VmHWM is the peak since.</summary>
    public static void ResetPeak(int pid)
    {
        try { File.WriteAllText($"/proc/{pid}/clear_refs", "5"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BenchIoException($"/proc/{pid}/clear_refs: {e.Message} (the peak would be the whole run's)", 0);
        }
    }

    /// <summary>key=value pairs of a bench mode's result line.</summary>
    public static double Value(string output, string key)
    {
        foreach (var token in output.Split((char[])[' ', '\n'], StringSplitOptions.RemoveEmptyEntries))
            if (token.StartsWith(key + "=", StringComparison.Ordinal))
                return double.Parse(token[(key.Length + 1)..], CultureInfo.InvariantCulture);
        throw new BenchIoException($"no {key}= in output: {output.Trim()}", 0);
    }

    /// <summary>A field of /proc/PID/status in kB (VmRSS, VmHWM).</summary>
    public static long StatusKb(int pid, string field)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
                return long.Parse(line[(field.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        throw new BenchIoException($"/proc/{pid}/status has no {field}", 0);
    }

    private static string Describe(string file, IEnumerable<string> args) => $"{file} {string.Join(' ', args)}";
}
