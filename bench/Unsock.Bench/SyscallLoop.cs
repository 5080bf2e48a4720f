using System.Diagnostics;
using static Tmds.Linux.LibC;

namespace Unsock.Bench;

/// <summary>Scenario 5: calls the filter never traps, in a tight loop; the filter still runs on each.</summary>
internal static unsafe class SyscallLoop
{
    public static string Run(string op, int count)
    {
        return op switch
        {
            "getpid" => Time(count, static n => { for (int i = 0; i < n; i++) getpid(); }),
            "pipe" => PipeRoundTrips(count),
            _ => throw new BenchUsageException($"--op {op}: expected getpid or pipe"),
        };
    }

    private static string PipeRoundTrips(int count)
    {
        int* fds = stackalloc int[2];
        if (pipe2(fds, O_CLOEXEC) < 0) throw new BenchIoException("pipe2", errno);
        int r = fds[0], w = fds[1];
        try
        {
            // One write and one read of one byte per operation.
            return Time(count, n =>
            {
                byte b = 0;
                for (int i = 0; i < n; i++)
                {
                    write(w, &b, 1);
                    read(r, &b, 1);
                }
            });
        }
        finally
        {
            close(r);
            close(w);
        }
    }

    private static string Time(int count, Action<int> loop)
    {
        loop(Math.Min(count, 10_000)); // warm-up
        long start = Stopwatch.GetTimestamp();
        loop(count);
        double ns = Stopwatch.GetElapsedTime(start).TotalNanoseconds / count;
        return $"ns_per_op={ns:F1}";
    }
}
