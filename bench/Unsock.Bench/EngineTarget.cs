using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace Unsock.Bench;

/// <summary>
/// One target of engine-scale, started by it with its own filter: serves a redirected listener on
/// 127.0.0.1:PORT, makes one connection to it and holds it, then idles. Each SIGUSR1 runs one phase of
/// short connections to that listener as the phase file says (start time, seconds, warm-up connections). Lines go to the
/// shared report pipe; it ends on SIGTERM or when the engine-scale process is gone (the parent pipe ends).
/// </summary>
internal static unsafe class EngineTarget
{
    private const int SigUsr1 = 10;
    private const short PollIn = 0x1;

    public static string Run(int index, int port, int reportFd, int parentFd, string phaseFile)
    {
        try
        {
            var endpoint = BenchEndpoint.Parse($"tcp:127.0.0.1:{port}");
            // Two accept threads: one ends up reading the held connection, the other serves the phases.
            BenchServer.StartAccepting(endpoint.Listen(), 2);
            int held = endpoint.Connect();
            RawIo.WriteByte(held, BenchServer.PingPong);
            RawIo.ReadByte(held);
            GC.KeepAlive(held);
            return Idle(index, endpoint, reportFd, parentFd, phaseFile);
        }
        catch (BenchIoException e)
        {
            Report(reportFd, $"failed {index} {e.Message.ReplaceLineEndings(" ")}");
            throw;
        }
    }

    private static string Idle(int index, BenchEndpoint endpoint, int reportFd, int parentFd, string phaseFile)
    {
        int wake = eventfd(0, EFD_CLOEXEC);
        if (wake < 0) throw new BenchIoException("eventfd", errno);
        using var usr1 = PosixSignalRegistration.Create((PosixSignal)SigUsr1, ctx =>
        {
            ctx.Cancel = true;
            ulong one = 1;
            write(wake, &one, 8);
        });
        Report(reportFd, $"ready {index}");
        var fds = stackalloc pollfd[2];
        int failures = 0;
        while (true)
        {
            fds[0] = new pollfd { fd = parentFd, events = PollIn };
            fds[1] = new pollfd { fd = wake, events = PollIn };
            if (poll(fds, 2, -1) < 0)
            {
                // EINTR when our own SIGUSR1 lands on this thread; errno itself is not reliable after the runtime's transition.
                if (++failures < 100) continue;
                throw new BenchIoException("poll keeps failing", 0);
            }
            failures = 0;
            // Nobody writes to the parent pipe: any event is its end.
            if (fds[0].revents != 0) return "";
            if (fds[1].revents == 0) continue;
            ulong count;
            read(wake, &count, 8);
            var phase = File.ReadAllText(phaseFile).Split(' ');
            long startAt = long.Parse(phase[0], CultureInfo.InvariantCulture);
            double seconds = double.Parse(phase[1], CultureInfo.InvariantCulture);
            int warmUp = int.Parse(phase[2], CultureInfo.InvariantCulture);
            try
            {
                for (int i = 0; i < warmUp; i++) Workloads.OneShortConnection(endpoint);
                var (conns, start, end) = ShortConnections(endpoint, startAt, seconds);
                Report(reportFd, $"done {index} conns={conns} start={start} end={end}");
            }
            catch (BenchIoException e)
            {
                Report(reportFd, $"failed {index} {e.Message.ReplaceLineEndings(" ")}");
            }
        }
    }

    private static (long Conns, long Start, long End) ShortConnections(BenchEndpoint endpoint, long startAt, double seconds)
    {
        long now = Stopwatch.GetTimestamp();
        if (now < startAt) Thread.Sleep(Stopwatch.GetElapsedTime(now, startAt));
        long start = Stopwatch.GetTimestamp();
        long until = start + (long)(seconds * Stopwatch.Frequency);
        long n = 0;
        // The clock is read after every connection: with 1,000 targets on a few cores, a batch per target would outlast the phase.
        do
        {
            Workloads.OneShortConnection(endpoint);
            n++;
        } while (Stopwatch.GetTimestamp() < until);
        return (n, start, Stopwatch.GetTimestamp());
    }

    /// <summary>One line in one write: below PIPE_BUF, so lines of many targets never interleave.</summary>
    private static void Report(int fd, string line)
    {
        var bytes = Encoding.UTF8.GetBytes(line + "\n");
        fixed (byte* p = bytes)
        {
            long r;
            do r = write(fd, p, (size_t)(ulong)bytes.Length); while (r < 0 && errno == EINTR);
            if (r < 0) throw new BenchIoException("write to the report pipe", errno);
        }
    }
}
