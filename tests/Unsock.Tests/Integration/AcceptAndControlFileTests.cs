using System.Text.Json;
using Unsock.Core.ControlFiles;

namespace Unsock.Tests.Integration;

/// <summary>acceptConvert, fork children, and connections through control files (VSOCK, TIPC, Firecracker).</summary>
public class AcceptAndControlFileTests : IntegrationTest
{
    private static JsonElement RunAcceptPeers(string acceptConvert, int port)
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir, extraTop: $"\"acceptConvert\": \"{acceptConvert}\", \"fakeAddress\": \"127.9.9.9\",");
        using var server = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "accept-peers", "127.0.0.1", port.ToString()]);
        Wait.ForListener(dir[$"socks/{port}.sock"], server);
        for (int i = 0; i < 2; i++)
        {
            using var client = new RunningProgram("nc", ["-U", "-N", dir[$"socks/{port}.sock"]], stdin: "");
            client.WaitForExit(Long);
        }
        Assert.True(0 == server.WaitForExit(Long), server.Describe());
        return JsonDocument.Parse(server.Stdout[server.Stdout.IndexOf('{')..]).RootElement;
    }

    [Fact]
    public void AcceptConvertAllReportsALoopbackPeerForALoopbackListenerAndAcceptWithNullAddressWorks()
    {
        var r = RunAcceptPeers("all", 9810);
        // A client of the socket file is on this host: loopback, as for a TCP client; fakeAddress is for other listeners.
        Assert.Equal("127.0.0.1", r.GetProperty("peer")[0].GetString());
        Assert.InRange(r.GetProperty("peer")[1].GetInt32(), 32768, 60999);
        Assert.Equal(r.GetProperty("peer").ToString(), r.GetProperty("peer_again").ToString());
        Assert.Equal("127.0.0.1", r.GetProperty("local")[0].GetString());
        Assert.Equal(9810, r.GetProperty("local")[1].GetInt32());
        Assert.Equal(2, r.GetProperty("so_domain").GetInt32());
        Assert.Equal("ok", r.GetProperty("null_accept").GetString());
    }

    [Fact]
    public void WithoutAcceptConvertAcceptedPeersStayUnix()
    {
        var r = RunAcceptPeers("none", 9811);
        Assert.Equal(0, r.GetProperty("peer").GetArrayLength()); // Python shows an unnamed AF_UNIX peer as ''
        Assert.Equal("ok", r.GetProperty("null_accept").GetString());
    }

    [Fact]
    public void AProgramsOwnUnixSocketsKeepTheirAddressesUnderAcceptConvertAll()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir, extraTop: "\"acceptConvert\": \"all\",");
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "own-unix", dir["own.sock"]]);
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        var r = JsonDocument.Parse(p.Stdout).RootElement;
        Assert.Equal(dir["own.sock"], r.GetProperty("client_peer").GetString());
        Assert.Equal(dir["own.sock"], r.GetProperty("server_name").GetString());
        Assert.Equal(1, r.GetProperty("domain").GetInt32()); // AF_UNIX
    }

    [Fact]
    public void AcceptWithAFullFdTableFailsWithEmfileAndKeepsTheConnection()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir, extraTop: "\"acceptConvert\": \"all\",");
        using var server = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "accept-emfile", "127.0.0.1", "9812"]);
        Wait.ForListener(dir["socks/9812.sock"], server);
        using var client = new RunningProgram("nc", ["-U", dir["socks/9812.sock"]], stdin: "");
        Assert.True(0 == server.WaitForExit(Long), server.Describe());
        Assert.Contains("errno 24", server.Stdout);                 // EMFILE, as the kernel's accept says
        Assert.Contains("accepted after 127.0.0.1", server.Stdout); // the same connection, not lost
        client.WaitForExit(Long);
        Assert.Equal("late\n", client.Stdout);
    }

    [Fact]
    public void ForkedChildrenCarryTheFilterToo()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "fork-pair", "127.0.0.1", "9820"]);
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        Assert.Equal("forked\n", p.Stdout);
    }

    [Fact]
    public void LauncherCreatesTheOriginalsControlFilesByteForByte()
    {
        using var dir = new TempDir();
        var env = new Dictionary<string, string?> { ["UNSOCK_FILE"] = dir["5000.sock"], ["UNSOCK_VSOCK_PORT"] = "5000", ["UNSOCK_VSOCK_CID"] = "2" };
        using (var p = new RunningProgram(Launcher.Path, [], env))
            Assert.True(0 == p.WaitForExit(Long), p.Describe());
        Assert.Equal(File.ReadAllBytes(Path.Combine(Launcher.RepoRoot, "tests/Unsock.Tests/ControlFiles/Fixtures/vsock-cid2-5000.sock")), File.ReadAllBytes(dir["5000.sock"]));
        using (var again = new RunningProgram(Launcher.Path, [], env))
        {
            Assert.Equal(1, again.WaitForExit(Long));
            Assert.Contains("File exists", again.Stderr);
        }
    }

    [Fact]
    public void BindThroughAVsockControlFileListensOnVsock()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        Directory.CreateDirectory(dir["socks"]);
        uint vsockPort = (uint)Random.Shared.Next(20000, 60000);
        ControlFile.ForVsock(vsockPort).CreateExclusive(dir["socks/9830.sock"]);
        using var p = new RunningProgram(Launcher.Path, ["-v", "--policy", policy, "--", Py, Probe, "serve-echo", "127.0.0.1", "9830"]);
        Assert.True(Wait.Until(() => p.Stdout.Contains("listening 9830"), TimeSpan.FromSeconds(20)), p.Describe());
        // The VSOCK port is taken: a second bind on it fails with EADDRINUSE (no vsock_diag here for ss).
        string probe = $"import socket\ntry:\n  socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).bind((socket.VMADDR_CID_ANY, {vsockPort})); print('free')\nexcept OSError as e: print('errno', e.errno)";
        using var second = new RunningProgram(Py, ["-c", probe]);
        second.WaitForExit(Long);
        Assert.Equal("errno 98\n", second.Stdout);
        Assert.Contains("via control file", p.Stderr);
        p.Signal(15);
        p.WaitForExit(Long);
    }

    [Fact]
    public void ConnectThroughATipcControlFileFailsCleanlyWhereTheKernelHasNoTipc()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        Directory.CreateDirectory(dir["socks"]);
        ControlFile.ForTipc(2, 2, 128, 99, 0).CreateExclusive(dir["socks/9840.sock"]);
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "connect", "127.0.0.1", "9840"]);
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        Assert.Equal("errno 97\n", p.Stdout); // EAFNOSUPPORT: this kernel has no TIPC
    }

    [Fact]
    public void ConnectThroughAFirecrackerControlFileDoesTheHandshake()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        Directory.CreateDirectory(dir["socks"]);
        // A fake Firecracker multiplexer: answers CONNECT 5678 with OK, then echoes.
        string proxy = dir["fc.vsock"];
        string script = $$"""
            import socket
            s = socket.socket(socket.AF_UNIX); s.bind({{JsonSerializer.Serialize(proxy)}}); s.listen(1)
            print("ready", flush=True)
            c, _ = s.accept()
            line = b""
            while not line.endswith(b"\n"):
                line += c.recv(1)
            assert line == b"CONNECT 5678\n", line
            c.sendall(b"OK 1073741824\n")
            c.sendall(c.recv(100))
            """;
        using var fc = new RunningProgram(Py, ["-c", script]);
        Assert.True(Wait.Until(() => fc.Stdout.Contains("ready"), TimeSpan.FromSeconds(20)), fc.Describe());
        ControlFile.ForFirecracker(proxy, 5678).CreateExclusive(dir["socks/9850.sock"]);
        using var client = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "socat", "-", "TCP:127.0.0.1:9850"], stdin: "through the proxy\n");
        Assert.True(0 == client.WaitForExit(Long), client.Describe() + fc.Describe());
        Assert.Equal("through the proxy\n", client.Stdout);
    }
}
