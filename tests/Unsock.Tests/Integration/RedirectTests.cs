using System.Net.Sockets;
using System.Text.Json;

namespace Unsock.Tests.Integration;

/// <summary>Real programs under the launcher, talking over the Unix sockets it gives them.</summary>
public class RedirectTests : IntegrationTest
{
    private static RunningProgram Launch(string policy, params string[] command) =>
        new(Launcher.Path, ["--policy", policy, "--", .. command]);

    private static RunningProgram StartEchoServer(TempDir dir, string policy, int port, string host = "127.0.0.1")
    {
        var server = Launch(policy, Py, Probe, "serve-threaded", host, port.ToString());
        Wait.ForListener(dir[$"socks/{port}.sock"], server);
        return server;
    }

    [Fact]
    public void PythonHttpServerIsServedOnUnixSocketAndFetchedByCurlUnderTheLauncher()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir, extraTop: "\"acceptConvert\": \"all\",");
        File.WriteAllText(dir["hello.txt"], "hello from a unix socket\n");
        using var server = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, "-m", "http.server", "8000", "--bind", "127.0.0.1", "--directory", dir.Path]);
        Wait.ForListener(dir["socks/8000.sock"], server);

        // Native curl over the socket file proves it is a real Unix socket; curl under the launcher proves redirection.
        using var native = new RunningProgram("curl", ["-sS", "--unix-socket", dir["socks/8000.sock"], "http://localhost/hello.txt"]);
        Assert.Equal(0, native.WaitForExit(Long));
        Assert.Equal("hello from a unix socket\n", native.Stdout);
        using var redirected = Launch(policy, "curl", "-sS", "http://127.0.0.1:8000/hello.txt");
        Assert.True(0 == redirected.WaitForExit(Long), redirected.Describe());
        Assert.Equal("hello from a unix socket\n", redirected.Stdout);
        // Nothing listens on TCP 8000: the server never had a TCP socket.
        using var tcp = new RunningProgram("curl", ["-sS", "--max-time", "5", "http://127.0.0.1:8000/hello.txt"]);
        Assert.NotEqual(0, tcp.WaitForExit(Long));
    }

    [Fact]
    public void NcListensOnUnixSocketWithTheOriginalsEnvironmentVariables()
    {
        // The original's `make test`: nc -l 127.175.0.0 7000 under UNSOCK_DIR, fed through nc -U.
        using var dir = new TempDir();
        var env = new Dictionary<string, string?> { ["UNSOCK_DIR"] = dir.Path };
        using var server = new RunningProgram(Launcher.Path, ["nc", "-l", "127.175.0.0", "7000"], env);
        Wait.ForListener(dir["7000.sock"], server);
        using var client = new RunningProgram("nc", ["-U", "-N", dir["7000.sock"]], stdin: "Hello world\n");
        Assert.Equal(0, client.WaitForExit(Long));
        Assert.Equal(0, server.WaitForExit(Long));
        Assert.Contains("Hello world", server.Stdout);
        Assert.False(File.Exists(dir["7000.sock"]), "the socket file outlived its server");
    }

    [Fact]
    public void UnsockDirLongerThanSunPathWorks()
    {
        // The original stopped at 95 characters; sun_path holds 107. We go through /proc/self/fd/DIRFD/NAME.
        using var dir = new TempDir();
        string deep = Path.Combine(dir.Path, new string('d', 100), new string('e', 60));
        Assert.True(deep.Length > 160);
        var env = new Dictionary<string, string?> { ["UNSOCK_DIR"] = deep, ["UNSOCK_ADDR"] = "127.0.0.1/8" };
        using var server = new RunningProgram(Launcher.Path, [Py, Probe, "serve-threaded", "127.0.0.1", "7101"], env);
        Wait.ForListener(Path.Combine(deep, "7101.sock"), server);
        using var client = new RunningProgram(Launcher.Path, [Py, Probe, "names", "127.0.0.1", "7101"], env);
        Assert.True(0 == client.WaitForExit(Long), client.Describe());
        Assert.Contains("\"echo\": \"ping\"", client.Stdout);
    }

    [Fact]
    public void NcBindToPortZeroCreatesExactlyOneSocketFile()
    {
        // The original's `make test` bind0 scenario.
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["zero"]);
        var env = new Dictionary<string, string?> { ["UNSOCK_DIR"] = dir["zero"] };
        using var server = new RunningProgram(Launcher.Path, ["nc", "-l", "127.175.0.0", "0"], env);
        Assert.True(Wait.Until(() => Directory.GetFiles(dir["zero"], "*.sock").Length == 1, TimeSpan.FromSeconds(20)), server.Describe());
        server.Signal(15);
        server.WaitForExit(Long);
    }

    [Fact]
    public void SocatAndBusyboxStaticHttpdAndWgetWork()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir, extraTop: "\"acceptConvert\": \"all\",");
        Directory.CreateDirectory(dir["www"]);
        File.WriteAllText(dir["www/index.html"], "static busybox\n");
        // busybox is a static binary: no libc to preload into, only the kernel sees its calls.
        using var httpd = Launch(policy, "busybox", "httpd", "-f", "-p", "127.0.0.1:8080", "-h", dir["www"]);
        Wait.ForListener(dir["socks/8080.sock"], httpd);
        using var wget = Launch(policy, "busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/index.html");
        Assert.True(0 == wget.WaitForExit(Long), wget.Describe());
        Assert.Equal("static busybox\n", wget.Stdout);

        using var socatServer = StartEchoServer(dir, policy, 9100);
        using var socatClient = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "socat", "-", "TCP:127.0.0.1:9100"], stdin: "via socat\n");
        Assert.True(0 == socatClient.WaitForExit(Long), socatClient.Describe());
        Assert.Equal("via socat\n", socatClient.Stdout);
    }

    [Fact]
    public void ConvertedSocketReportsTheInetAddressesAndOptionsTheProgramExpects()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var server = StartEchoServer(dir, policy, 9200);
        using var client = Launch(policy, Py, Probe, "names", "127.0.0.1", "9200");
        Assert.True(0 == client.WaitForExit(Long), client.Describe());
        var r = JsonDocument.Parse(client.Stdout).RootElement;
        Assert.Equal("127.0.0.1", r.GetProperty("peer")[0].GetString());
        Assert.Equal(9200, r.GetProperty("peer")[1].GetInt32());
        Assert.Equal(2, r.GetProperty("so_domain").GetInt32()); // Linux AF_INET
        Assert.Equal(6, r.GetProperty("so_protocol").GetInt32());
        Assert.Equal(1, r.GetProperty("nodelay").GetInt32());
        Assert.Equal(7200, r.GetProperty("keepidle").GetInt32());
        Assert.Equal(9, r.GetProperty("keepalive_count").GetInt32());
        Assert.Equal(0x10, r.GetProperty("tos").GetInt32());
        Assert.Equal(5, r.GetProperty("rcvtimeo_kept").GetInt32());
        Assert.True(r.GetProperty("cloexec").GetBoolean());
        Assert.Equal("ping", r.GetProperty("echo").GetString());
        Assert.True(r.GetProperty("same_fd").GetBoolean());
        Assert.True(r.GetProperty("inheritable_kept").GetBoolean());
    }

    /// <summary>Sets SOL_SOCKET options on one socket before connect and none on another; prints what each reports after.</summary>
    private const string OptionsBeforeConnect = """
        import json, socket, sys
        port, sndbuf = int(sys.argv[1]), int(sys.argv[2])
        def report(s):
            g = lambda o: s.getsockopt(socket.SOL_SOCKET, o)
            return {"domain": g(socket.SO_DOMAIN), "sndbuf": g(socket.SO_SNDBUF), "rcvbuf": g(socket.SO_RCVBUF),
                    "priority": g(socket.SO_PRIORITY), "rcvlowat": g(socket.SO_RCVLOWAT), "oobinline": g(socket.SO_OOBINLINE)}
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY, 3)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 2)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        s.connect(('127.0.0.1', port))
        plain = socket.socket(); plain.connect(('127.0.0.1', port))
        native = socket.socket(socket.AF_UNIX)
        print(json.dumps({"set": report(s), "plain": report(plain), "unix": report(native)}))
        """;

    [Fact]
    public void SocketOptionsSetBeforeConnectHoldOnTheSwappedSocketAndOthersKeepTheirDefaults()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var server = StartEchoServer(dir, policy, 9210);
        // Half of TCP's default send buffer: the kernel doubles it to exactly the default, which the swap once took
        // for "never set" and left the Unix socket's own (larger) buffer in its place.
        int tcpDefault = int.Parse(File.ReadAllText("/proc/sys/net/ipv4/tcp_wmem").Split((char[])['\t', ' '], StringSplitOptions.RemoveEmptyEntries)[1]);
        using var client = Launch(policy, Py, "-c", OptionsBeforeConnect, "9210", $"{tcpDefault / 2}");
        Assert.True(0 == client.WaitForExit(Long), client.Describe());
        var r = JsonDocument.Parse(client.Stdout).RootElement;
        var set = r.GetProperty("set");
        Assert.Equal(2, set.GetProperty("domain").GetInt32());
        Assert.Equal(tcpDefault, set.GetProperty("sndbuf").GetInt32());
        Assert.Equal(8192, set.GetProperty("rcvbuf").GetInt32());
        Assert.Equal(3, set.GetProperty("priority").GetInt32());
        Assert.Equal(2, set.GetProperty("rcvlowat").GetInt32());
        Assert.Equal(1, set.GetProperty("oobinline").GetInt32());
        // Nothing set: the swapped socket keeps a Unix socket's defaults, as a fresh one has them.
        var plain = r.GetProperty("plain");
        var unix = r.GetProperty("unix");
        Assert.Equal(2, plain.GetProperty("domain").GetInt32());
        foreach (var name in new[] { "sndbuf", "rcvbuf", "priority", "rcvlowat", "oobinline" })
            Assert.True(unix.GetProperty(name).GetInt32() == plain.GetProperty(name).GetInt32(), $"{name}: {client.Stdout}");
    }

    [Fact]
    public void Ipv6ProgramsAreRedirectedAndSeeIpv6Addresses()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var server = StartEchoServer(dir, policy, 9300, host: "::1");
        using var client = Launch(policy, Py, Probe, "names", "::1", "9300");
        Assert.True(0 == client.WaitForExit(Long), client.Describe());
        var r = JsonDocument.Parse(client.Stdout).RootElement;
        Assert.Equal("::1", r.GetProperty("peer")[0].GetString());
        Assert.Equal(10, r.GetProperty("so_domain").GetInt32()); // Linux AF_INET6
    }

    [Fact]
    public void BindToPortZeroPicksAFreePortThatGetsocknameReports()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "bind0", "127.0.0.1"], new Dictionary<string, string?> { ["HOLD"] = "1" });
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        var r = JsonDocument.Parse(p.Stdout).RootElement;
        int port = r.GetProperty("port").GetInt32();
        Assert.InRange(port, 1024, 65535);
        Assert.Equal("127.0.0.1", r.GetProperty("addr").GetString());
        Assert.Equal(2, r.GetProperty("so_domain").GetInt32());
    }

    [Fact]
    public void ManyThreadedConnectionsLeaveTheClientsFdCountFlat()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var server = StartEchoServer(dir, policy, 9400);
        using var client = Launch(policy, Py, Probe, "many", "127.0.0.1", "9400", "5000", "8");
        Assert.True(0 == client.WaitForExit(TimeSpan.FromMinutes(3)), client.Describe());
        var r = JsonDocument.Parse(client.Stdout).RootElement;
        Assert.True(0 == r.GetProperty("failures").GetInt32(), client.Stdout);
        Assert.Equal(r.GetProperty("before").GetInt32(), r.GetProperty("after").GetInt32());
    }

    [Fact]
    public void ConnectionsSurviveASignalEvery10Milliseconds()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var server = StartEchoServer(dir, policy, 9500);
        using var client = Launch(policy, Py, Probe, "signalled", "127.0.0.1", "9500", "2000");
        Assert.True(0 == client.WaitForExit(TimeSpan.FromMinutes(3)), client.Describe());
        var r = JsonDocument.Parse(client.Stdout).RootElement;
        Assert.Equal(0, r.GetProperty("failures").GetInt32());
        Assert.True(r.GetProperty("signals").GetInt32() > 10, client.Stdout);
    }

    [Fact]
    public void AsyncioNonBlockingServerAndClientWork()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var p = Launch(policy, Py, Probe, "asyncio", "127.0.0.1", "9600", "50");
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        Assert.Equal(50, JsonDocument.Parse(p.Stdout).RootElement.GetProperty("ok").GetInt32());
    }

    [Fact]
    public void BadPointersFromTheTargetGetErrnosAndTheSupervisorCarriesOn()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var server = StartEchoServer(dir, policy, 9700);
        using var p = Launch(policy, Py, Probe, "bad-pointers", "127.0.0.1", "9700");
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        var r = JsonDocument.Parse(p.Stdout).RootElement;
        Assert.Equal(14, r.GetProperty("connect_null").GetInt32());      // EFAULT
        Assert.Equal(14, r.GetProperty("connect_wild").GetInt32());
        Assert.Equal(14, r.GetProperty("bind_wild").GetInt32());
        Assert.Equal(9, r.GetProperty("connect_badfd").GetInt32());      // EBADF
        Assert.Equal(14, r.GetProperty("getsockname_wild").GetInt32());
        Assert.Equal(14, r.GetProperty("getsockname_badlen").GetInt32());
        Assert.Equal(22, r.GetProperty("getsockname_neglen").GetInt32()); // EINVAL
        Assert.Equal(0, r.GetProperty("getsockname_short").GetInt32());
        Assert.Equal(16, r.GetProperty("short_len").GetInt32());          // the full sockaddr_in length
        Assert.True(r.GetProperty("short_untouched").GetBoolean());       // nothing past the 4 bytes given
        Assert.Equal(2, r.GetProperty("short_family").GetInt32());        // AF_INET in the bytes that fit
        Assert.Equal(14, r.GetProperty("getsockopt_wild").GetInt32());
        Assert.Equal(22, r.GetProperty("setsockopt_short").GetInt32());
        Assert.Equal("z", r.GetProperty("still_works").GetString());
    }
}
