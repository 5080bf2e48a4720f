using System.Diagnostics;
using System.Text;

namespace Unsock.Tests.Integration;

/// <summary>
/// The NativeAOT launcher as users run it, published once per test run into artifacts/, and helpers to
/// run real programs under it.
/// </summary>
public static class Launcher
{
    private static readonly Lazy<string> Published = new(Publish, LazyThreadSafetyMode.ExecutionAndPublication);

    public static string RepoRoot { get; } = FindRepoRoot();

    public static string Path => Published.Value;

    public static string ProgramsDir => System.IO.Path.Combine(RepoRoot, "tests", "Unsock.Tests", "Programs");

    public static string Program(string name) => System.IO.Path.Combine(ProgramsDir, name);

    /// <summary>The python3 the tests drive: the system one, as CI installs it.</summary>
    public static string Python => File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

    private static string FindRepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(System.IO.Path.Combine(dir.FullName, "Unsock.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("cannot find Unsock.sln above " + AppContext.BaseDirectory);
    }

    private static string Publish()
    {
        string? preset = Environment.GetEnvironmentVariable("UNSOCK_LAUNCHER");
        if (!string.IsNullOrEmpty(preset)) return preset;
        string output = System.IO.Path.Combine(RepoRoot, "artifacts", "test-launcher");
        var psi = new ProcessStartInfo("dotnet", ["publish", System.IO.Path.Combine(RepoRoot, "src", "Unsock.Launcher"), "-c", "Release", "-o", output, "--nologo", "-v", "q"])
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        using var p = System.Diagnostics.Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(8))) { p.Kill(true); throw new TimeoutException("dotnet publish of the launcher took over 8 minutes"); }
        if (p.ExitCode != 0) throw new InvalidOperationException($"dotnet publish of the launcher failed:\n{stdout.Result}\n{stderr.Result}");
        return System.IO.Path.Combine(output, "unsock-launch");
    }
}

/// <summary>What every integration test uses: the time a program may take, python3, the probe script.</summary>
public abstract class IntegrationTest
{
    protected static readonly TimeSpan Long = TimeSpan.FromSeconds(60);

    protected static string Py => Launcher.Python;

    protected static string Probe => Launcher.Program("netprobe.py");
}

/// <summary>A temporary directory, removed afterwards.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("unsock-test-").FullName;

    public string this[string name] => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>A started program with captured output.</summary>
public sealed class RunningProgram : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stdout = new(), _stderr = new();
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly string _file;

    /// <summary>env(1)'s option that resets the signals a launcher relays.</summary>
    public const string DefaultSignals = "--default-signal=HUP,INT,QUIT,USR1,USR2,TERM,WINCH";

    public RunningProgram(string file, IEnumerable<string> args, IDictionary<string, string?>? env = null, string? stdin = null,
        string? workingDirectory = null)
    {
        // The program starts with the signals at their defaults, as from a terminal, however this test run was started
        // (nohup ignores HUP, a background job INT and QUIT): the launcher hands ignored signals on as ignored.
        var psi = new ProcessStartInfo("env")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? "",
        };
        psi.ArgumentList.Add(DefaultSignals);
        psi.ArgumentList.Add(file);
        foreach (var a in args) psi.ArgumentList.Add(a);
        _file = file;
        if (env is not null)
            foreach (var (k, v) in env)
                if (v is null) psi.Environment.Remove(k); else psi.Environment[k] = v;
        _process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_stdout) _stdout.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_stderr) _stderr.AppendLine(e.Data); };
        _process.Exited += (_, _) => _exited.TrySetResult();
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        if (stdin is not null) _process.StandardInput.Write(stdin);
        _process.StandardInput.Close();
    }

    public int Pid => _process.Id;

    public string Stdout { get { lock (_stdout) return _stdout.ToString(); } }

    public string Stderr { get { lock (_stderr) return _stderr.ToString(); } }

    public bool HasExited => _process.HasExited;

    /// <summary>Waits for exit; fails the test with the output if it takes longer than <paramref name="timeout"/>.</summary>
    public int WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
        {
            _process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{_file} did not exit within {timeout}.\nstdout:\n{Stdout}\nstderr:\n{Stderr}");
        }
        _process.WaitForExit(); // drains the output readers
        return _process.ExitCode;
    }

    public void Signal(int signal) => Tmds.Linux.LibC.kill(_process.Id, signal);

    public string Describe() => $"exit {(_process.HasExited ? _process.ExitCode.ToString() : "running")}\nstdout:\n{Stdout}\nstderr:\n{Stderr}";

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            try { _process.Kill(entireProcessTree: true); _process.WaitForExit(5000); } catch (InvalidOperationException) { }
        }
        _process.Dispose();
    }
}

public static class Wait
{
    /// <summary>Polls until <paramref name="condition"/> holds; false after <paramref name="timeout"/>.</summary>
    public static bool Until(Func<bool> condition, TimeSpan timeout)
    {
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < timeout)
        {
            if (condition()) return true;
            Thread.Sleep(20);
        }
        return condition();
    }

    /// <summary>
    /// Waits until a socket file exists and a socket listens on it. The file appears at bind, before listen:
    /// a client that connects in between is refused, so the file alone is not enough.
    /// </summary>
    public static void ForListener(string path, RunningProgram owner, double seconds = 20)
    {
        if (!Until(() => (File.Exists(path) && IsListening(path)) || owner.HasExited, TimeSpan.FromSeconds(seconds)) || owner.HasExited)
            throw new Xunit.Sdk.XunitException($"nothing listened on {path}.\n{owner.Describe()}");
    }

    /// <summary>A listening Unix socket whose path ends like <paramref name="path"/> (long paths are bound through /proc/self/fd).</summary>
    private static bool IsListening(string path)
    {
        string tail = "/" + System.IO.Path.GetFileName(path);
        foreach (var line in File.ReadLines("/proc/net/unix"))
        {
            var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length < 8 || !fields[7].EndsWith(tail, StringComparison.Ordinal)) continue;
            if (fields[7] != path && !fields[7].StartsWith("/proc/self/fd/", StringComparison.Ordinal)) continue;
            if ((Convert.ToUInt32(fields[3], 16) & 0x10000) != 0) return true; // __SO_ACCEPTCON
        }
        return false;
    }
}
