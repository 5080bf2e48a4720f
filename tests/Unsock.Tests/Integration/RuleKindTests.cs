using System.Net.Sockets;
using System.Text.Json;

namespace Unsock.Tests.Integration;

/// <summary>
/// The rule kinds beyond socket files, through the kernel with real programs: blackhole, dual binds, noremove,
/// abstract sockets, fromUnix, VSOCK/Firecracker destinations, systemd's sockets. Each use has an attack next to it.
/// </summary>
public class RuleKindTests : IntegrationTest
{
    private const int Nobody = 65534;

    private static string Rules => Launcher.Program("rulesprobe.py");

    private static RunningProgram Launch(string policy, params string[] command) =>
        new(Launcher.Path, ["--policy", policy, "--", .. command]);

    private static JsonElement FirstJson(RunningProgram p)
    {
        Assert.True(Wait.Until(() => p.Stdout.Contains('{') || p.HasExited, TimeSpan.FromSeconds(30)), p.Describe());
        string line = p.Stdout.Split('\n').First(l => l.StartsWith('{'));
        return JsonDocument.Parse(line).RootElement;
    }

    private static string Run(TimeSpan timeout, string file, params string[] args)
    {
        using var p = new RunningProgram(file, args);
        p.WaitForExit(timeout);
        return p.Stdout + p.Stderr;
    }

    private static int ChildOf(int pid)
    {
        int child = 0;
        Assert.True(Wait.Until(() =>
        {
            string children = File.ReadAllText($"/proc/{pid}/task/{pid}/children").Trim();
            return children.Length > 0 && int.TryParse(children.Split(' ')[0], out child);
        }, TimeSpan.FromSeconds(20)), $"pid {pid} started no child");
        return child;
    }

    [Fact]
    public void BlackholeBindListensAndReportsItsAddressButNobodyReachesIt()
    {
        using var dir = new TempDir();
        string policy = Policies.Write(dir, $$"""
            { "rules": [
              { "direction": "bind", "port": 7701, "blackhole": true },
              { "address": "127.0.0.0/8", "directory": "{{dir["socks"]}}" }
            ] }
            """);
        using var server = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Rules, "bind-listen", "127.0.0.1", "7701"],
            new Dictionary<string, string?> { ["WAIT"] = "8" });
        var bound = FirstJson(server);
        Assert.Equal("127.0.0.1", bound.GetProperty("name")[0].GetString());
        Assert.Equal(7701, bound.GetProperty("name")[1].GetInt32());
        Assert.Equal(2, bound.GetProperty("so_domain").GetInt32()); // AF_INET, as the program believes

        // The attacks: TCP, the rule's directory, the socket through /proc/PID/fd, and every socket path named in
        // /proc/net/unix that the blackhole could be: none reaches it.
        using (var tcp = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
            Assert.Throws<SocketException>(() => tcp.Connect("127.0.0.1", 7701));
        using (var client = Launch(policy, Py, Probe, "connect", "127.0.0.1", "7701"))
        {
            client.WaitForExit(Long);
            Assert.Contains("errno 111", client.Stdout); // a connect skips the blackhole rule: no socket file, refused
        }
        int python = ChildOf(server.Pid);
        string fdLink = $"/proc/{python}/fd/{bound.GetProperty("fd").GetInt32()}";
        using (var viaProc = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
            Assert.Throws<SocketException>(() => viaProc.Connect(new UnixDomainSocketEndPoint(fdLink)));
        string inode = File.ResolveLinkTarget(fdLink, false)!.Name.Trim('s', 'o', 'c', 'k', 'e', 't', ':', '[', ']');
        var line = File.ReadLines("/proc/net/unix").Single(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[6] == inode);
        string boundPath = line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[7];
        Assert.False(File.Exists(boundPath), $"the blackhole's file {boundPath} still exists");
        Assert.True(0 == server.WaitForExit(Long), server.Describe());
        Assert.Contains("\"accepted\": null", server.Stdout);
    }

    [Fact]
    public void DualBindOfLocalhostBlackholesTheSecondAndServesBothFamiliesThroughTheFirst()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var server = Launch(policy, Py, Rules, "dual-serve", "7702");
        var names = FirstJson(server).GetProperty("names");
        Assert.Equal("127.0.0.1", names[0][0].GetString());
        Assert.Equal("::1", names[1][0].GetString());
        Assert.Equal(7702, names[1][1].GetInt32());
        foreach (string host in new[] { "127.0.0.1", "::1" })
        {
            using var client = Launch(policy, "nc", "-N", host, "7702");
            using var fed = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "sh", "-c", $"echo hi | nc -N {host} 7702"]);
            Assert.True(0 == fed.WaitForExit(Long), fed.Describe());
            Assert.Equal("echo:hi\n", fed.Stdout);
        }

        // The attack: another launcher's program binding the same path is not part of this program; it gets EADDRINUSE.
        using var other = Launch(policy, Py, Probe, "bind", "::1", "7702");
        other.WaitForExit(Long);
        Assert.Contains("errno 98", other.Stdout);
    }

    [Fact]
    public void RedisBoundToBothLoopbacksStartsAndAnswersUnderTheLauncher()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var redis = Launch(policy, "redis-server", "--bind", "127.0.0.1 ::1", "--port", "7703", "--save", "", "--appendonly", "no",
            "--dir", dir.Path);
        Wait.ForListener(dir["socks/7703.sock"], redis);
        Thread.Sleep(300);
        Assert.False(redis.HasExited, redis.Describe());
        foreach (string host in new[] { "127.0.0.1", "::1" })
        {
            using var cli = Launch(policy, "redis-cli", "-h", host, "-p", "7703", "ping");
            Assert.True(0 == cli.WaitForExit(Long), cli.Describe());
            Assert.Equal("PONG\n", cli.Stdout);
        }
        redis.Signal(15);
        Assert.True(0 == redis.WaitForExit(Long), redis.Describe());
        Assert.False(File.Exists(dir["socks/7703.sock"]), "the socket file outlived redis");
    }

    [Fact]
    public void NoremoveKeepsTheSocketFileAfterCloseAndExitAndTheNextRunReplacesIt()
    {
        using var dir = new TempDir();
        string policy = Policies.Write(dir, $$"""
            { "rules": [
              { "address": "127.0.0.1", "port": 7704, "unix": "{{dir["keep.sock"]}}", "noremove": true },
              { "address": "127.0.0.1", "port": 7705, "unix": "{{dir["gone.sock"]}}" }
            ] }
            """);
        foreach (int round in new[] { 1, 2 })
        {
            using var server = Launch(policy, "sh", "-c", $"{Py} {Probe} serve-echo 127.0.0.1 7704 1 & {Py} {Probe} serve-echo 127.0.0.1 7705 1 & wait");
            Wait.ForListener(dir["keep.sock"], server);
            Wait.ForListener(dir["gone.sock"], server);
            foreach (string file in new[] { "keep.sock", "gone.sock" })
            {
                using var client = new RunningProgram("nc", ["-U", "-N", dir[file]], stdin: $"round {round}\n");
                Assert.True(0 == client.WaitForExit(Long), client.Describe());
                Assert.Equal($"round {round}\n", client.Stdout);
            }
            Assert.True(0 == server.WaitForExit(Long), server.Describe());
            // Closed (shut down, even) and exited: the noremove file stays, a socket nobody listens on; the other goes.
            Assert.True(File.Exists(dir["keep.sock"]), $"round {round}: keep.sock was removed");
            Assert.False(File.Exists(dir["gone.sock"]), $"round {round}: gone.sock outlived its server");
        }
        // The sweeper had rounds to remove it and did not.
        Thread.Sleep(1500);
        Assert.True(File.Exists(dir["keep.sock"]));
    }

    [Fact]
    public void AbstractDestinationServesBothDirectionsWithoutAFile()
    {
        using var dir = new TempDir();
        string name = $"unsock-test-{Guid.NewGuid():N}";
        string policy = Policies.Write(dir, $$"""
            { "rules": [ { "address": "127.0.0.1", "port": "7706-7707", "abstract": "{{name}}/%p" } ] }
            """);
        using var server = Launch(policy, Py, Probe, "serve-threaded", "127.0.0.1", "7706");
        Assert.True(Wait.Until(() => server.Stdout.Contains("listening 7706") || server.HasExited, TimeSpan.FromSeconds(30)), server.Describe());
        Assert.Contains($"@{name}/7706", File.ReadAllText("/proc/net/unix"));

        using var client = Launch(policy, Py, Probe, "names", "127.0.0.1", "7706");
        Assert.True(0 == client.WaitForExit(Long), client.Describe());
        var names = JsonDocument.Parse(client.Stdout).RootElement;
        Assert.Equal("127.0.0.1", names.GetProperty("peer")[0].GetString());
        Assert.Equal(7706, names.GetProperty("peer")[1].GetInt32());
        Assert.Equal("ping", names.GetProperty("echo").GetString());
        Assert.Equal(2, names.GetProperty("so_domain").GetInt32());
        // A program that knows abstract sockets reaches it too: no file, no permissions.
        using (var native = new RunningProgram("socat", ["-", $"ABSTRACT-CONNECT:{name}/7706"], stdin: "native\n"))
        {
            Assert.True(0 == native.WaitForExit(Long), native.Describe());
            Assert.Equal("native\n", native.Stdout);
        }
        Assert.DoesNotContain(Directory.GetFileSystemEntries(dir.Path), f => !f.EndsWith(".json"));

        // The attack: another launcher's program binding the same name gets EADDRINUSE, not the listener.
        using var squatter = Launch(policy, Py, Probe, "bind", "127.0.0.1", "7706");
        squatter.WaitForExit(Long);
        Assert.Contains("errno 98", squatter.Stdout);
        // Nothing listens at the next port's name: refused like a closed TCP port.
        using var refused = Launch(policy, Py, Probe, "connect", "127.0.0.1", "7707");
        refused.WaitForExit(Long);
        Assert.Contains("errno 111", refused.Stdout);
    }

    [Fact]
    public void FromUnixRedirectsAHardCodedSocketPathForConnectAndBind()
    {
        using var dir = new TempDir();
        using var docker = new RunningProgram(Py, [Rules, "unix-serve", dir["real.sock"], "3"]);
        Wait.ForListener(dir["real.sock"], docker);
        string policy = Policies.Write(dir, $$"""
            { "rules": [
              { "fromUnix": "{{dir["fake"]}}/**/docker.sock", "unix": "{{dir["real.sock"]}}" },
              { "fromUnix": "{{dir["app"]}}/X?", "direction": "bind", "unix": "{{dir["moved/x11.sock"]}}", "mode": "0600" }
            ] }
            """);
        Directory.CreateDirectory(dir["fake/var/run"]);
        Directory.CreateDirectory(dir["app"]);
        // A client that hard-codes the path, connecting relative to its working directory.
        using (var client = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Rules, "unix-connect", "var/run/docker.sock", "hello"],
                   workingDirectory: dir["fake"]))
        {
            Assert.True(0 == client.WaitForExit(Long), client.Describe());
            var answer = JsonDocument.Parse(client.Stdout).RootElement;
            Assert.Equal("echo:hello", answer.GetProperty("reply").GetString());
            Assert.Equal("var/run/docker.sock", answer.GetProperty("peer").GetString()); // what it asked for
        }
        using (var socat = Launch(policy, "socat", "-", $"UNIX-CONNECT:{dir["fake/a/b/c/docker.sock"]}"))
        {
            Assert.True(0 == socat.WaitForExit(Long), socat.Describe());
        }
        // Not matched: the path is used as given (nothing there).
        using (var unmatched = Launch(policy, Py, Rules, "unix-connect", dir["fake/docker.sockx"], "x"))
        {
            Assert.True(0 == unmatched.WaitForExit(Long), unmatched.Describe());
            Assert.Contains("\"errno\": 2", unmatched.Stdout);
        }

        // Bind: an X-server-like program binds app/X0; the socket is at moved/x11.sock, getsockname says app/X0.
        using var x = Launch(policy, Py, Rules, "unix-serve", dir["app/X0"], "1");
        Wait.ForListener(dir["moved/x11.sock"], x);
        Assert.Equal(dir["app/X0"], FirstJson(x).GetProperty("name").GetString());
        Assert.False(File.Exists(dir["app/X0"]));
        Assert.Equal((UnixFileMode)0x180, File.GetUnixFileMode(dir["moved/x11.sock"]) & (UnixFileMode)0x1FF);
        using (var nc = new RunningProgram("nc", ["-U", "-N", dir["moved/x11.sock"]], stdin: "x11"))
        {
            Assert.True(0 == nc.WaitForExit(Long), nc.Describe());
            Assert.Equal("echo:x11\n", nc.Stdout);
        }
        Assert.True(0 == x.WaitForExit(Long), x.Describe());
        Assert.False(File.Exists(dir["moved/x11.sock"]), "the redirected socket file outlived its program");
    }

    [Fact]
    public void FromUnixBindThroughADirectorySwappedForASymlinkCreatesAndRemovesNothingOfRoots()
    {
        Assert.True(Environment.IsPrivilegedProcess, "this test needs root, as CI and the development machines have");
        using var dir = new TempDir();
        File.SetUnixFileMode(dir.Path, (UnixFileMode)0x1FF);
        Directory.CreateDirectory(dir["p/socks"]);
        File.SetUnixFileMode(dir["p"], (UnixFileMode)0x1FF);
        File.SetUnixFileMode(dir["p/socks"], (UnixFileMode)0x1FF);
        Directory.CreateDirectory(dir["root-only"]);
        File.SetUnixFileMode(dir["root-only"], (UnixFileMode)0x1ED);
        // Root's socket file of the same name, whose socket is gone: the stale-file check must not remove it for the target.
        using (var make = new RunningProgram(Py, ["-c", $"import socket; socket.socket(socket.AF_UNIX).bind('{dir["root-only/x.sock"]}')"]))
            Assert.True(0 == make.WaitForExit(Long), make.Describe());
        File.CreateSymbolicLink(dir["p/link"], dir["root-only"]);
        string policy = Policies.Write(dir, $$"""
            { "rules": [ { "fromUnix": "{{dir["app.sock"]}}", "unix": "{{dir["p/socks/x.sock"]}}" } ] }
            """);
        using var swapper = new RunningProgram("setpriv", [$"--reuid={Nobody}", $"--regid={Nobody}", "--clear-groups", Py,
            Launcher.Program("fileattack.py"), "swap-dirs", dir["p/socks"], dir["p/link"]]);
        using var target = Launch(policy, "setpriv", $"--reuid={Nobody}", $"--regid={Nobody}", "--clear-groups", Py, Rules, "bind-rounds",
            dir["app.sock"], "200");
        Assert.True(0 == target.WaitForExit(Long), target.Describe());
        swapper.Signal(9);
        swapper.WaitForExit(Long);
        var seen = JsonDocument.Parse(target.Stdout).RootElement;
        Assert.True(seen.TryGetProperty("ok", out var ok) && ok.GetInt32() > 0, $"no bind succeeded: {target.Stdout}");
        Assert.True(File.Exists(dir["root-only/x.sock"]), "root's socket file was removed");
        Assert.Equal([dir["root-only/x.sock"]], Directory.GetFileSystemEntries(dir["root-only"]));
    }

    [Fact]
    public void FromAbstractRedirectsAnAbstractNameToAFileAndRejectsAnother()
    {
        using var dir = new TempDir();
        string name = $"unsock-from-{Guid.NewGuid():N}";
        using var server = new RunningProgram(Py, [Rules, "unix-serve", dir["real.sock"], "1"]);
        Wait.ForListener(dir["real.sock"], server);
        string policy = Policies.Write(dir, $$"""
            { "rules": [
              { "fromAbstract": "{{name}}/secret", "reject": "EACCES" },
              { "fromAbstract": "{{name}}/*", "unix": "{{dir["real.sock"]}}" }
            ] }
            """);
        using (var client = Launch(policy, Py, Rules, "unix-connect", $"@{name}/app", "abs"))
        {
            Assert.True(0 == client.WaitForExit(Long), client.Describe());
            var answer = JsonDocument.Parse(client.Stdout).RootElement;
            Assert.Equal("echo:abs", answer.GetProperty("reply").GetString());
            Assert.Equal($"@{name}/app", answer.GetProperty("peer").GetString());
        }
        using var rejected = Launch(policy, Py, Rules, "unix-connect", $"@{name}/secret", "x");
        Assert.True(0 == rejected.WaitForExit(Long), rejected.Describe());
        Assert.Contains("\"errno\": 13", rejected.Stdout);
    }

    [Fact]
    public void VsockBindListensOnTheVsockPortAndPortsBelow1024NeedTheProgramsOwnCapability()
    {
        using var dir = new TempDir();
        string policy = Policies.Write(dir, """
            { "rules": [
              { "address": "127.0.0.1", "port": 7708, "vsock": { "port": 57708 } },
              { "address": "127.0.0.1", "port": 7709, "vsock": { "port": 999 } }
            ] }
            """);
        using var server = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Rules, "bind-listen", "127.0.0.1", "7708"],
            new Dictionary<string, string?> { ["WAIT"] = "5" });
        var bound = FirstJson(server);
        Assert.Equal(7708, bound.GetProperty("name")[1].GetInt32());
        Assert.Equal(2, bound.GetProperty("so_domain").GetInt32());
        // Nothing lists VSOCK sockets here (no vsock_diag): a second bind of the port says it is taken.
        Assert.Contains("errno 98", Run(Long, Py, "-c",
            "import socket\ntry:\n socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).bind((socket.VMADDR_CID_ANY, 57708)); print('free')\nexcept OSError as e: print('errno', e.errno)"));
        server.Signal(15);
        server.WaitForExit(Long);

        // The attack: a program without CAP_NET_BIND_SERVICE asks for VSOCK port 999 through the root supervisor.
        using var nobody = Launch(policy, "setpriv", $"--reuid={Nobody}", $"--regid={Nobody}", "--clear-groups", "--inh-caps=-all",
            Py, Probe, "bind", "127.0.0.1", "7709");
        nobody.WaitForExit(Long);
        Assert.Contains("errno 13", nobody.Stdout);
        using var root = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "bind", "127.0.0.1", "7709"]);
        root.WaitForExit(Long);
        Assert.Contains("bound", root.Stdout);
    }

    [Fact]
    public void VsockAndTipcConnectsGiveWhatTheKernelGivesThoseSockets()
    {
        // This kernel has no VSOCK loopback and no TIPC: a redirected program must see exactly what a program using
        // those sockets itself sees (the host refuses CID 2 with ECONNRESET; socket(AF_TIPC) fails with EAFNOSUPPORT).
        string native = Run(Long, Py, "-c", """
            import socket
            for family, address in ((socket.AF_VSOCK, (2, 57999)), (30, None)):
                try:
                    s = socket.socket(family, socket.SOCK_STREAM)
                    s.settimeout(20)
                    if address:
                        s.connect(address)
                    print("ok")
                except OSError as e:
                    print("errno", e.errno)
            """);
        string[] expected = native.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, expected.Length);
        using var dir = new TempDir();
        string policy = Policies.Write(dir, """
            { "rules": [
              { "address": "127.0.0.1", "port": 7714, "vsock": { "cid": 2, "port": 57999 } },
              { "address": "127.0.0.1", "port": 7715, "tipc": { "type": 18888, "lower": 17 } }
            ] }
            """);
        using var vsock = Launch(policy, Py, Probe, "connect", "127.0.0.1", "7714");
        vsock.WaitForExit(Long);
        Assert.Equal(expected[0] == "ok" ? "connected" : expected[0], vsock.Stdout.Trim());
        if (expected[1] != "errno 97") return; // a kernel with TIPC: nothing listens at that service, nothing more to compare
        using var tipc = Launch(policy, Py, Probe, "bind", "127.0.0.1", "7715");
        tipc.WaitForExit(Long);
        Assert.Equal("errno 97", tipc.Stdout.Trim());
    }

    [Fact]
    public void FirecrackerDestinationConnectsThroughTheProxyHandshake()
    {
        using var dir = new TempDir();
        using var proxy = new RunningProgram(Py, [Rules, "firecracker-proxy", dir["v.sock"]]);
        Wait.ForListener(dir["v.sock"], proxy);
        Directory.CreateDirectory(dir["locked"]);
        File.SetUnixFileMode(dir["locked"], (UnixFileMode)0x1C0); // 0700, root's
        string policy = Policies.Write(dir, $$"""
            { "rules": [
              { "address": "127.0.0.1", "port": 7710, "firecracker": { "socket": "{{dir["v.sock"]}}", "port": 52 } },
              { "address": "127.0.0.1", "port": 7711, "firecracker": { "socket": "{{dir["locked/v.sock"]}}", "port": 52 } }
            ] }
            """);
        File.CreateSymbolicLink(dir["locked/v.sock"], dir["v.sock"]);
        using (var client = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "sh", "-c", "echo hi | nc -N 127.0.0.1 7710"]))
        {
            Assert.True(0 == client.WaitForExit(Long), client.Describe());
            Assert.Equal("port 52:hi\n", client.Stdout);
        }
        // The attack: the proxy's path behind a directory the program may not enter is not reached for it.
        using var nobody = Launch(policy, "setpriv", $"--reuid={Nobody}", $"--regid={Nobody}", "--clear-groups", Py, Probe, "connect", "127.0.0.1", "7711");
        nobody.WaitForExit(Long);
        Assert.Contains("errno 13", nobody.Stdout);
    }

    [Fact]
    public void SystemdRuleTakesTheListeningSocketPassedAsFd3()
    {
        using var dir = new TempDir();
        string policy = Policies.Write(dir, """
            { "rules": [ { "direction": "bind", "address": "127.0.0.1", "port": 7712, "systemd": "web" } ] }
            """);
        using var server = new RunningProgram(Py, [Rules, "systemd-harness", "listening", dir["sd.sock"], Launcher.Path, "--policy", policy, "--",
            Py, Probe, "serve-threaded", "127.0.0.1", "7712"]);
        Assert.True(Wait.Until(() => server.Stdout.Contains("listening 7712") || server.HasExited, TimeSpan.FromSeconds(30)), server.Describe());
        using (var nc = new RunningProgram("nc", ["-U", "-N", dir["sd.sock"]], stdin: "activated\n"))
        {
            Assert.True(0 == nc.WaitForExit(Long), nc.Describe());
            Assert.Equal("activated\n", nc.Stdout);
        }
        string clientPolicy = Policies.Write(dir, $$"""{ "rules": [ { "unix": "{{dir["sd.sock"]}}" } ] }""", "client.json");
        using var client = Launch(clientPolicy, Py, Probe, "names", "127.0.0.1", "7712");
        Assert.True(0 == client.WaitForExit(Long), client.Describe());
        Assert.Equal("ping", JsonDocument.Parse(client.Stdout).RootElement.GetProperty("echo").GetString());
    }

    [Theory]
    [InlineData("pipe")]
    [InlineData("unlistened")]
    public void SystemdFdThatIsNotAListeningSocketFailsTheBind(string kind)
    {
        using var dir = new TempDir();
        string policy = Policies.Write(dir, """
            { "rules": [ { "direction": "bind", "address": "127.0.0.1", "port": 7713, "systemd": true } ] }
            """);
        using var server = new RunningProgram(Py, [Rules, "systemd-harness", kind, dir["sd.sock"], Launcher.Path, "-v", "--policy", policy, "--",
            Py, Probe, "bind", "127.0.0.1", "7713"]);
        Assert.True(0 == server.WaitForExit(Long), server.Describe());
        Assert.Contains("errno 99", server.Stdout); // EADDRNOTAVAIL
        Assert.Contains(kind == "pipe" ? "fd 3 is not a socket" : "fd 3 is a socket that is not listening", server.Stderr);
    }
}
