using System.Text.Json;

namespace Unsock.Tests.Integration;

/// <summary>What accept, getpeername and getsockname report for the two ends of a redirected connection.</summary>
public class PeerAddressTests : IntegrationTest
{
    private const int EphemeralFirst = 32768, EphemeralLast = 60999;

    private static JsonElement RunPython(string policy, string script, params string[] args)
    {
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, "-c", script, .. args]);
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        return JsonDocument.Parse(p.Stdout).RootElement;
    }

    private static void AssertDistinctEphemeralPorts(IEnumerable<int> ports, int expectedCount)
    {
        var list = ports.ToList();
        Assert.Equal(expectedCount, list.Count);
        Assert.Equal(expectedCount, list.Distinct().Count());
        Assert.All(list, port => Assert.InRange(port, EphemeralFirst, EphemeralLast));
    }

    /// <summary>
    /// Forty clients of the same launcher, all open at once, on a dual-stack listener: each accepted peer is the
    /// client's own getsockname (IPv4-mapped, as a dual-stack socket sees an IPv4 client), each port its own.
    /// </summary>
    [Fact]
    public void EveryLiveClientOfTheSameLauncherIsSeenAtTheAddressItReportsForItself()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        const string Script = """
            import json, socket, sys
            port = int(sys.argv[1])
            server = socket.socket(socket.AF_INET6)
            server.bind(("::ffff:127.0.0.1", port))
            server.listen(64)
            clients = []
            for _ in range(40):
                c = socket.socket(socket.AF_INET)
                c.connect(("127.0.0.1", port))
                clients.append(c)
            accepted = [server.accept() for _ in clients]
            print(json.dumps({
                "clients": [list(c.getsockname()) for c in clients],
                "peers": [list(peer[:2]) for _, peer in accepted],
                "peers_again": [list(a.getpeername()[:2]) for a, _ in accepted],
            }))
            """;
        var r = RunPython(policy, Script, "9901");
        var clients = r.GetProperty("clients").EnumerateArray().Select(e => (e[0].GetString(), e[1].GetInt32())).ToList();
        var peers = r.GetProperty("peers").EnumerateArray().Select(e => (e[0].GetString(), e[1].GetInt32())).ToList();
        var again = r.GetProperty("peers_again").EnumerateArray().Select(e => (e[0].GetString(), e[1].GetInt32())).ToList();
        Assert.All(clients, c => Assert.Equal("127.0.0.1", c.Item1));
        AssertDistinctEphemeralPorts(clients.Select(c => c.Item2), 40);
        Assert.Equal(clients.Select(c => ((string?)"::ffff:127.0.0.1", c.Item2)).Order(), peers.Order());
        Assert.Equal(peers, again);
    }

    /// <summary>
    /// A listener on an address that is not loopback, reached by the program's own AF_UNIX sockets (not ours):
    /// each peer is fakeAddress with a port of its own, and getpeername agrees with accept.
    /// </summary>
    [Fact]
    public void ClientsWeDidNotConvertOfAListenerThatIsNotLoopbackAreSeenAtTheFakeAddress()
    {
        using var dir = new TempDir();
        string policy = Policies.Write(dir, $$"""
            { "fakeAddress": "127.9.9.9", "rules": [ { "address": "10.0.0.0/8", "directory": "{{dir.Path}}/socks" } ] }
            """);
        const string Script = """
            import json, socket, sys
            port, path = int(sys.argv[1]), sys.argv[2]
            server = socket.socket()
            server.bind(("10.1.1.1", port))
            server.listen(64)
            clients = []
            for _ in range(10):
                c = socket.socket(socket.AF_UNIX)
                c.connect(path)
                clients.append(c)
            accepted = [server.accept() for _ in clients]
            print(json.dumps({"peers": [list(p[:2]) for _, p in accepted], "peers_again": [list(a.getpeername()[:2]) for a, _ in accepted]}))
            """;
        var r = RunPython(policy, Script, "9902", dir["socks/9902.sock"]);
        var peers = r.GetProperty("peers").EnumerateArray().Select(e => (e[0].GetString(), e[1].GetInt32())).ToList();
        Assert.All(peers, p => Assert.Equal("127.9.9.9", p.Item1));
        AssertDistinctEphemeralPorts(peers.Select(p => p.Item2), 10);
        Assert.Equal(peers, r.GetProperty("peers_again").EnumerateArray().Select(e => (e[0].GetString(), e[1].GetInt32())).ToList());
    }

    /// <summary>acceptConvert "none": accept reports the AF_UNIX peer as it is, getpeername still the believable one.</summary>
    [Fact]
    public void WithAcceptConvertNoneAcceptIsRawButGetpeernameIsStillBelievable()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir, extraTop: "\"acceptConvert\": \"none\",");
        const string Script = """
            import json, socket, sys
            port = int(sys.argv[1])
            server = socket.socket()
            server.bind(("127.0.0.1", port))
            server.listen(4)
            client = socket.socket()
            client.connect(("127.0.0.1", port))
            conn, peer = server.accept()
            print(json.dumps({"accept": peer, "getpeername": list(conn.getpeername()[:2]), "client": list(client.getsockname())}))
            """;
        var r = RunPython(policy, Script, "9903");
        Assert.Equal("", r.GetProperty("accept").GetString()); // Python shows an unnamed AF_UNIX peer as ''
        Assert.Equal(r.GetProperty("client").ToString(), r.GetProperty("getpeername").ToString());
        Assert.Equal("127.0.0.1", r.GetProperty("client")[0].GetString());
        AssertDistinctEphemeralPorts([r.GetProperty("client")[1].GetInt32()], 1);
    }
}
