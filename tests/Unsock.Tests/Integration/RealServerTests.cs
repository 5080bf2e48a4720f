using System.Text.RegularExpressions;

namespace Unsock.Tests.Integration;

/// <summary>
/// Real servers with their own clients, both under one launcher, configured as a new user of the original
/// would: UNSOCK_DIR and UNSOCK_ADDR, no policy file. Every script checks that the traffic goes through the
/// socket file (nothing listens on the TCP port) and prints what the programs report as their peers.
/// </summary>
public partial class RealServerTests : IntegrationTest
{
    private const int EphemeralFirst = 32768, EphemeralLast = 60999;

    /// <summary>Shell functions for the scripts: wait for a listening socket file, count TCP listeners on a port.</summary>
    private static string Prelude(TempDir dir) => $$"""
        S={{dir["socks"]}}
        wait_listen() {
          i=0
          until awk -v p="$S/$1.sock" '$4=="00010000" && $8==p {f=1} END {exit !f}' /proc/net/unix; do
            i=$((i+1)); if [ $i -gt 900 ]; then echo "nothing listened on $S/$1.sock"; exit 1; fi; sleep 0.1
          done
        }
        tcp_listeners() { cat /proc/net/tcp /proc/net/tcp6 | awk -v h="$(printf ':%04X' $1)" '$2 ~ h"$" && $4=="0A"' | wc -l; }

        """;

    /// <summary>Runs <paramref name="script"/> under the launcher with the original's variables; returns its output after a zero exit.</summary>
    private static string RunScript(TempDir dir, string script, string unsockAddr = "127.0.0.1/32") => RunScript(dir, script, unsockAddr, out _);

    private static string RunScript(TempDir dir, string script, string unsockAddr, out string decisions)
    {
        var env = new Dictionary<string, string?> { ["UNSOCK_DIR"] = dir["socks"], ["UNSOCK_ADDR"] = unsockAddr };
        using var p = new RunningProgram(Launcher.Path, ["-v", "--", "sh", "-c", Prelude(dir) + script + "\nexit 0\n"], env, workingDirectory: dir.Path);
        Assert.True(0 == p.WaitForExit(TimeSpan.FromMinutes(3)), p.Describe());
        Assert.Contains("tcp-listeners 0", p.Stdout);
        decisions = p.Stderr;
        return p.Stdout;
    }

    /// <summary>The port of "ADDRESS:PORT" after <paramref name="prefix"/> on a line; asserts the address and that the port is ephemeral.</summary>
    private static int PeerPort(string output, string prefix, string address)
    {
        var m = Regex.Match(output, "^" + Regex.Escape(prefix) + Regex.Escape(address) + @":(\d+)$", RegexOptions.Multiline);
        Assert.True(m.Success, $"no line \"{prefix}{address}:PORT\" in:\n{output}");
        int port = int.Parse(m.Groups[1].Value);
        Assert.InRange(port, EphemeralFirst, EphemeralLast);
        return port;
    }

    [Fact]
    public void PythonHttpServerAnswersCurlAndUrllibAndLogsALoopbackClient()
    {
        using var dir = new TempDir();
        const int Port = 19101;
        string output = RunScript(dir, $$"""
            {{Py}} -m http.server {{Port}} --bind 127.0.0.1 2>server.log & SERVER=$!
            wait_listen {{Port}}
            echo "tcp-listeners $(tcp_listeners {{Port}})"
            curl -sS -m 20 -o /dev/null -w 'curl %{http_code} %{local_ip}\n' http://127.0.0.1:{{Port}}/
            {{Py}} -c 'import urllib.request; r = urllib.request.urlopen("http://127.0.0.1:{{Port}}/", timeout=20); print("urllib", r.status)'
            kill $SERVER; wait $SERVER
            cat server.log
            """);
        Assert.Contains("curl 200 127.0.0.1", output);
        Assert.Contains("urllib 200", output);
        // http.server logs the client's address: the loopback address its client has, twice.
        Assert.Equal(2, Regex.Matches(output, @"^127\.0\.0\.1 - - \[.*\] ""GET / HTTP/1\.1"" 200", RegexOptions.Multiline).Count);
    }

    private static readonly Lazy<string> GoHttp = new(() =>
    {
        string output = Path.Combine(Launcher.RepoRoot, "artifacts", "gohttp");
        using var build = new RunningProgram("go", ["build", "-o", output, "."], new Dictionary<string, string?>
        {
            ["CGO_ENABLED"] = "0", ["GOFLAGS"] = "-mod=mod", ["GOPROXY"] = "off",
            ["GOCACHE"] = Path.Combine(Launcher.RepoRoot, "artifacts", "gocache"),
            ["GOPATH"] = Path.Combine(Launcher.RepoRoot, "artifacts", "gopath"), // no dependence on HOME
        }, workingDirectory: Launcher.Program("gohttp"));
        if (build.WaitForExit(TimeSpan.FromMinutes(5)) != 0) throw new InvalidOperationException("go build failed (is golang-go installed?)\n" + build.Describe());
        return output;
    });

    [Fact]
    public void GoNetHttpServerSeesEachClientAtTheAddressTheClientHas()
    {
        using var dir = new TempDir();
        const int Port = 19102;
        string output = RunScript(dir, $$"""
            {{GoHttp.Value}} server 127.0.0.1:{{Port}} & SERVER=$!
            wait_listen {{Port}}
            echo "tcp-listeners $(tcp_listeners {{Port}})"
            {{GoHttp.Value}} client http://127.0.0.1:{{Port}}/
            {{GoHttp.Value}} client http://127.0.0.1:{{Port}}/
            kill $SERVER; wait $SERVER
            """);
        var remotes = Regex.Matches(output, @"^remote (.*)$", RegexOptions.Multiline).Select(m => m.Groups[1].Value).ToList();
        var locals = Regex.Matches(output, @"^local (.*)$", RegexOptions.Multiline).Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(2, remotes.Count);
        Assert.Equal(locals, remotes); // the server's view of each client is the client's own getsockname
        Assert.NotEqual(remotes[0], remotes[1]);
        foreach (var r in remotes) PeerPort("remote " + r, "remote ", "127.0.0.1");
        Assert.Contains($"body you are {remotes[0]}", output);
    }

    private static readonly Lazy<string> DotNetTestServer = new(() =>
    {
        string project = Path.Combine(Launcher.RepoRoot, "tests", "Unsock.TestServer");
        string output = Path.Combine(Launcher.RepoRoot, "artifacts", "testserver");
        using var build = new RunningProgram("dotnet", ["build", project, "-c", "Release", "-o", output, "--nologo", "-v", "q"]);
        if (build.WaitForExit(TimeSpan.FromMinutes(5)) != 0) throw new InvalidOperationException("dotnet build of Unsock.TestServer failed\n" + build.Describe());
        return Path.Combine(output, "Unsock.TestServer.dll");
    });

    [Fact]
    public void DotNetTcpListenerAcceptsAndHttpClientConnects()
    {
        using var dir = new TempDir();
        const int Port = 19103;
        string server = DotNetTestServer.Value;
        string output = RunScript(dir, $$"""
            dotnet {{server}} server {{Port}} & SERVER=$!
            wait_listen {{Port}}
            echo "tcp-listeners $(tcp_listeners {{Port}})"
            dotnet {{server}} client http://127.0.0.1:{{Port}}/
            kill $SERVER; wait $SERVER
            """);
        int remote = PeerPort(output, "remote ", "127.0.0.1");
        // HttpClient's socket is dual-stack: it sees itself as the IPv4-mapped form of the same endpoint.
        Assert.Equal(remote, PeerPort(output, "local ", "[::ffff:127.0.0.1]"));
        Assert.Contains($"body you are 127.0.0.1:{remote}", output);
    }

    [Fact]
    public void JavaHttpServerReportsTheClientAndHttpClientGetsTheAnswer()
    {
        using var dir = new TempDir();
        const int Port = 19104;
        string source = Launcher.Program("JavaHttp.java");
        string output = RunScript(dir, $$"""
            java {{source}} server {{Port}} & SERVER=$!
            wait_listen {{Port}}
            echo "tcp-listeners $(tcp_listeners {{Port}})"
            java {{source}} client http://127.0.0.1:{{Port}}/
            kill $SERVER; wait $SERVER
            """);
        int remote = PeerPort(output, "remote /", "127.0.0.1");
        Assert.Contains($"body you are /127.0.0.1:{remote}", output);
    }

    [Fact]
    public void NodeHttpServerSeesEachClientAtTheAddressTheClientHas()
    {
        using var dir = new TempDir();
        const int Port = 19105;
        string script = Launcher.Program("nodehttp.js");
        string output = RunScript(dir, $$"""
            node {{script}} server {{Port}} & SERVER=$!
            wait_listen {{Port}}
            echo "tcp-listeners $(tcp_listeners {{Port}})"
            node {{script}} client http://127.0.0.1:{{Port}}/
            node {{script}} client http://127.0.0.1:{{Port}}/
            kill $SERVER; wait $SERVER
            """);
        var remotes = Regex.Matches(output, @"^remote (.*)$", RegexOptions.Multiline).Select(m => m.Groups[1].Value).ToList();
        var locals = Regex.Matches(output, @"^local (.*)$", RegexOptions.Multiline).Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(2, remotes.Count);
        Assert.Equal(locals, remotes);
        Assert.NotEqual(remotes[0], remotes[1]);
        foreach (var r in remotes) PeerPort("remote " + r, "remote ", "127.0.0.1");
    }

    /// <summary>
    /// Protected mode lets only loopback clients in. Bound to 127.0.0.1 any client of the socket file is
    /// loopback; bound to a redirected address that is not, a client of the same launcher still is (it
    /// reports itself as 127.0.0.1), where the fake address would be refused.
    /// </summary>
    [Theory]
    [InlineData("127.0.0.1", 19106)]
    [InlineData("10.1.2.3", 19107)]
    public void RedisInProtectedModeServesCliAndBenchmarkClients(string bind, int port)
    {
        using var dir = new TempDir();
        string output = RunScript(dir, $$"""
            redis-server --port {{port}} --bind {{bind}} --protected-mode yes --save "" --appendonly no --dir {{dir.Path}} --logfile {{dir["redis.log"]}} & SERVER=$!
            wait_listen {{port}}
            echo "tcp-listeners $(tcp_listeners {{port}})"
            redis-cli -h {{bind}} -p {{port}} set greeting hello
            redis-cli -h {{bind}} -p {{port}} get greeting
            redis-cli -h {{bind}} -p {{port}} client info | tr ' ' '\n' | grep -E '^l?addr='
            redis-benchmark -h {{bind}} -p {{port}} -n 100 -c 2 -t set,get -q | tr '\r' '\n' | grep -E '^(SET|GET): [0-9.]+ requests per second' | cut -d: -f1
            kill $SERVER; wait $SERVER
            """, unsockAddr: bind + "/32");
        Assert.Contains("OK\nhello\n", output);
        PeerPort(output, "addr=", "127.0.0.1");
        Assert.Contains($"laddr={bind}:{port}", output);
        Assert.Contains("SET\nGET\n", output);
    }

    private static string NginxConfig(TempDir dir, int port, int upstreamPort) => $$"""
        daemon off;
        master_process on;
        worker_processes 1;
        user root;
        pid {{dir["nginx.pid"]}};
        error_log {{dir["error.log"]}} info;
        events { worker_connections 64; }
        http {
            log_format peers '$remote_addr:$remote_port "$request" $status upstream=$upstream_addr';
            access_log {{dir["access.log"]}} peers;
            client_body_temp_path {{dir["body"]}};
            proxy_temp_path {{dir["proxy"]}};
            fastcgi_temp_path {{dir["fastcgi"]}};
            uwsgi_temp_path {{dir["uwsgi"]}};
            scgi_temp_path {{dir["scgi"]}};
            server {
                listen 127.0.0.1:{{port}};
                root {{dir["www"]}};
                location /proxied/ { proxy_pass http://127.0.0.1:{{upstreamPort}}/; proxy_connect_timeout 10s; proxy_read_timeout 10s; }
            }
        }
        """;

    [Fact]
    public void NginxServesAFileAndLogsItsClientsAddresses()
    {
        using var dir = new TempDir();
        const int Port = 19108;
        Directory.CreateDirectory(dir["www"]);
        File.WriteAllText(dir["www/index.html"], "served by nginx\n");
        File.WriteAllText(dir["nginx.conf"], NginxConfig(dir, Port, 19109));
        string output = RunScript(dir, $$"""
            nginx -p {{dir.Path}} -c {{dir["nginx.conf"]}} & SERVER=$!
            wait_listen {{Port}}
            echo "tcp-listeners $(tcp_listeners {{Port}})"
            curl -sS -m 20 -w 'client %{local_ip}:%{local_port}\n' http://127.0.0.1:{{Port}}/
            kill $SERVER; wait $SERVER
            cat access.log
            """);
        Assert.Contains("served by nginx\n", output);
        int client = PeerPort(output, "client ", "127.0.0.1");
        Assert.Contains($"127.0.0.1:{client} \"GET / HTTP/1.1\" 200 upstream=-", output);
    }

    /// <summary>nginx registers an upstream socket with epoll before it connects: the registration must follow the swap.</summary>
    [Fact]
    public void NginxProxiesToARedirectedUpstream()
    {
        using var dir = new TempDir();
        const int Port = 19110, Upstream = 19111;
        Directory.CreateDirectory(dir["www"]);
        File.WriteAllText(dir["www/page.html"], "from the upstream\n");
        File.WriteAllText(dir["nginx.conf"], NginxConfig(dir, Port, Upstream));
        string output = RunScript(dir, $$"""
            (cd www && exec {{Py}} -m http.server {{Upstream}} --bind 127.0.0.1 2>../upstream.log) & UPSTREAM=$!
            nginx -p {{dir.Path}} -c {{dir["nginx.conf"]}} & SERVER=$!
            wait_listen {{Port}}
            wait_listen {{Upstream}}
            echo "tcp-listeners $(( $(tcp_listeners {{Port}}) + $(tcp_listeners {{Upstream}}) ))"
            for i in 1 2 3; do curl -sS -m 30 http://127.0.0.1:{{Port}}/proxied/page.html; done
            kill $SERVER $UPSTREAM; wait $SERVER $UPSTREAM
            cat access.log upstream.log
            """);
        Assert.Equal(3, Regex.Matches(output, "^from the upstream$", RegexOptions.Multiline).Count);
        Assert.Equal(3, Regex.Matches(output, $"^127\\.0\\.0\\.1:\\d+ \"GET /proxied/page.html HTTP/1.1\" 200 upstream=127\\.0\\.0\\.1:{Upstream}$", RegexOptions.Multiline).Count);
        // The upstream sees nginx, a client of the same launcher, at its loopback address.
        Assert.Equal(3, Regex.Matches(output, @"^127\.0\.0\.1 - - \[.*\] ""GET /page.html HTTP/1\.0"" 200", RegexOptions.Multiline).Count);
    }

    [Fact]
    public void EpollRegistrationsMadeBeforeConnectOrBindFollowTheSwap()
    {
        using var dir = new TempDir();
        string probe = CompiledC.Build("epollprobe.c");
        const int Port = 19112;
        string output = RunScript(dir, $$"""
            {{probe}} {{Port}} & PROBE=$!
            wait_listen {{Port}}
            echo "tcp-listeners $(tcp_listeners {{Port}})"
            wait $PROBE
            """, "127.0.0.1/32", out string decisions);
        var results = output.Split('\n').Where(l => l.StartsWith("ok ", StringComparison.Ordinal) || l.StartsWith("FAIL", StringComparison.Ordinal) || l == "done");
        Assert.Equal(["ok level", "ok edge", "ok oneshot", "ok two-sets", "ok shared-number", "ok crowded", "done"], results);
        // The listener was registered before bind, each client before connect: their entries moved.
        foreach (string data in (string[])["4c", "1111", "2222", "3333", "4451", "4452", "5552", "6666"])
            Assert.Contains($"data 0x{data}) moved to the new socket", decisions);
        Assert.DoesNotContain("data 0x5551", decisions); // the other file under the same number stays where it was
    }
}
