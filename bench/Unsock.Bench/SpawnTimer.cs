using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Unsock.Bench;

/// <summary>
/// Scenario 4: wall time from posix_spawn to waitpid of a command, N times; prints the median. posix_spawn
/// (vfork + exec in glibc) keeps our own share of the measurement small and equal for every command.
/// </summary>
internal static unsafe partial class SpawnTimer
{
    [LibraryImport("libc", EntryPoint = "posix_spawn", SetLastError = false)]
    private static partial int PosixSpawn(out int pid, byte* path, void* fileActions, void* attributes, byte** argv, byte** envp);

    [LibraryImport("libc", EntryPoint = "waitpid", SetLastError = true)]
    private static partial int WaitPid(int pid, out int status, int options);

    public static string Run(IReadOnlyList<string> command, int count)
    {
        if (command.Count == 0 || !command[0].StartsWith('/')) throw new BenchUsageException("spawn needs an absolute command path after --");
        var argv = Strings(command);
        var env = Strings(Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .Select(e => $"{e.Key}={e.Value}").ToList());
        var samples = new double[count];
        for (int i = -3; i < count; i++) // three warm-ups fill the page cache
        {
            long t0 = Stopwatch.GetTimestamp();
            int err = PosixSpawn(out int pid, argv[0], null, null, argv, env);
            if (err != 0) throw new BenchIoException($"posix_spawn {command[0]}", err);
            int status;
            while (WaitPid(pid, out status, 0) < 0 && Marshal.GetLastPInvokeError() == 4 /* EINTR */) { }
            double us = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
            if (status != 0) throw new BenchUsageException($"{string.Join(' ', command)} exited with wait status {status}");
            if (i >= 0) samples[i] = us;
        }
        Array.Sort(samples);
        return $"median_us={samples[count / 2]:F0} min_us={samples[0]:F0}";
    }

    /// <summary>A NULL-terminated char* array; lives until the process ends (a bench run is short).</summary>
    private static byte** Strings(IReadOnlyList<string> values)
    {
        var array = (byte**)NativeMemory.Alloc((nuint)(values.Count + 1), (nuint)sizeof(byte*));
        for (int i = 0; i < values.Count; i++) array[i] = (byte*)Marshal.StringToCoTaskMemUTF8(values[i]);
        array[values.Count] = null;
        return array;
    }
}
