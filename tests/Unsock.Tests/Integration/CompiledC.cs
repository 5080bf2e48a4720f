namespace Unsock.Tests.Integration;

/// <summary>Small C test programs under Programs/, compiled once per test run with the system's gcc.</summary>
public static class CompiledC
{
    private static readonly Dictionary<string, Lazy<string>> Built = new();

    /// <summary>Compiles Programs/<paramref name="source"/> into artifacts/c/ (once) and returns the binary's path.</summary>
    public static string Build(string source, params string[] flags)
    {
        Lazy<string> lazy;
        lock (Built)
            if (!Built.TryGetValue(source, out lazy!)) Built[source] = lazy = new Lazy<string>(() => Compile(source, flags));
        return lazy.Value;
    }

    private static string Compile(string source, string[] flags)
    {
        string output = Path.Combine(Launcher.RepoRoot, "artifacts", "c", Path.GetFileNameWithoutExtension(source));
        Directory.CreateDirectory(Path.GetDirectoryName(output)!);
        using var gcc = new RunningProgram("gcc", ["-O2", "-Wall", "-o", output, Launcher.Program(source), .. flags]);
        if (gcc.WaitForExit(TimeSpan.FromMinutes(2)) != 0) throw new InvalidOperationException($"gcc {source} failed (is gcc installed?)\n{gcc.Describe()}");
        return output;
    }
}

/// <summary>Tests that load the machine so much that they run after the others, one class at a time.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class RunsAlone
{
    public const string Name = "runs alone";
}
