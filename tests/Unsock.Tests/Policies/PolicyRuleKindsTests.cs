using System.Net;
using Unsock.Core.Engine;
using Unsock.Core.Policies;

namespace Unsock.Tests.Policies;

/// <summary>The actions and matches beyond socket files: parsing, errors, JSON round trip, and the first match across rule kinds.</summary>
public class PolicyRuleKindsTests
{
    private static Policy Rules(string rules) => Policy.Parse($$"""{ "rules": [ {{rules}} ] }""", "k.json");

    private static string Error(string rules) => Assert.Throws<PolicyException>(() => Rules(rules)).Message;

    [Theory]
    [InlineData("/var/run/docker.sock", "/var/run/docker.sock", true)]
    [InlineData("/var/run/docker.sock", "/var/run/docker.sockx", false)]
    [InlineData("/tmp/.X11-unix/X*", "/tmp/.X11-unix/X0", true)]
    [InlineData("/tmp/.X11-unix/X*", "/tmp/.X11-unix/X", true)]
    [InlineData("/tmp/*.sock", "/tmp/a/b.sock", false)]
    [InlineData("/tmp/**.sock", "/tmp/a/b.sock", true)]
    [InlineData("/tmp/**/b.sock", "/tmp/b.sock", false)]
    [InlineData("/tmp/**/b.sock", "/tmp/x/y/z/b.sock", true)]
    [InlineData("/tmp/**", "/tmp/", true)]
    [InlineData("/run/?.sock", "/run/a.sock", true)]
    [InlineData("/run/?.sock", "/run/ab.sock", false)]
    [InlineData("/run/?.sock", "/run//.sock", false)]
    [InlineData("/run/\\*.sock", "/run/*.sock", true)]
    [InlineData("/run/\\*.sock", "/run/a.sock", false)]
    [InlineData("/a/*/c/*/e", "/a/b/c/d/e", true)]
    [InlineData("/a/*/c/*/e", "/a/b/c/d/x/e", false)]
    [InlineData("/foo/ba[q-s]/xyz", "/foo/bar/xyz", true)]
    [InlineData("/foo/ba[q-s]/xyz", "/foo/bat/xyz", false)]
    [InlineData("/x[!0-9]", "/xa", true)]
    [InlineData("/x[!0-9]", "/x1", false)]
    [InlineData("/x[]]", "/x]", true)]
    [InlineData("/a[/]b", "/a/b", false)]
    public void Globs_match_paths(string pattern, string path, bool matches) =>
        Assert.Equal(matches, new UnixPathPattern(pattern).IsMatch(path));

    [Fact]
    public void A_pathological_glob_answers_quickly_whatever_the_path()
    {
        // Backtracking matchers take exponential time on this; ours is pattern length times path length.
        var pattern = new UnixPathPattern("/" + string.Concat(Enumerable.Repeat("*a", 40)) + "b");
        string path = "/" + new string('a', 4000);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        Assert.False(pattern.IsMatch(path));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), $"took {watch.Elapsed}");
    }

    [Theory]
    [InlineData("docker.sock", "/home/u", "/home/u/docker.sock")]
    [InlineData("./a/../b.sock", "/srv/", "/srv/b.sock")]
    [InlineData("/var//run/./x/../docker.sock", null, "/var/run/docker.sock")]
    [InlineData("../../../../x.sock", "/a", "/x.sock")]
    [InlineData("rel.sock", null, null)]
    public void Socket_paths_are_made_absolute_as_text(string sunPath, string? cwd, string? expected) =>
        Assert.Equal(expected, UnixPathPattern.AbsoluteSocketPath(sunPath, cwd));

    [Fact]
    public void First_match_wins_across_ip_and_unix_rules()
    {
        var policy = Rules("""
            { "fromUnix": "/var/run/docker.sock", "reject": "EACCES" },
            { "address": "127.0.0.1", "port": 80, "abstract": "web-%p" },
            { "fromUnix": "/var/run/**", "unix": "/tmp/elsewhere.sock" },
            { "fromAbstract": "app/*", "allow": true },
            { "fromAbstract": "**", "blackhole": true },
            { "address": "0.0.0.0/0", "blackhole": true }
            """);
        Assert.Equal(0, policy.MatchUnix(RuleDirection.Connect, RuleProtocol.Tcp, false, "/var/run/docker.sock")?.Index);
        Assert.Equal(2, policy.MatchUnix(RuleDirection.Connect, RuleProtocol.Tcp, false, "/var/run/x/y.sock")?.Index);
        Assert.Null(policy.MatchUnix(RuleDirection.Connect, RuleProtocol.Tcp, false, "/tmp/y.sock"));
        // An abstract name never matches fromUnix, a path never fromAbstract.
        Assert.Null(policy.MatchUnix(RuleDirection.Connect, RuleProtocol.Tcp, true, "/var/run/docker.sock"));
        Assert.Equal(3, policy.MatchUnix(RuleDirection.Bind, RuleProtocol.Tcp, true, "app/1")?.Index);
        Assert.Equal(4, policy.MatchUnix(RuleDirection.Bind, RuleProtocol.Tcp, true, "other")?.Index);
        // Blackhole is for binds: a connect goes on to the next rule (here none).
        Assert.Null(policy.MatchUnix(RuleDirection.Connect, RuleProtocol.Tcp, true, "other"));
        Assert.Equal(1, policy.Match(RuleDirection.Connect, RuleProtocol.Tcp, IPAddress.Loopback, 80)?.Index);
        Assert.Null(policy.Match(RuleDirection.Connect, RuleProtocol.Tcp, IPAddress.Loopback, 81));
        Assert.Equal(5, policy.Match(RuleDirection.Bind, RuleProtocol.Tcp, IPAddress.Loopback, 81)?.Index);
        // Destinations other than files are stream-only: a UDP socket skips them, a reject still applies.
        Assert.Null(policy.Match(RuleDirection.Connect, RuleProtocol.Udp, IPAddress.Loopback, 80));
        Assert.Equal(0, policy.MatchUnix(RuleDirection.Connect, RuleProtocol.Udp, false, "/var/run/docker.sock")?.Index);
        Assert.True(policy.HasUnixMatches);
        Assert.True(policy.HasRedirectRules);
    }

    [Fact]
    public void Every_new_action_reads_and_writes_back_the_same()
    {
        var policy = Rules("""
            { "direction": "bind", "port": 6379, "blackhole": true },
            { "address": "::1", "abstract": "redis/%p" },
            { "port": 5000, "vsock": { "cid": 2, "port": 5678 } },
            { "port": 5001, "vsock": { "port": 80 } },
            { "port": 5002, "tipc": { "type": 128, "lower": 99, "upper": 100, "scope": 3, "addrtype": 1 } },
            { "port": 5003, "firecracker": { "socket": "/run/fc/v.sock", "port": 52 } },
            { "direction": "bind", "port": 8080, "systemd": "web" },
            { "direction": "bind", "port": 8081, "systemd": true },
            { "port": 9000, "unix": "/run/a.sock", "mode": "0600", "noremove": true },
            { "fromUnix": "/tmp/.X11-unix/X*", "unix": "/run/x11/%%0.sock" },
            { "fromAbstract": "ab?", "abstract": "xy" }
            """);
        Assert.IsType<BlackholeAction>(policy.Rules[0].Action);
        Assert.Equal("redis/6379", ((AbstractAction)policy.Rules[1].Action).ResolveName(IPAddress.IPv6Loopback, 6379, RuleProtocol.Tcp));
        Assert.Equal(new VsockAction(2, 5678), policy.Rules[2].Action);
        Assert.Equal(new VsockAction(0xFFFFFFFF, 80), policy.Rules[3].Action);
        Assert.Equal(new TipcAction(1, 3, 128, 99, 100), policy.Rules[4].Action);
        Assert.Equal(new FirecrackerAction("/run/fc/v.sock", 52), policy.Rules[5].Action);
        Assert.Equal(new SystemdAction("web"), policy.Rules[6].Action);
        Assert.Equal(new SystemdAction(null), policy.Rules[7].Action);
        Assert.True(policy.Rules[8].NoRemove);
        Assert.Equal("/run/x11/%0.sock", ((UnixAction)policy.Rules[9].Action).ResolveFixedPath());
        Assert.Equal("ab?", policy.Rules[10].FromAbstract?.Pattern);

        var again = Policy.Parse(policy.ToJson(), "again.json");
        Assert.Equal(policy, again);
        Assert.Contains("\"noremove\": true", policy.ToJson());
        Assert.Contains("\"cid\": \"any\"", policy.ToJson());
    }

    [Fact]
    public void The_new_destinations_give_the_bytes_a_control_file_would()
    {
        var vsock = new VsockAction(2, 5678).ToControlFile();
        Assert.Equal(Unsock.Core.ControlFiles.ControlFile.ForVsock(5678, 2).ToBytes(), vsock.ToBytes());
        Assert.Equal(new byte[] { 40, 0, 0, 0, 0x2e, 0x16, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0 }, vsock.Destination.ToArray());
        var tipc = new TipcAction(2, 2, 128, 99, 0).ToControlFile();
        Assert.Equal(new byte[] { 30, 0, 2, 2, 128, 0, 0, 0, 99, 0, 0, 0, 0, 0, 0, 0 }, tipc.Destination.ToArray());
        var firecracker = new FirecrackerAction("/run/fc.sock", 52).ToControlFile();
        Assert.Equal("/run/fc.sock", firecracker.ProxyPath);
        Assert.Equal(52u, firecracker.VsockPort);
    }

    [Theory]
    [InlineData("""{ "fromUnix": "docker.sock", "unix": "/a" }""", "k.json: rules[0].fromUnix: \"docker.sock\" is not an absolute path pattern (it must start with '/')")]
    [InlineData("""{ "fromUnix": "/a", "port": 80, "unix": "/b" }""", "k.json: rules[0].fromUnix: \"/a\" with \"unix\": fromUnix and fromAbstract match Unix sockets, which have no address or port")]
    [InlineData("""{ "fromUnix": "/a", "unix": "/b/%p.sock" }""", "k.json: rules[0].fromUnix: \"/a\" with \"unix\": a Unix socket has no address, port or protocol for %a, %p, %t")]
    [InlineData("""{ "fromUnix": "/a", "directory": "/b" }""", "k.json: rules[0].fromUnix: \"/a\" with \"directory\": directory names <port>.sock, and a Unix socket has no port; use \"unix\" with a path")]
    [InlineData("""{ "fromUnix": "/a", "fromAbstract": "b", "unix": "/b" }""", "k.json: rules[0].fromUnix: \"/a\" with \"unix\": a rule matches either fromUnix or fromAbstract, not both")]
    [InlineData("""{ "fromUnix": "/a", "vsock": { "port": 1 } }""", "k.json: rules[0].fromUnix: \"/a\" with \"vsock\": a rule matching Unix sockets takes unix, abstract, blackhole, reject or allow")]
    [InlineData("""{ "fromUnix": "/a\\", "unix": "/b" }""", "k.json: rules[0].fromUnix: \"/a\\\\\" ends with a lone '\\' (write \\\\ for a backslash)")]
    [InlineData("""{ "fromAbstract": "a[bc", "unix": "/b" }""", "k.json: rules[0].fromAbstract: \"a[bc\" has a '[' without its closing ']' (write \\[ for a bracket)")]
    [InlineData("""{ "blackhole": false }""", "k.json: rules[0].blackhole: false is not allowed; \"blackhole\" takes only true (leave it out otherwise)")]
    [InlineData("""{ "direction": "connect", "blackhole": true }""", "k.json: rules[0].direction: \"connect\" with \"blackhole\": blackhole decides what a bind gets; it cannot apply to connect")]
    [InlineData("""{ "direction": "connect", "systemd": true }""", "k.json: rules[0].direction: \"connect\" with \"systemd\": systemd decides what a bind gets; it cannot apply to connect")]
    [InlineData("""{ "systemd": "a:b" }""", "k.json: rules[0].systemd: \"a:b\" is not a systemd socket name (1-255 characters, no ':' or control characters)")]
    [InlineData("""{ "abstract": "" }""", "k.json: rules[0].abstract: \"\" is empty; an abstract socket needs a name")]
    [InlineData("""{ "abstract": "x%q" }""", "k.json: rules[0].abstract: \"x%q\" has the unknown placeholder \"%q\" (known: %p port, %a address, %t protocol, %% percent sign)")]
    [InlineData("""{ "vsock": 5 }""", "k.json: rules[0].vsock: 5 is a number, expected an object such as { \"cid\": 2, \"port\": 5678 }")]
    [InlineData("""{ "vsock": { "cid": 2 } }""", "k.json: rules[0].vsock.port: is missing; expected a VSOCK port 0-4294967294")]
    [InlineData("""{ "vsock": { "port": -1 } }""", "k.json: rules[0].vsock.port: -1 is not a VSOCK port 0-4294967294")]
    [InlineData("""{ "vsock": { "port": 1, "host": 2 } }""", "k.json: rules[0].vsock.host: unknown key; the known keys are cid, port")]
    [InlineData("""{ "tipc": { "type": 1, "lower": 2, "scope": 9 } }""", "k.json: rules[0].tipc.scope: 9 is not 1 (zone), 2 (cluster) or 3 (node)")]
    [InlineData("""{ "firecracker": { "socket": "fc.sock", "port": 1 } }""", "k.json: rules[0].firecracker.socket: \"fc.sock\" is not an absolute path (it must start with '/')")]
    [InlineData("""{ "firecracker": { "port": 1 } }""", "k.json: rules[0].firecracker.socket: is missing; it names the Firecracker multiplexer's Unix socket")]
    [InlineData("""{ "reject": "EACCES", "noremove": true }""", "k.json: rules[0].noremove: applies only to unix and directory rules (the rules that create socket files), not to \"reject\"")]
    [InlineData("""{ "abstract": "a", "noremove": true }""", "k.json: rules[0].noremove: applies only to unix and directory rules (the rules that create socket files), not to \"abstract\"")]
    [InlineData("""{ "unix": "/a", "noremove": 1 }""", "k.json: rules[0].noremove: 1 is a number, expected true or false")]
    [InlineData("""{ "protocol": "udp", "abstract": "a" }""", "k.json: rules[0].protocol: \"udp\" with \"abstract\": abstract rules apply to stream (TCP) sockets only")]
    [InlineData("""{ "abstract": "a", "blackhole": true }""", "k.json: rules[0]: has both \"abstract\" and \"blackhole\"; a rule takes exactly one action")]
    public void Mistakes_are_named_with_rule_key_and_value(string rule, string message) => Assert.Equal(message, Error(rule));

    [Fact]
    public void A_policy_that_only_matches_unix_sockets_traps_bind_and_connect()
    {
        var plan = FilterPlan.For(Rules("""{ "fromUnix": "/var/run/docker.sock", "unix": "/tmp/d.sock" }"""));
        Assert.Contains(plan, r => r.Syscall == Unsock.Core.Filter.Syscalls.Connect);
        Assert.Contains(plan, r => r.Syscall == Unsock.Core.Filter.Syscalls.Bind);
        Assert.Contains(plan, r => r.Syscall == Unsock.Core.Filter.Syscalls.GetSockName);
        Assert.Contains(plan, r => r.Syscall == Unsock.Core.Filter.Syscalls.GetPeerName);
    }

    [Fact]
    public void Systemd_sockets_are_read_from_the_environment_block()
    {
        byte[] environ = "PATH=/bin\0LISTEN_PID=42\0LISTEN_FDS=3\0LISTEN_FDNAMES=web:admin\0"u8.ToArray();
        var sockets = SystemdSockets.Parse(environ, out _);
        Assert.NotNull(sockets);
        Assert.Equal(42, sockets.ListenPid);
        Assert.Equal(["web", "admin", "unknown"], sockets.Names);
        Assert.Equal(1, sockets.Choose("admin", new HashSet<int>()));
        Assert.Equal(-1, sockets.Choose("db", new HashSet<int>()));
        Assert.Equal(2, sockets.Choose(null, new HashSet<int> { 0, 1 }));
        Assert.Equal(-1, sockets.Choose(null, new HashSet<int> { 0, 1, 2 }));

        Assert.Null(SystemdSockets.Parse("LISTEN_PID=1\0"u8, out string none));
        Assert.Equal("no LISTEN_FDS in the program's environment: systemd passed it no sockets", none);
        Assert.Null(SystemdSockets.Parse("LISTEN_PID=1\0LISTEN_FDS=-2\0"u8, out string bad));
        Assert.Equal("LISTEN_FDS is \"-2\", not a number of sockets 1-4096", bad);
        Assert.Null(SystemdSockets.Parse("LISTEN_FDS=1\0"u8, out string noPid));
        Assert.Equal("LISTEN_PID is missing; systemd sets it to the process the sockets are for", noPid);
    }
}
