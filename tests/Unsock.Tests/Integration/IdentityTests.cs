namespace Unsock.Tests.Integration;

/// <summary>A root supervisor serving an unprivileged target acts with the target's file permissions.</summary>
public class IdentityTests : IntegrationTest
{
    private const int Nobody = 65534;

    private static string[] AsNobody(string policy, params string[] command) =>
        ["--policy", policy, "--", "setpriv", $"--reuid={Nobody}", $"--regid={Nobody}", "--clear-groups", .. command];

    private static TempDir OpenTempDir()
    {
        Assert.True(Environment.IsPrivilegedProcess, "these tests need root, as CI and the development machines have");
        var dir = new TempDir();
        File.SetUnixFileMode(dir.Path, (UnixFileMode)0x1FF); // nobody must reach it
        return dir;
    }

    [Fact]
    public void SocketFilesAndDirectoriesBelongToTheTargetsUser()
    {
        using var dir = OpenTempDir();
        string policy = Policies.Loopback(dir);
        using var p = new RunningProgram(Launcher.Path, AsNobody(policy, Launcher.Python, Launcher.Program("netprobe.py"), "bind", "127.0.0.1", "8600"),
            new Dictionary<string, string?> { ["HOLD"] = "30" });
        Wait.ForListener(dir["socks/8600.sock"], p);
        Assert.Equal(Nobody, Owner(dir["socks/8600.sock"]));
        Assert.Equal(Nobody, Owner(dir["socks"]));
        p.Signal(15);
        p.WaitForExit(Long);
    }

    [Fact]
    public void TargetCannotReachASocketFileItHasNoPermissionFor()
    {
        using var dir = OpenTempDir();
        string policy = Policies.Loopback(dir);
        // A root-only server socket: mode 0600, owned by root.
        using var server = new RunningProgram(Launcher.Path, ["--policy", Policies.Write(dir, $$"""
            { "rules": [ { "address": "127.0.0.0/8", "directory": "{{dir.Path}}/socks", "mode": "0600" } ] }
            """, "server.json"), "--", Launcher.Python, Launcher.Program("netprobe.py"), "serve-echo", "127.0.0.1", "8601"]);
        Wait.ForListener(dir["socks/8601.sock"], server);
        File.SetUnixFileMode(dir["socks"], (UnixFileMode)0x1ED);
        using var client = new RunningProgram(Launcher.Path, AsNobody(policy, Launcher.Python, Launcher.Program("netprobe.py"), "connect", "127.0.0.1", "8601"));
        Assert.True(0 == client.WaitForExit(Long), client.Describe());
        Assert.Equal("errno 13\n", client.Stdout); // EACCES, although the supervisor itself is root
    }

    private static int Owner(string path)
    {
        var st = new Tmds.Linux.stat();
        unsafe
        {
            var bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
            fixed (byte* p = bytes) Assert.Equal(0, Tmds.Linux.LibC.lstat(p, &st));
        }
        return (int)(uint)st.st_uid;
    }
}
