using System.Globalization;
using System.Runtime.InteropServices;
using static Tmds.Linux.LibC;

namespace Unsock.Bench;

/// <summary>
/// CPU time of processes, to report CPU per connection: a steadier figure than rates on a busy machine. Our
/// own from getrusage; another process's as the sum of its threads' run time in /proc/PID/task/*/schedstat
/// (nanoseconds; the supervisor's and servers' threads live for the whole measurement), else utime + stime
/// of /proc/PID/stat (clock ticks, which include threads that have exited).
/// </summary>
internal static unsafe partial class ProcessCpu
{
    private const int RusageSelf = 0;

    // struct rusage: ru_utime and ru_stime (timeval: seconds, microseconds), then 14 longs.
    [LibraryImport("libc", EntryPoint = "getrusage")]
    private static partial int GetRusage(int who, long* usage);

    private static readonly double NsPerTick = 1e9 / 100; // USER_HZ is 100 on Linux

    /// <summary>This process's user + system time so far, in nanoseconds.</summary>
    public static long Self()
    {
        long* u = stackalloc long[18];
        if (GetRusage(RusageSelf, u) != 0) return 0;
        return (u[0] + u[2]) * 1_000_000_000L + (u[1] + u[3]) * 1000L;
    }

    /// <summary>Run time of <paramref name="pid"/> so far, in nanoseconds; -1 when it cannot be read.</summary>
    public static long Of(int pid)
    {
        long total = 0;
        bool any = false;
        try
        {
            foreach (var task in Directory.EnumerateDirectories($"/proc/{pid}/task"))
            {
                string text;
                try { text = File.ReadAllText(Path.Combine(task, "schedstat")); }
                catch (IOException) { continue; } // a thread that has just exited
                int space = text.IndexOf(' ');
                if (space > 0 && long.TryParse(text.AsSpan(0, space), NumberStyles.None, CultureInfo.InvariantCulture, out long ns))
                {
                    total += ns;
                    any = true;
                }
            }
        }
        catch (IOException) { return -1; }
        catch (UnauthorizedAccessException) { return -1; }
        return any ? total : FromStat(pid);
    }

    /// <summary>utime + stime of <paramref name="pid"/> in nanoseconds (10 ms steps), its exited threads' included; -1 when it cannot be read.</summary>
    public static long FromStat(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            // After the command: state is field 3, utime 14 and stime 15 (1-based in proc(5)).
            return (long)((long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) * NsPerTick);
        }
        catch (Exception e) when (e is IOException or FormatException or IndexOutOfRangeException) { return -1; }
    }

    /// <summary>
    /// "--cpu-of server=123,supervisor=parent": labels and pids whose CPU a client mode reports per connection;
    /// "parent" is the process that started us (the launcher, when we run under one).
    /// </summary>
    public static List<(string Label, int Pid)> ParseWatched(string? spec)
    {
        var watched = new List<(string, int)>();
        if (string.IsNullOrEmpty(spec)) return watched;
        foreach (var item in spec.Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            int eq = item.IndexOf('=');
            if (eq <= 0) throw new BenchUsageException($"--cpu-of {spec}: '{item}' is not LABEL=PID");
            string label = item[..eq], who = item[(eq + 1)..];
            int pid = who == "parent" ? getppid()
                : int.TryParse(who, NumberStyles.None, CultureInfo.InvariantCulture, out int p) && p > 0 ? p
                : throw new BenchUsageException($"--cpu-of {spec}: '{who}' is not a pid or 'parent'");
            watched.Add((label, pid));
        }
        return watched;
    }
}
