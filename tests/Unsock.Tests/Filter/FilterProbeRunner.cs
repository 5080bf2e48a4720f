using System.Diagnostics;
using System.Reflection;
using Unsock.Core.Filter;

namespace Unsock.Tests.Filter;

/// <summary>
/// Runs tests/Unsock.FilterProbe (a separate process, since an installed filter cannot be removed)
/// and builds it first when its dll is missing or older than its sources or Unsock.Core.
/// </summary>
internal static class FilterProbeRunner
{
    private static readonly Lazy<string> ProbeDll = new(BuildProbe, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Runs the probe on <paramref name="program"/> and returns its lines keyed by spec.</summary>
    public static Dictionary<string, (long Result, int Errno)> Run(SeccompProgram program, IEnumerable<string> options, IEnumerable<string> specs)
    {
        string bpf = Path.Combine(Path.GetTempPath(), $"unsock-filter-{Guid.NewGuid():N}.bpf");
        File.WriteAllBytes(bpf, program.Bytes.ToArray());
        try
        {
            string output = RunProcess("dotnet", [ProbeDll.Value, bpf, .. options, .. specs], TimeSpan.FromSeconds(20));
            var results = new Dictionary<string, (long, int)>();
            foreach (string line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                string[] fields = line.Split(' ');
                results[fields[0]] = fields.Length == 3 && long.TryParse(fields[1], out long r) && int.TryParse(fields[2], out int e)
                    ? (r, e)
                    : throw new InvalidOperationException($"probe printed an unexpected line: '{line}'");
            }

            return results;
        }
        finally
        {
            File.Delete(bpf);
        }
    }

    /// <summary>Runs the probe and returns its raw output.</summary>
    public static string RunRaw(SeccompProgram program, params string[] arguments)
    {
        string bpf = Path.Combine(Path.GetTempPath(), $"unsock-filter-{Guid.NewGuid():N}.bpf");
        File.WriteAllBytes(bpf, program.Bytes.ToArray());
        try
        {
            return RunProcess("dotnet", [ProbeDll.Value, bpf, .. arguments], TimeSpan.FromSeconds(20));
        }
        finally
        {
            File.Delete(bpf);
        }
    }

    private static string BuildProbe()
    {
        string root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Unsock.sln")))
        {
            root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException($"no Unsock.sln above {AppContext.BaseDirectory}");
        }

        string configuration = typeof(FilterProbeRunner).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Debug";
        string project = Path.Combine(root, "tests", "Unsock.FilterProbe");
        string dll = Path.Combine(project, "bin", configuration, "net10.0", "linux-x64", "Unsock.FilterProbe.dll");

        DateTime newestInput = Directory.EnumerateFiles(project, "*.cs*", SearchOption.TopDirectoryOnly)
            .Append(typeof(SeccompFilter).Assembly.Location)
            .Max(File.GetLastWriteTimeUtc);
        if (!File.Exists(dll) || File.GetLastWriteTimeUtc(dll) < newestInput)
        {
            RunProcess("dotnet", ["build", project, "-c", configuration, "--nologo", "-v", "q"], TimeSpan.FromMinutes(3));
        }

        return dll;
    }

    private static string RunProcess(string file, string[] arguments, TimeSpan timeout)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        arguments.ToList().ForEach(start.ArgumentList.Add);
        using Process process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {file}");
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', arguments)} did not finish within {timeout}");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', arguments)} exited with {process.ExitCode}: {stderr.Result}{stdout.Result}");
        }

        return stdout.Result;
    }
}
