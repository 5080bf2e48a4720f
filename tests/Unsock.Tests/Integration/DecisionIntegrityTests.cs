using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Unsock.Tests.Integration;

/// <summary>The small C programs of Programs/c.</summary>
public static class CPrograms
{
    public static string Path(string name) => CompiledC.Build($"c/{name}.c", "-pthread");
}

/// <summary>A real TCP listener on 127.0.0.1 (not under the launcher): counts and echoes what reaches it.</summary>
public sealed class NativeTcpServer : IDisposable
{
    private readonly Socket _listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    private int _accepted;

    /// <param name="accept">False: listen with backlog 0 and never accept, so that connects beyond it wait.</param>
    public NativeTcpServer(bool accept = true)
    {
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(accept ? 512 : 0);
        if (accept) _ = AcceptLoop();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndPoint!).Port;

    public int Accepted => Volatile.Read(ref _accepted);

    /// <summary>For a server made with accept false: from now on, accept and echo what is waiting and what comes.</summary>
    public void StartAccepting() => _ = AcceptLoop();

    private async Task AcceptLoop()
    {
        while (true)
        {
            Socket c;
            try { c = await _listener.AcceptAsync(); }
            catch (Exception e) when (e is SocketException or ObjectDisposedException) { return; }
            Interlocked.Increment(ref _accepted);
            _ = Echo(c);
        }
    }

    private static async Task Echo(Socket c)
    {
        var buf = new byte[4096];
        try
        {
            while (true)
            {
                int n = await c.ReceiveAsync(buf);
                if (n == 0) break;
                await c.SendAsync(buf.AsMemory(0, n));
            }
        }
        catch (SocketException) { }
        finally { c.Dispose(); }
    }

    /// <summary>A port nothing listens on (bound, never listening, so nobody else takes it meanwhile).</summary>
    public static Socket ClosedPort(out int port)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        port = ((IPEndPoint)s.LocalEndPoint!).Port;
        return s;
    }

    public void Dispose() => _listener.Dispose();
}

/// <summary>
/// Decisions that must not be bypassed (issue 6): nothing the kernel reads again after our decision,
/// MSG_FASTOPEN decided like connect, calls carried out on our copy of the socket behaving as TCP.
/// </summary>
public class DecisionIntegrityTests : IntegrationTest
{
    private static string GuardProbe => Launcher.Program("guardprobe.py");

    private static string RejectAll(TempDir dir) => Policies.Write(dir, """{ "rules": [ { "address": "0.0.0.0/0", "reject": "EACCES" } ] }""");

    /// <summary>Rejects 10.0.0.0/8, redirects nothing the tests use: connects to 127.0.0.1 are allowed and carried out by us.</summary>
    private static string Guarded(TempDir dir) => Policies.Write(dir, $$"""
        { "rules": [
            { "address": "10.0.0.0/8", "reject": "ECONNREFUSED" },
            { "address": "127.0.0.2/32", "directory": "{{dir.Path}}/socks" }
        ] }
        """);

    private static RunningProgram Launch(string policy, params string[] command) => new(Launcher.Path, ["--policy", policy, "--", .. command]);

    [Fact]
    public void FlippingSinFamilyNeverGetsPastARejectEverythingPolicy()
    {
        using var dir = new TempDir();
        using var victim = new NativeTcpServer();
        using var attacker = Launch(RejectAll(dir), CPrograms.Path("addrflip"), victim.Port.ToString(), "20000", "family");
        Assert.True(0 == attacker.WaitForExit(TimeSpan.FromMinutes(5)), attacker.Describe());
        Console.WriteLine($"addrflip: {attacker.Stdout.Trim()}, victim accepted {victim.Accepted}");
        Assert.Contains("bypasses 0 tries 20000", attacker.Stdout);
        Assert.Equal(0, victim.Accepted);
    }

    [Fact]
    public void FlippingTheAddressNeverGetsPastARejectRule()
    {
        using var dir = new TempDir();
        using var victim = new NativeTcpServer();
        // 127.0.0.1 is rejected; the other address (10.255.255.1) matches no rule.
        string policy = Policies.Write(dir, """{ "rules": [ { "address": "127.0.0.1/32", "reject": "EACCES" } ] }""");
        using var attacker = Launch(policy, CPrograms.Path("addrflip"), victim.Port.ToString(), "5000", "address");
        Assert.True(0 == attacker.WaitForExit(TimeSpan.FromMinutes(5)), attacker.Describe());
        Console.WriteLine($"addrflip: {attacker.Stdout.Trim()}, victim accepted {victim.Accepted}");
        Assert.Contains("bypasses 0 tries 5000", attacker.Stdout);
        Assert.Equal(0, victim.Accepted);
    }

    [Fact]
    public void FastOpenSendIsRejectedLikeConnect()
    {
        using var dir = new TempDir();
        using var victim = new NativeTcpServer();
        using var attacker = Launch(RejectAll(dir), CPrograms.Path("addrflip"), victim.Port.ToString(), "2000", "fastopen");
        Assert.True(0 == attacker.WaitForExit(TimeSpan.FromMinutes(5)), attacker.Describe());
        Console.WriteLine($"addrflip: {attacker.Stdout.Trim()}, victim accepted {victim.Accepted}");
        // Each try is refused, with the rule's EACCES when the address was read as AF_INET, or with EAFNOSUPPORT
        // when the flip had made it AF_UNIX (the kernel's answer for a TCP socket): which one, and which came
        // last, depends on when the flips fall. Never another errno, and the rule itself refused some.
        var refused = Refusals(attacker.Stdout, out int bypasses, out int tries);
        Assert.True(bypasses == 0 && tries == 2000, attacker.Stdout);
        Assert.Equal(tries, refused.Values.Sum());
        Assert.All(refused.Keys, e => Assert.True(e is 13 or 97, $"errno {e} is neither EACCES (the rule) nor EAFNOSUPPORT: {attacker.Stdout}"));
        Assert.True(refused.GetValueOrDefault(13) > 0, $"the rule refused nothing: {attacker.Stdout}");
        Assert.Equal(0, victim.Accepted);
    }

    /// <summary>addrflip's "bypasses N tries N refused E:N ..." line: how many tries were refused with each errno.</summary>
    private static Dictionary<int, int> Refusals(string stdout, out int bypasses, out int tries)
    {
        var m = Regex.Match(stdout, @"^bypasses (\d+) tries (\d+) refused((?: \d+:\d+)*)\n");
        Assert.True(m.Success, $"addrflip printed: {stdout}");
        bypasses = int.Parse(m.Groups[1].Value);
        tries = int.Parse(m.Groups[2].Value);
        return m.Groups[3].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Select(p => p.Split(':')).ToDictionary(p => int.Parse(p[0]), p => int.Parse(p[1]));
    }

    [Fact]
    public void FastOpenSendIsRedirectedAndItsDataArrives()
    {
        using var dir = new TempDir();
        // The server in the same program is redirected too: only a redirected send can reach it (no TCP port listens).
        using var p = Launch(Policies.Loopback(dir), Py, GuardProbe, "fastopen", "47301", "self");
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        var r = JsonDocument.Parse(p.Stdout).RootElement;
        Assert.Equal(5, r.GetProperty("blocking").GetInt32());
        Assert.Equal("hello", r.GetProperty("blocking_echo").GetString());
        Assert.True(r.GetProperty("blocking_peer").GetBoolean());
        Assert.Equal(5, r.GetProperty("nonblocking").GetInt32());
        Assert.Equal("hello", r.GetProperty("nonblocking_echo").GetString());
        Assert.Equal(5, r.GetProperty("sendmsg").GetInt32());
        Assert.Equal("hello", r.GetProperty("sendmsg_echo").GetString());
    }

    [Fact]
    public void FastOpenSendAllowedByARejectingPolicyIsCarriedOutAsTcp()
    {
        using var dir = new TempDir();
        using var server = new NativeTcpServer();
        using var p = Launch(Guarded(dir), Py, GuardProbe, "fastopen", server.Port.ToString(), "external");
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        var r = JsonDocument.Parse(p.Stdout).RootElement;
        Assert.Equal(5, r.GetProperty("blocking").GetInt32());
        Assert.Equal("hello", r.GetProperty("blocking_echo").GetString());
        Assert.Equal("hello", r.GetProperty("nonblocking_echo").GetString());
        Assert.Equal(5, r.GetProperty("sendmsg").GetInt32());
        Assert.Equal("hello", r.GetProperty("sendmsg_echo").GetString());
        Assert.Equal(3, server.Accepted);
    }

    [Fact]
    public void ConnectsAllowedByARejectingPolicyBehaveAsNativeTcp()
    {
        using var dir = new TempDir();
        using var server = new NativeTcpServer();
        using var closed = NativeTcpServer.ClosedPort(out int closedPort);
        using var native = new RunningProgram(Py, [GuardProbe, "connects", server.Port.ToString(), closedPort.ToString()]);
        Assert.True(0 == native.WaitForExit(Long), native.Describe());
        using var guarded = Launch(Guarded(dir), Py, GuardProbe, "connects", server.Port.ToString(), closedPort.ToString());
        Assert.True(0 == guarded.WaitForExit(Long), guarded.Describe());
        Assert.Equal(native.Stdout, guarded.Stdout);
        Assert.Contains("\"nonblocking\": \"EINPROGRESS\"", guarded.Stdout);
        Assert.Contains("\"refused\": \"ECONNREFUSED\"", guarded.Stdout);
    }

    [Fact]
    public void BlockingConnectCarriedOutByUsTimesOutWithSndtimeoAsTcpDoes()
    {
        using var dir = new TempDir();
        using var server = new NativeTcpServer(accept: false);
        using var client = Launch(Guarded(dir), Py, Probe, "full-backlog", "127.0.0.1", server.Port.ToString(), "300");
        Assert.True(0 == client.WaitForExit(Long), client.Describe());
        Assert.Contains("connected 0", client.Stdout);
        Assert.Matches(@"errno 115 after 0\.[2-9]", client.Stdout); // EINPROGRESS after SO_SNDTIMEO, as the kernel says
    }

    [Fact]
    public void ARestartedConnectStillInProgressEndsConnectedAsOnTcp()
    {
        using var dir = new TempDir();
        using var server = new NativeTcpServer(accept: false);
        using var client = Launch(Guarded(dir), Py, GuardProbe, "restart", server.Port.ToString());
        Assert.True(Wait.Until(() => client.Stdout.Contains("connecting"), TimeSpan.FromSeconds(20)), client.Describe());
        Thread.Sleep(1500); // signals keep restarting the waiting connect meanwhile
        server.StartAccepting();
        Assert.True(0 == client.WaitForExit(Long), client.Describe());
        var r = JsonDocument.Parse(client.Stdout.Split('\n').First(l => l.StartsWith('{'))).RootElement;
        Assert.Equal("OK", r.GetProperty("result").GetString());
        Assert.True(r.GetProperty("seconds").GetDouble() >= 1.0, client.Stdout); // it did wait, restarted by each signal
        Assert.Equal("after", r.GetProperty("echo").GetString());
        Assert.Equal("EISCONN", r.GetProperty("again").GetString());
    }

    [Fact]
    public void SigintInterruptsABlockingConnectCarriedOutByUs()
    {
        using var dir = new TempDir();
        using var server = new NativeTcpServer(accept: false);
        using var client = Launch(Guarded(dir), Py, Probe, "full-backlog", "127.0.0.1", server.Port.ToString(), "0");
        Assert.True(Wait.Until(() => client.Stdout.Contains("connecting 1"), TimeSpan.FromSeconds(20)), client.Describe());
        Thread.Sleep(500);
        Assert.DoesNotContain("errno", client.Stdout);
        Tmds.Linux.LibC.kill(SocketFileTests.ChildOf(client.Pid), 2);
        Assert.True(Wait.Until(() => client.Stdout.Contains("interrupted after"), TimeSpan.FromSeconds(10)), client.Describe());
        Assert.True(0 == client.WaitForExit(Long), client.Describe());
    }

    [Fact]
    public void ABindWeCarryOutAsRootStillNeedsTheProgramsOwnRightToAPrivilegedPort()
    {
        Assert.True(Environment.IsPrivilegedProcess, "this test needs root, as CI and the development machines have");
        using var dir = new TempDir();
        File.SetUnixFileMode(dir.Path, (UnixFileMode)0x1FF);
        string policy = Guarded(dir);
        using var nobody = Launch(policy, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", Py, Probe, "bind", "127.0.0.1", "987");
        Assert.True(0 == nobody.WaitForExit(Long), nobody.Describe());
        Assert.Equal("errno 13\n", nobody.Stdout); // EACCES, as the kernel tells nobody
        using var root = Launch(policy, Py, Probe, "bind", "127.0.0.1", "0");
        Assert.True(0 == root.WaitForExit(Long), root.Describe());
        Assert.Equal("bound\n", root.Stdout);
    }

    [Fact]
    public void ErrnosMatchTheKernelOnRedirectedSockets()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["regular"], "regular file\n");
        using var native = new RunningProgram(Py, [GuardProbe, "fidelity", "47310", dir["regular"]]);
        Assert.True(0 == native.WaitForExit(Long), native.Describe());
        using var redirected = Launch(Policies.Loopback(dir), Py, GuardProbe, "fidelity", "47310", dir["regular"]);
        Assert.True(0 == redirected.WaitForExit(Long), redirected.Describe());
        var expected = JsonDocument.Parse(native.Stdout).RootElement;
        var actual = JsonDocument.Parse(redirected.Stdout).RootElement;
        foreach (var property in expected.EnumerateObject())
            Assert.True(property.Value.ToString() == actual.GetProperty(property.Name).ToString(),
                $"{property.Name}: native {property.Value}, redirected {actual.GetProperty(property.Name)}\n{redirected.Stdout}");
        Assert.Equal("EFAULT", actual.GetProperty("connect_file_null").GetString());
        Assert.Equal("EINVAL", actual.GetProperty("v6_socket_inet_sockaddr").GetString());
        Assert.Equal("EISCONN", actual.GetProperty("connect_on_listener").GetString());
        Assert.Equal("OK", actual.GetProperty("bind_then_connect").GetString());
        Assert.Equal("ping", actual.GetProperty("bind_then_connect_echo").GetString());
        Assert.True(actual.GetProperty("name_after_connect_kept").GetBoolean());
        Assert.Equal("ENOPROTOOPT", actual.GetProperty("set_bogus_tcp").GetString());
    }

    [Fact]
    public void AsyncOwnerAndSignalSurviveTheSwapAtBindAndConnect()
    {
        using var dir = new TempDir();
        using var p = Launch(Policies.Loopback(dir), Py, GuardProbe, "owner", "47320");
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        var r = JsonDocument.Parse(p.Stdout).RootElement;
        foreach (var side in (string[])["listener", "client"])
        {
            Assert.True(r.GetProperty(side).GetProperty("owner").GetBoolean(), $"{side}: F_GETOWN lost\n{p.Stdout}");
            Assert.True(r.GetProperty(side).GetProperty("async").GetBoolean(), $"{side}: O_ASYNC lost\n{p.Stdout}");
        }
        Assert.Equal(r.GetProperty("sigusr2").GetInt32(), r.GetProperty("listener").GetProperty("signal").GetInt32());
        Assert.Equal(r.GetProperty("sigusr1").GetInt32(), r.GetProperty("client").GetProperty("signal").GetInt32());
        Assert.True(r.GetProperty("listener_signalled").GetBoolean(), p.Stdout);
        Assert.True(r.GetProperty("client_signalled").GetBoolean(), p.Stdout);
    }

    [Fact]
    public void BogusSetsockoptFloodLeavesTheSupervisorsMemoryFlat()
    {
        using var dir = new TempDir();
        const int calls = 300_000;
        using var p = new RunningProgram(Launcher.Path, ["--policy", Policies.Loopback(dir), "--", Py, GuardProbe, "flood", "47330", calls.ToString()],
            new Dictionary<string, string?> { ["PAUSE"] = "2" });
        Assert.True(Wait.Until(() => p.Stdout.Contains("ready"), TimeSpan.FromSeconds(30)), p.Describe());
        long before = VmRssKb(p.Pid);
        Assert.True(Wait.Until(() => p.Stdout.Contains("results"), TimeSpan.FromMinutes(4)), p.Describe());
        long after = VmRssKb(p.Pid);
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        var r = JsonDocument.Parse(p.Stdout.Split('\n').First(l => l.Contains("results"))).RootElement;
        Assert.Equal(calls, r.GetProperty("results").GetProperty("ENOPROTOOPT").GetInt32());
        Assert.Equal(1, r.GetProperty("nodelay").GetInt32());
        Console.WriteLine($"supervisor VmRSS {before} kB before, {after} kB after {calls} bogus setsockopt calls");
        Assert.True(after - before < 12 * 1024, $"VmRSS grew from {before} kB to {after} kB over {calls} bogus setsockopt calls");
    }

    private static long VmRssKb(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return long.Parse(Regex.Match(line, @"\d+").Value);
    }

    [Fact]
    public void AFdClosedAndReopenedDuringAConnectIsNotReplaced()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["regular"], "regular file\n");
        using var p = Launch(Policies.Loopback(dir), CPrograms.Path("fdreuse"), "47340", dir["regular"]);
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        var r = JsonDocument.Parse(p.Stdout).RootElement;
        Assert.True(r.GetProperty("reused").GetBoolean(), p.Stdout); // the file did get the socket's number
        Assert.True(r.GetProperty("file_survived").GetBoolean(), p.Stdout);
        Assert.Contains(r.GetProperty("connect_errno").GetInt32(), (int[])[9, 88]); // EBADF or ENOTSOCK
    }
}
