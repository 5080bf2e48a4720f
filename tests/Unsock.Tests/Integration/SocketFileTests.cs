using System.Net.Sockets;

namespace Unsock.Tests.Integration;

/// <summary>The socket files bind creates: where, with which mode, and that they go away.</summary>
public class SocketFileTests : IntegrationTest
{
    [Fact]
    public void StaleSocketFileIsReplacedButAForeignFileIsKept()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        Directory.CreateDirectory(dir["socks"]);
        // A stale socket file: bound, then its socket closed (.NET's Socket would delete its file on close).
        using (var stale = new RunningProgram(Launcher.Python, ["-c", $"import socket; socket.socket(socket.AF_UNIX).bind('{dir["socks/8100.sock"]}')"]))
            Assert.Equal(0, stale.WaitForExit(Long));
        Assert.True(File.Exists(dir["socks/8100.sock"]));
        using (var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "bind", "127.0.0.1", "8100"]))
        {
            Assert.True(0 == p.WaitForExit(Long), p.Describe());
            Assert.Equal("bound\n", p.Stdout);
        }
        File.WriteAllText(dir["socks/8101.sock"], "precious");
        using (var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "bind", "127.0.0.1", "8101"]))
        {
            Assert.True(0 == p.WaitForExit(Long), p.Describe());
            Assert.Equal("errno 98\n", p.Stdout); // EADDRINUSE
        }
        Assert.Equal("precious", File.ReadAllText(dir["socks/8101.sock"]));
    }

    [Fact]
    public void LiveListenerIsNotReplaced()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        Directory.CreateDirectory(dir["socks"]);
        using var live = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        live.Bind(new UnixDomainSocketEndPoint(dir["socks/8102.sock"]));
        live.Listen();
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "bind", "127.0.0.1", "8102"]);
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        Assert.Equal("errno 98\n", p.Stdout);
        live.Blocking = false;
        Assert.Throws<SocketException>(() => live.Accept()); // no probe connection reached the live server
    }

    [Fact]
    public void ModeIsAppliedToTheSocketFile()
    {
        using var dir = new TempDir();
        string policy = Policies.Write(dir, $$"""
            { "rules": [ { "direction": "bind", "address": "127.0.0.1", "unix": "{{dir.Path}}/deep/er/%a-%p.sock", "mode": "0600" } ] }
            """);
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "bind", "127.0.0.1", "8200"], new Dictionary<string, string?> { ["HOLD"] = "30" });
        string file = dir["deep/er/127.0.0.1-8200.sock"];
        Wait.ForListener(file, p);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
        Assert.True((File.GetAttributes(file) & FileAttributes.Directory) == 0);
        p.Signal(15);
        p.WaitForExit(Long);
    }

    [Fact]
    public void SigkilledServerLeavesNoSocketFile()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var server = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "serve-echo", "127.0.0.1", "8300"]);
        Wait.ForListener(dir["socks/8300.sock"], server);
        // Kill the Python server itself (the launcher's child), not the launcher.
        int child = ChildOf(server.Pid);
        Tmds.Linux.LibC.kill(child, 9);
        Assert.Equal(137, server.WaitForExit(Long));
        Assert.False(File.Exists(dir["socks/8300.sock"]), "a SIGKILLed server's socket file stayed");
    }

    [Fact]
    public void ClosedListenerOfALiveProcessHasItsFileRemoved()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        // serve-echo with count 1 serves one client, shuts the listener down and exits.
        using var server = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "serve-echo", "127.0.0.1", "8301", "1"]);
        Wait.ForListener(dir["socks/8301.sock"], server);
        using var client = new RunningProgram("nc", ["-U", "-N", dir["socks/8301.sock"]], stdin: "x\n");
        client.WaitForExit(Long);
        Assert.Equal(0, server.WaitForExit(Long));
        Assert.False(File.Exists(dir["socks/8301.sock"]));
    }

    [Fact]
    public void ShutdownOfAListenerRemovesItsFileWhileTheProgramRuns()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var server = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "shutdown-hold", "127.0.0.1", "8302"]);
        Wait.ForListener(dir["socks/8302.sock"], server);
        Assert.True(Wait.Until(() => server.Stdout.Contains("shut"), TimeSpan.FromSeconds(20)), server.Describe());
        // Removed by the shutdown itself: the socket is still open, so no sweep would have removed it.
        Assert.False(File.Exists(dir["socks/8302.sock"]), "the file of a shut-down listener stayed");
        Assert.False(server.HasExited);
    }

    [Fact]
    public void ClosedListenerOfARunningProgramLosesItsFileWithinSeconds()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var server = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "shutdown-hold", "127.0.0.1", "8303"],
            new Dictionary<string, string?> { ["CLOSE_ONLY"] = "1" });
        Wait.ForListener(dir["socks/8303.sock"], server);
        Assert.True(Wait.Until(() => server.Stdout.Contains("shut"), TimeSpan.FromSeconds(20)), server.Describe());
        Assert.True(Wait.Until(() => !File.Exists(dir["socks/8303.sock"]), TimeSpan.FromSeconds(5)), "a closed listener's file stayed");
        Assert.False(server.HasExited);
    }

    internal static int ChildOf(int pid)
    {
        int found = 0;
        Wait.Until(() =>
        {
            var children = File.ReadAllText($"/proc/{pid}/task/{pid}/children").Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (children.Length == 0) return false;
            found = int.Parse(children[0]);
            return true;
        }, TimeSpan.FromSeconds(10));
        return found;
    }
}
