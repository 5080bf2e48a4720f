using System.Diagnostics;
using System.Runtime.InteropServices;
using static Tmds.Linux.LibC;

namespace Unsock.Bench;

/// <summary>The client side of the scenarios. Each prints one line of key=value results on stdout.</summary>
internal static unsafe class Workloads
{
    /// <summary>
    /// Scenario 1: connect, 1-byte request, 1-byte answer, close, for a fixed time on N threads. Also reports
    /// the CPU per connection of this process and of each <paramref name="watched"/> one over the timed part
    /// (cpu_LABEL_us=...), e.g. the server and the supervisors.
    /// </summary>
    public static string ShortConnections(BenchEndpoint endpoint, int clients, double seconds, List<(string Label, int Pid)>? watched = null)
    {
        watched ??= [];
        for (int i = 0; i < 200; i++) OneShortConnection(endpoint); // warm the server's threads and caches
        var counts = new long[clients * 16]; // one cache line apart
        using var go = new Barrier(clients + 1);
        long start = 0, deadline = 0;
        var threads = new Thread[clients];
        var failures = new Exception?[clients];
        for (int t = 0; t < clients; t++)
        {
            int index = t;
            threads[t] = new Thread(() =>
            {
                go.SignalAndWait();
                long until = Volatile.Read(ref deadline);
                long n = 0;
                try
                {
                    // Check the clock every 16 connections: the vDSO call is cheap but not free.
                    do
                    {
                        for (int k = 0; k < 16; k++) OneShortConnection(endpoint);
                        n += 16;
                    } while (Stopwatch.GetTimestamp() < until);
                }
                catch (Exception e) { failures[index] = e; }
                counts[index * 16] = n;
            }, 256 * 1024);
            threads[t].Start();
        }
        var cpuBefore = watched.Select(w => ProcessCpu.Of(w.Pid)).ToArray();
        long selfBefore = ProcessCpu.Self();
        start = Stopwatch.GetTimestamp();
        Volatile.Write(ref deadline, start + (long)(seconds * Stopwatch.Frequency));
        go.SignalAndWait();
        foreach (var t in threads) t.Join();
        long end = Stopwatch.GetTimestamp();
        long selfAfter = ProcessCpu.Self();
        var cpuAfter = watched.Select(w => ProcessCpu.Of(w.Pid)).ToArray();
        foreach (var f in failures) if (f is not null) throw f;
        long total = 0;
        for (int t = 0; t < clients; t++) total += counts[t * 16];
        double rate = total / Stopwatch.GetElapsedTime(start, end).TotalSeconds;
        var line = new System.Text.StringBuilder($"conns={total} conn_per_s={rate:F0}");
        double PerConn(long ns) => total > 0 ? ns / 1000.0 / total : double.NaN;
        line.Append(System.FormattableString.Invariant($" cpu_client_us={PerConn(selfAfter - selfBefore):F2}"));
        for (int i = 0; i < watched.Count; i++)
            if (cpuBefore[i] >= 0 && cpuAfter[i] >= 0)
                line.Append(System.FormattableString.Invariant($" cpu_{watched[i].Label}_us={PerConn(cpuAfter[i] - cpuBefore[i]):F2}"));
        return line.ToString();
    }

    /// <summary>
    /// The restart scenario's client: short connections one after another (connect, 1-byte request, 1-byte answer,
    /// close) until <paramref name="untilFile"/> exists, each timed from connect to the answer. A failed one is counted
    /// and the loop goes on (its error goes to stderr), so the line says both how long the longest one waited and
    /// whether any was lost. <paramref name="readyFile"/> is written after the first connection that worked.
    /// </summary>
    public static string Probe(BenchEndpoint endpoint, string untilFile, string? readyFile, double maxSeconds)
    {
        long conns = 0, failed = 0, longest = 0, longestAt = 0;
        long start = Stopwatch.GetTimestamp(), limit = start + (long)(maxSeconds * Stopwatch.Frequency), nextCheck = 0;
        while (true)
        {
            long t0 = Stopwatch.GetTimestamp();
            if (t0 >= nextCheck)
            {
                // A stat every 10 ms, not per connection: the loop is what is measured.
                if (File.Exists(untilFile) || t0 > limit) break;
                nextCheck = t0 + Stopwatch.Frequency / 100;
            }
            try
            {
                OneShortConnection(endpoint);
                if (conns++ == 0 && readyFile is not null) File.WriteAllText(readyFile, Environment.ProcessId.ToString());
            }
            catch (BenchIoException e)
            {
                // When it failed and how long it had waited tell a call that waited through a restart from one made after it.
                long now = Stopwatch.GetTimestamp();
                if (failed++ < 5)
                    Console.Error.WriteLine(System.FormattableString.Invariant(
                        $"unsock-bench probe: {e.Message}, at {(now - start) * 1000.0 / Stopwatch.Frequency:F0} ms, after {(now - t0) * 1000.0 / Stopwatch.Frequency:F0} ms"));
                Thread.Sleep(1); // a refused connect returns at once: count the moments lost, not a spin
            }
            long took = Stopwatch.GetTimestamp() - t0;
            if (took > longest) (longest, longestAt) = (took, t0 - start);
        }
        double ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
        return System.FormattableString.Invariant(
            $"conns={conns} failed={failed} max_us={ms(longest) * 1000:F0} max_at_ms={ms(longestAt):F0} seconds={ms(Stopwatch.GetTimestamp() - start) / 1000:F2}");
    }

    public static void OneShortConnection(BenchEndpoint endpoint)
    {
        int fd = endpoint.Connect();
        try
        {
            RawIo.WriteByte(fd, BenchServer.ShortConnection);
            RawIo.ReadByte(fd);
        }
        finally { close(fd); }
    }

    /// <summary>Scenario 2: 1-byte ping-pong on one connection; every round trip is timed.</summary>
    public static string PingPong(BenchEndpoint endpoint, int count)
    {
        int fd = endpoint.Connect();
        var samples = new long[count];
        try
        {
            RawIo.WriteByte(fd, BenchServer.PingPong);
            RawIo.ReadByte(fd);
            for (int i = 0; i < Math.Min(count, 2000); i++) { RawIo.WriteByte(fd, 0); RawIo.ReadByte(fd); } // warm-up
            for (int i = 0; i < count; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                RawIo.WriteByte(fd, 0);
                RawIo.ReadByte(fd);
                samples[i] = Stopwatch.GetTimestamp() - t0;
            }
        }
        finally { close(fd); }
        Array.Sort(samples);
        double us(long ticks) => ticks * 1e6 / Stopwatch.Frequency;
        return $"median_us={us(samples[count / 2]):F2} p99_us={us(samples[(int)(count * 0.99)]):F2}";
    }

    /// <summary>Scenario 3: 64 KiB writes on one connection for a fixed time; ends when the server has read everything.</summary>
    public static string Stream(BenchEndpoint endpoint, double seconds, int chunk)
    {
        int fd = endpoint.Connect();
        byte* buffer = (byte*)NativeMemory.AllocZeroed((nuint)chunk);
        long bytes = 0;
        long start, end;
        try
        {
            RawIo.WriteByte(fd, BenchServer.Stream);
            for (int i = 0; i < 256; i++) RawIo.WriteAll(fd, buffer, chunk); // warm-up: grow the buffers
            start = Stopwatch.GetTimestamp();
            long until = start + (long)(seconds * Stopwatch.Frequency);
            do
            {
                for (int k = 0; k < 16; k++) RawIo.WriteAll(fd, buffer, chunk);
                bytes += 16L * chunk;
            } while (Stopwatch.GetTimestamp() < until);
            if (shutdown(fd, SHUT_WR) < 0) throw new BenchIoException("shutdown", errno);
            RawIo.ReadByte(fd);
            end = Stopwatch.GetTimestamp();
        }
        finally
        {
            close(fd);
            NativeMemory.Free(buffer);
        }
        double gbps = bytes / Stopwatch.GetElapsedTime(start, end).TotalSeconds / 1e9;
        return $"bytes={bytes} gb_per_s={gbps:F3}";
    }

    /// <summary>
    /// Scenario 7, one target: wait for a common start time, make short connections, then hold one
    /// connection open until the release file appears (so the supervisor can be measured with idle targets).
    /// </summary>
    public static string Storm(BenchEndpoint endpoint, int conns, long startAt, BenchEndpoint? hold, string? releaseFile, double maxHoldSeconds)
    {
        long now = Stopwatch.GetTimestamp();
        if (now < startAt)
        {
            var wait = Stopwatch.GetElapsedTime(now, startAt);
            if (wait > TimeSpan.FromMilliseconds(2)) Thread.Sleep(wait - TimeSpan.FromMilliseconds(1));
            while (Stopwatch.GetTimestamp() < startAt) Thread.SpinWait(20);
        }
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < conns; i++) OneShortConnection(endpoint);
        long end = Stopwatch.GetTimestamp();
        int held = hold?.Connect() ?? -1;
        long lateUs = Math.Max(0, (start - startAt) * 1_000_000 / Stopwatch.Frequency);
        Console.Out.WriteLine($"start={start} end={end} conns={conns} late_us={lateUs}");
        Console.Out.Flush();
        var holdUntil = Stopwatch.GetTimestamp() + (long)(maxHoldSeconds * Stopwatch.Frequency);
        while (releaseFile is not null && !File.Exists(releaseFile) && Stopwatch.GetTimestamp() < holdUntil) Thread.Sleep(20);
        if (held >= 0) close(held);
        return "";
    }
}
