using System.Text.Json;

namespace Unsock.Tests.Integration;

/// <summary>
/// Targets that attack the supervisor through the files at their socket paths. Each attack runs next to a
/// victim program, which must still be served promptly: nothing a target puts on disk may block a
/// notification thread, and nothing may make a root supervisor remove what the target could not.
/// </summary>
public class HostileFileTests : IntegrationTest
{
    private const int Nobody = 65534;

    private static string Attack => Launcher.Program("fileattack.py");

    /// <summary>Runs an attack from fileattack.py under the launcher and checks the victim's connects.</summary>
    private static void VictimIsServedDuring(string attack, int port, int victimPort)
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Attack, attack, dir["socks"], $"{port}", $"{victimPort}"]);
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        using var result = JsonDocument.Parse(p.Stdout);
        var root = result.RootElement;
        Assert.True(root.GetProperty("stuck").GetInt32() == 0, $"victim connects never served while the attack ran: {p.Stdout}");
        Assert.True(root.GetProperty("failed").GetArrayLength() == 0, p.Stdout);
        Assert.True(root.GetProperty("slowest").GetDouble() < 1.0, $"a victim connect took a second or more: {p.Stdout}");
    }

    [Fact]
    public void FifoSwappedInAtTheSocketPathBlocksNoNotificationThread() => VictimIsServedDuring("fifo-swap", 7301, 7302);

    [Fact]
    public void WriteLeaseOnA452ByteFileAtTheSocketPathBlocksNoNotificationThread() => VictimIsServedDuring("lease", 7311, 7312);

    [Fact]
    public void SymlinkSwapOfTheSocketDirectoryDuringCleanupRemovesNothingOfRoots()
    {
        Assert.True(Environment.IsPrivilegedProcess, "this test needs root, as CI and the development machines have");
        // A race on the supervisor's side: several rounds, each with many files removed in each way.
        for (int round = 0; round < 3; round++) SymlinkSwapRound(9400 + round * 40, 30);
    }

    private static void SymlinkSwapRound(int firstPort, int count)
    {
        using var dir = new TempDir();
        File.SetUnixFileMode(dir.Path, (UnixFileMode)0x1FF);
        // The target's socket directory is created (by the supervisor, as the target) in a directory where the
        // target may rename things; next to it, a symlink to a root-only directory full of root's socket files.
        Directory.CreateDirectory(dir["p"]);
        File.SetUnixFileMode(dir["p"], (UnixFileMode)0x1FF);
        Directory.CreateDirectory(dir["root-only"]);
        File.SetUnixFileMode(dir["root-only"], (UnixFileMode)0x1ED);
        var rootFiles = Enumerable.Range(firstPort, count).Select(port => dir[$"root-only/{port}.sock"]).ToList();
        string bindAll = $"import socket\nfor p in {JsonSerializer.Serialize(rootFiles)}: socket.socket(socket.AF_UNIX).bind(p)";
        using (var make = new RunningProgram(Py, ["-c", bindAll])) Assert.True(0 == make.WaitForExit(Long), make.Describe());
        File.CreateSymbolicLink(dir["p/link"], dir["root-only"]);
        string policy = Policies.Write(dir, $$"""
            { "rules": [ { "address": "127.0.0.0/8", "directory": "{{dir["p/socks"]}}" } ] }
            """);

        using var target = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "setpriv", $"--reuid={Nobody}", $"--regid={Nobody}",
            "--clear-groups", Py, Attack, "hold-listeners", $"{firstPort}", $"{count}", dir["go"]]);
        Assert.True(Wait.Until(() => target.Stdout.Contains("listening") || target.HasExited, TimeSpan.FromSeconds(30)), target.Describe());
        Assert.False(target.HasExited, target.Describe());
        // The attacker runs outside the launcher, as the target's user, until after the last cleanup.
        using var swapper = new RunningProgram("setpriv", [$"--reuid={Nobody}", $"--regid={Nobody}", "--clear-groups", Py, Attack,
            "swap-dirs", dir["p/socks"], dir["p/link"]]);
        Thread.Sleep(200);
        File.WriteAllText(dir["go"], "");
        Assert.True(0 == target.WaitForExit(Long), target.Describe());
        Assert.False(swapper.HasExited, "the swapper stopped early: " + swapper.Describe());
        swapper.Signal(9);
        swapper.WaitForExit(Long);

        var deleted = rootFiles.Where(f => !Exists(f)).ToList();
        Assert.True(deleted.Count == 0, $"root's files deleted: {string.Join(", ", deleted)}");
        // Our own files went, from wherever their directory ended up.
        foreach (var name in new[] { "p/socks", "p/link" })
        {
            if ((File.GetAttributes(dir[name]) & FileAttributes.ReparsePoint) != 0) continue;
            var left = Directory.GetFileSystemEntries(dir[name]);
            Assert.True(left.Length == 0, $"socket files left in the target's directory: {string.Join(", ", left)}\n{target.Describe()}");
        }
    }

    [Fact]
    public void SecondBindOfABoundButNotListeningAddressFailsWithEaddrinuse()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Attack, "two-binds", "7501"]);
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        using var result = JsonDocument.Parse(p.Stdout);
        Assert.Equal(98, result.RootElement.GetProperty("second").GetInt32()); // EADDRINUSE, as TCP says
        Assert.Equal("first", result.RootElement.GetProperty("first_got").GetString());
    }

    [Fact]
    public void SocketPathTooLongForSunPathLeaksNoDirectoryFd()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["long"]);
        // The directory exists and opens; the file name alone is too long even behind /proc/self/fd/N/.
        string policy = Policies.Write(dir, $$"""
            { "rules": [ { "address": "127.0.0.0/8", "unix": "{{dir["long"]}}/{{new string('n', 110)}}-%p.sock" } ] }
            """);
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Attack, "long-names", "7601", "1000", dir["go"]],
            new Dictionary<string, string?> { ["HOLD"] = "30" });
        Assert.True(Wait.Until(() => p.Stdout.Contains("warm") || p.HasExited, TimeSpan.FromSeconds(30)), p.Describe());
        int before = Directory.GetFileSystemEntries($"/proc/{p.Pid}/fd").Length;
        File.WriteAllText(dir["go"], "");
        Assert.True(Wait.Until(() => p.Stdout.Contains("errors") || p.HasExited, TimeSpan.FromSeconds(60)), p.Describe());
        int after = Directory.GetFileSystemEntries($"/proc/{p.Pid}/fd").Length;
        using var result = JsonDocument.Parse(p.Stdout[p.Stdout.IndexOf('{')..]);
        var errors = result.RootElement.GetProperty("errors");
        Assert.Equal(1220, errors.GetProperty("36").GetInt32()); // ENAMETOOLONG, every time
        Assert.Single(errors.EnumerateObject());
        Assert.True(after - before < 25, $"the launcher went from {before} to {after} fds over 1,200 calls");
    }

    [Fact]
    public void SocketFilesHaveTheirFinalModeFromTheMomentTheyExist()
    {
        using var dir = new TempDir();
        string socks = dir["socks"];
        string policy = Policies.Write(dir, $$"""
            { "rules": [
              { "address": "127.0.0.1", "port": 7703, "directory": "{{socks}}", "mode": "0604" },
              { "address": "127.0.0.1", "directory": "{{socks}}" }
            ] }
            """);
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Attack, "created-modes", socks, "7702", "7703"]);
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        using var result = JsonDocument.Parse(p.Stdout);
        var modes = result.RootElement.GetProperty("modes");
        Assert.Equal("0o750", modes.GetProperty("7702").GetString()); // 0777 under the program's umask 027
        Assert.Equal("0o604", modes.GetProperty("7703").GetString()); // the rule's mode, whatever the umask
        var events = result.RootElement.GetProperty("events").EnumerateArray().Select(e => e.GetString()).ToList();
        Assert.Contains("create 7702.sock", events);
        Assert.Contains("create 7703.sock", events);
        Assert.True(!events.Any(e => e!.StartsWith("attrib")), $"a socket file's mode was changed after it existed: {p.Stdout}");
    }

    private static bool Exists(string path)
    {
        var st = new Tmds.Linux.stat();
        unsafe
        {
            var bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
            fixed (byte* p = bytes) return Tmds.Linux.LibC.lstat(p, &st) == 0;
        }
    }
}
