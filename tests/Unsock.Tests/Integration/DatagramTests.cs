using System.Net;
using System.Net.Sockets;
using System.Text.Json;

namespace Unsock.Tests.Integration;

/// <summary>
/// UDP programs redirected to AF_UNIX datagram sockets (issue 10): request/response, one-way senders, native
/// AF_UNIX peers on either side, receive fidelity against real UDP, and the attacks next to them.
/// </summary>
public class DatagramTests : IntegrationTest
{
    private static string DgramProbe => Launcher.Program("dgramprobe.py");

    // Ports these tests use; nothing binds them for real (both sides are redirected), except where a test says so.
    private static int NextPort(int offset) => 20000 + (Environment.ProcessId % 2000) * 10 + offset;

    /// <summary>UDP on loopback (IPv4 and ::1) to DIR/socks/&lt;port&gt;.sock; TCP untouched.</summary>
    private static string UdpLoopback(TempDir dir) => Policies.Write(dir, $$"""
        { "rules": [
            { "protocol": "udp", "address": "127.0.0.0/8", "directory": "{{dir.Path}}/socks" },
            { "protocol": "udp", "address": "::1", "directory": "{{dir.Path}}/socks" }
        ] }
        """);

    private static RunningProgram Launch(string policy, params string[] command) => new(Launcher.Path, ["--policy", policy, "--", .. command]);

    private static List<JsonElement> JsonLines(string stdout) =>
        stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith('{')).Select(l => JsonDocument.Parse(l).RootElement).ToList();

    private static JsonElement Line(string stdout, string key) =>
        JsonLines(stdout).FirstOrDefault(e => e.TryGetProperty(key, out _)) is { ValueKind: JsonValueKind.Object } e
            ? e : throw new Xunit.Sdk.XunitException($"no line with \"{key}\" in:\n{stdout}");

    /// <summary>The type column of /proc/net/unix for the socket bound at <paramref name="path"/> (2: SOCK_DGRAM), or null.</summary>
    private static int? UnixSocketType(string path)
    {
        foreach (var line in File.ReadLines("/proc/net/unix"))
        {
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length >= 8 && f[7] == path) return Convert.ToInt32(f[4], 16);
        }
        return null;
    }

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("::1")]
    public void DnsStyleRequestResponseWithBothSidesRedirected(string host)
    {
        using var dir = new TempDir();
        int port = NextPort(host == "::1" ? 1 : 0);
        string file = dir[$"socks/{port}.sock"];
        string shown = $"{host}:{port}";
        using var run = Launch(UdpLoopback(dir), "sh", "-c",
            $"{Py} {DgramProbe} dns-server {host} {port} 3 & " +
            $"while [ ! -S {file} ]; do sleep 0.05; done; stat -c 'file %F' {file}; grep -F '{file}' /proc/net/unix | sed 's/^/unix /'; " +
            $"for m in unconnected connected msg; do {Py} {DgramProbe} dns-client {host} {port} $m; done; wait");
        Assert.True(0 == run.WaitForExit(Long), run.Describe());
        string stdout = run.Stdout;
        Console.WriteLine(stdout);

        // The file is a socket file, and the socket behind it a datagram socket (type 0002).
        Assert.Contains("file socket", stdout);
        var unixLine = stdout.Split('\n').Single(l => l.StartsWith("unix ")).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("0002", unixLine[5]);

        var clients = JsonLines(stdout).Where(e => e.TryGetProperty("reply", out _)).ToList();
        Assert.Equal(3, clients.Count);
        string Norm(string a) => a.Replace("::ffff:", "");
        foreach (var (client, mode) in clients.Zip((string[])["q-unconnected", "q-connected", "q-msg"]))
        {
            Assert.Equal("answer:" + mode, client.GetProperty("reply").GetString());
            // The answer comes from the address the client asked, which UDP clients check.
            Assert.Equal(shown, client.GetProperty("source").GetString());
            // The client's own address is the same before and after the answer, and is what the server saw.
            Assert.Equal(client.GetProperty("sockname_after_send").GetString(), client.GetProperty("sockname").GetString());
            // SO_DOMAIN, SO_TYPE, SO_PROTOCOL: the UDP socket the program made (not AF_UNIX, not TCP).
            Assert.Equal([host == "::1" ? 10 : 2, 2, 17], client.GetProperty("sockopts").EnumerateArray().Select(v => v.GetInt32()));
        }
        Assert.Equal(shown, clients[1].GetProperty("peername").GetString());
        var server = Line(stdout, "senders");
        Assert.Equal(shown, server.GetProperty("sockname").GetString());
        var senders = server.GetProperty("senders").EnumerateArray().Select(s => s.GetString()!).ToList();
        Assert.Equal(clients.Select(c => c.GetProperty("sockname").GetString()!), senders);
        // Three clients, three distinct ports on loopback.
        Assert.Equal(3, senders.Distinct().Count());
        Assert.All(senders, s => Assert.StartsWith(host == "::1" ? "::1:" : "127.0.0.1:", Norm(s)));
        Assert.False(File.Exists(file), "the socket file is removed when the server is gone");
    }

    [Fact]
    public void SyslogStyleOneWayDatagramsFromPythonAndLogger()
    {
        using var dir = new TempDir();
        int port = NextPort(2);
        string file = dir[$"socks/{port}.sock"];
        const int PythonLines = 40;
        using var run = Launch(UdpLoopback(dir), "sh", "-c",
            $"{Py} {DgramProbe} sink 127.0.0.1 {port} {PythonLines + 2} & " +
            $"while [ ! -S {file} ]; do sleep 0.05; done; " +
            $"{Py} {DgramProbe} syslog 127.0.0.1 {port} {PythonLines} && " +
            $"logger -n 127.0.0.1 -P {port} -d -t unsocktest 'from logger one' && logger -n 127.0.0.1 -P {port} -d -t unsocktest 'from logger two'; wait");
        Assert.True(0 == run.WaitForExit(Long), run.Describe());
        var sink = Line(run.Stdout, "messages");
        var messages = sink.GetProperty("messages").EnumerateArray().Select(m => m.GetString()!).ToList();
        Console.WriteLine($"syslog: {messages.Count} messages from {sink.GetProperty("senders")}");
        Assert.Equal(PythonLines + 2, messages.Count);
        // Every line once, in order: one-way datagrams neither lost nor duplicated.
        Assert.Equal(Enumerable.Range(0, PythonLines - 1).Select(i => $"syslog line {i}"),
            messages.Where(m => m.Contains("syslog line")).Select(m => m[m.IndexOf("syslog line")..].TrimEnd('\0')));
        Assert.Contains(messages, m => m.Contains("unsocktest") && m.Contains("from logger one"));
        Assert.Contains(messages, m => m.Contains("from logger two"));
        // Three sending sockets (python's and two loggers'), each shown as a loopback address.
        Assert.All(sink.GetProperty("senders").EnumerateArray(), s => Assert.StartsWith("127.0.0.1:", s.GetString()));
    }

    [Fact]
    public void StatsdStyleSenderIsSeenAsItsOwnAddress()
    {
        using var dir = new TempDir();
        int port = NextPort(3);
        string file = dir[$"socks/{port}.sock"];
        const int Count = 300;
        using var run = Launch(UdpLoopback(dir), "sh", "-c",
            $"{Py} {DgramProbe} sink 127.0.0.1 {port} {Count} & while [ ! -S {file} ]; do sleep 0.05; done; " +
            $"{Py} {DgramProbe} statsd 127.0.0.1 {port} {Count}; wait");
        Assert.True(0 == run.WaitForExit(Long), run.Describe());
        var sink = Line(run.Stdout, "messages");
        var sender = Line(run.Stdout, "sent");
        var messages = sink.GetProperty("messages").EnumerateArray().Select(m => m.GetString()!).ToList();
        Assert.Equal(Count, messages.Count);
        Assert.Equal(Count - 1, messages.Count(m => m.StartsWith("requests.")));
        Assert.Equal(Count - 1, messages.Where(m => m.StartsWith("requests.")).Distinct().Count());
        Assert.Equal([sender.GetProperty("sockname").GetString()], sink.GetProperty("senders").EnumerateArray().Select(s => s.GetString()));
    }

    [Fact]
    public void NativeUnixServerAnswersARedirectedUdpClient()
    {
        using var dir = new TempDir();
        int port = NextPort(4);
        Directory.CreateDirectory(dir["socks"]);
        string file = dir[$"socks/{port}.sock"];
        using var server = new RunningProgram(Py, [DgramProbe, "unix-server", file, "1"]);
        Assert.True(Wait.Until(() => File.Exists(file) || server.HasExited, TimeSpan.FromSeconds(20)), server.Describe());
        using var client = Launch(UdpLoopback(dir), Py, DgramProbe, "dns-client", "127.0.0.1", port.ToString());
        Assert.True(0 == client.WaitForExit(Long), client.Describe());
        Assert.True(0 == server.WaitForExit(Long), server.Describe());
        var answer = Line(client.Stdout, "reply");
        Assert.Equal("unix-answer:q-unconnected", answer.GetProperty("reply").GetString());
        Assert.Equal($"127.0.0.1:{port}", answer.GetProperty("source").GetString());
        // The native server saw the client's autobound (abstract) name, and its answer reached it.
        Assert.StartsWith("b'\\x00", Line(server.Stdout, "senders").GetProperty("senders")[0].GetString());
    }

    [Fact]
    public void RedirectedUdpServerAnswersANativeUnixClient()
    {
        using var dir = new TempDir();
        int port = NextPort(5);
        string file = dir[$"socks/{port}.sock"];
        string own = dir["native-client.sock"];
        using var server = Launch(UdpLoopback(dir), Py, DgramProbe, "dns-server", "127.0.0.1", port.ToString(), "2");
        Assert.True(Wait.Until(() => File.Exists(file) || server.HasExited, TimeSpan.FromSeconds(20)), server.Describe());
        using (var client = new RunningProgram(Py, [DgramProbe, "unix-client", file, own]))
        {
            Assert.True(0 == client.WaitForExit(Long), client.Describe());
            var answer = Line(client.Stdout, "reply");
            Assert.Equal("answer:from-unix", answer.GetProperty("reply").GetString());
            Assert.Equal(file, answer.GetProperty("source").GetString());
        }
        // socat as a second native client, bound to a name of its own.
        string socatOwn = dir["socat-client.sock"];
        using (var socat = new RunningProgram("socat", ["-t", "5", "-", $"UNIX-SENDTO:{file},bind={socatOwn}"], stdin: "from-socat"))
        {
            Assert.True(0 == socat.WaitForExit(Long), socat.Describe());
            Assert.Equal("answer:from-socat", socat.Stdout.Trim());
        }
        Assert.True(0 == server.WaitForExit(Long), server.Describe());
        var senders = Line(server.Stdout, "senders").GetProperty("senders").EnumerateArray().Select(s => s.GetString()!).ToList();
        // Native peers are shown as fakeAddress with a port of their own each; the answers to those reached them.
        Assert.Equal(2, senders.Distinct().Count());
        Assert.All(senders, s => Assert.StartsWith("127.175.0.0:", s));
    }

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("::1")]
    public void ReceiveFlagsAndModesBehaveAsOverRealUdp(string host)
    {
        using var dir = new TempDir();
        int port = NextPort(host == "::1" ? 7 : 6);
        using var native = new RunningProgram(Py, [DgramProbe, "fidelity", host, port.ToString()]);
        Assert.True(0 == native.WaitForExit(Long), native.Describe());
        using var redirected = Launch(UdpLoopback(dir), Py, DgramProbe, "fidelity", host, port.ToString());
        Assert.True(0 == redirected.WaitForExit(Long), redirected.Describe());
        Console.WriteLine($"native:     {native.Stdout.Trim()}\nredirected: {redirected.Stdout.Trim()}");
        // MSG_PEEK, MSG_TRUNC (recvfrom and recvmsg), O_NONBLOCK, SO_RCVTIMEO, the program's signal, order, empty
        // datagrams, and a read-only address buffer (EFAULT, the datagram consumed): as the kernel does them for UDP.
        Assert.Contains("\"efault\": \"EFAULT\"", native.Stdout);
        Assert.Equal(native.Stdout.Trim(), redirected.Stdout.Trim());
        Assert.True(Directory.Exists(dir["socks"]), "the redirected run went through socket files");
    }

    [Fact]
    public void BlockedReceiversDoNotHoldNotificationThreads()
    {
        using var dir = new TempDir();
        int port = NextPort(8), base_ = 40000 + (Environment.ProcessId % 200) * 100;
        string file = dir[$"socks/{port}.sock"];
        // 64 receives waiting at once (more than the engine's notification threads), then a request/response.
        using var run = Launch(UdpLoopback(dir), "sh", "-c",
            $"{Py} {DgramProbe} waiters 127.0.0.1 {base_} 64 15 & {Py} {DgramProbe} dns-server 127.0.0.1 {port} 1 & " +
            $"while [ ! -S {file} ]; do sleep 0.05; done; sleep 1; {Py} {DgramProbe} dns-client 127.0.0.1 {port}; wait");
        Assert.True(0 == run.WaitForExit(Long), run.Describe());
        Assert.Equal(64, Line(run.Stdout, "waiting").GetProperty("waiting").GetInt32());
        Assert.Equal("answer:q-unconnected", Line(run.Stdout, "reply").GetProperty("reply").GetString());
    }

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("::1")]
    public void SendmmsgAndRecvmmsgCarryNamesBothWaysAndStopAtARejectedMessage(string host)
    {
        using var dir = new TempDir();
        int port = NextPort(host == "::1" ? 18 : 17), rejected = NextPort(19);
        string program = CPrograms.Path("dgrammmsg");
        using var native = new RunningProgram(program, [host, port.ToString()]);
        Assert.True(0 == native.WaitForExit(Long), native.Describe());
        string policy = Policies.Write(dir, $$"""
            { "rules": [
                { "protocol": "udp", "port": {{rejected}}, "reject": "EACCES" },
                { "protocol": "udp", "address": "127.0.0.0/8", "directory": "{{dir.Path}}/socks" },
                { "protocol": "udp", "address": "::1", "directory": "{{dir.Path}}/socks" }
            ] }
            """);
        using var redirected = Launch(policy, program, host, port.ToString(), rejected.ToString());
        Assert.True(0 == redirected.WaitForExit(Long), redirected.Describe());
        Console.WriteLine($"native:     {native.Stdout.Trim()}\nredirected: {redirected.Stdout.Trim()}");
        string[] lines = redirected.Stdout.Trim().Split('\n');
        // Three datagrams in one sendmmsg, taken in one recvmmsg with the client's name on each, answered in one
        // sendmmsg to those names: as over UDP, line for line.
        Assert.Equal("sent 3 received 3 data m0,m1,m2 senders_are_client 3 namelen_ok 3 answered 3 replies 3 data r0,r1,r2 replies_from_server 3",
            native.Stdout.Trim());
        Assert.Equal(native.Stdout.Trim(), lines[0]);
        // A batch whose second message a rule rejects: the first went (and only it arrived), the count says 1; a
        // batch that starts with it fails with the rule's errno.
        Assert.Equal("partial sent 1 errno 0 server_got 1 rejected_first -1 errno EACCES", lines[1]);
        Assert.True(Directory.Exists(dir["socks"]), "the redirected run went through socket files");
    }

    [Theory]
    [InlineData("sendto", true)]
    [InlineData("sendmsg", true)]
    [InlineData("name", true)]
    [InlineData("sendto", false)]
    [InlineData("sendmsg", false)]
    [InlineData("name", false)]
    public void FlippingTheDestinationNeverGetsPastARejectRule(string mode, bool withRedirectRule)
    {
        using var dir = new TempDir();
        using var allowed = new UdpCounter();
        using var victim = new UdpCounter();
        // A reject rule for the victim's port, alone or with a udp redirect rule that covers neither real port:
        // either way the sends are trapped, and the datagrams go out on a plain UDP socket.
        string redirect = withRedirectRule ? $$""", { "protocol": "udp", "address": "127.0.0.2", "directory": "{{dir.Path}}/socks" }""" : "";
        string policy = Policies.Write(dir, $$"""
            { "rules": [
                { "protocol": "udp", "address": "127.0.0.1", "port": {{victim.Port}}, "reject": "EACCES" }{{redirect}}
            ] }
            """);
        const int Tries = 20000;
        using var attacker = Launch(policy, CPrograms.Path("dgramflip"), allowed.Port.ToString(), victim.Port.ToString(), Tries.ToString(), mode);
        Assert.True(0 == attacker.WaitForExit(TimeSpan.FromMinutes(5)), attacker.Describe());
        // Loopback UDP queues a datagram within sendto: once a marker sent now has been counted, so has all before it.
        allowed.Drain();
        victim.Drain();
        Console.WriteLine($"dgramflip {mode} (redirect rule: {withRedirectRule}): {attacker.Stdout.Trim()}, allowed port received {allowed.Received}, rejected port received {victim.Received}");
        Assert.Equal(0, victim.Received);
        Assert.True(allowed.Received > 0, $"nothing reached the allowed port: {attacker.Stdout}");
        Assert.Contains($"tries {Tries}", attacker.Stdout);
    }

    /// <summary>
    /// A policy that rejects UDP destinations but redirects none: unconnected sendto and sendmsg from a plain UDP
    /// socket are decided as connect is (the rule's errno, nothing sent), and what the rules allow arrives.
    /// </summary>
    [Theory]
    [InlineData("everything")]
    [InlineData("udp port")]
    public void RejectRulesStopUnconnectedSendsWithoutAnyRedirectRule(string kind)
    {
        using var dir = new TempDir();
        using var victim = new UdpCounter();
        using var allowed = new UdpCounter();
        string policy = Policies.Write(dir, kind == "everything"
            ? """{ "rules": [ { "address": "0.0.0.0/0", "reject": "EACCES" } ] }"""
            : $$"""{ "rules": [ { "protocol": "udp", "address": "127.0.0.0/8", "port": {{victim.Port}}, "reject": "EPERM" } ] }""");
        string errno = kind == "everything" ? "EACCES" : "EPERM";
        const int Count = 100;
        using var run = Launch(policy, Py, DgramProbe, "sends", "127.0.0.1", Count.ToString(), victim.Port.ToString(), allowed.Port.ToString());
        Assert.True(0 == run.WaitForExit(Long), run.Describe());
        allowed.Drain();
        victim.Drain();
        var ends = Line(run.Stdout, "sends").GetProperty("sends");
        Console.WriteLine($"reject {kind}: {ends}, rejected port received {victim.Received}, allowed port received {allowed.Received}");
        Assert.Equal(0, victim.Received);
        foreach (string call in (string[])["sendto", "sendmsg"])
        {
            Assert.Equal($$"""{"{{errno}}":{{Count}}}""", ends.GetProperty(victim.Port.ToString()).GetProperty(call).GetRawText().Replace(" ", ""));
            Assert.Equal(kind == "everything" ? $$"""{"EACCES":{{Count}}}""" : $$"""{"OK":{{Count}}}""",
                ends.GetProperty(allowed.Port.ToString()).GetProperty(call).GetRawText().Replace(" ", ""));
        }
        Assert.Equal(kind == "everything" ? 0 : 2 * Count, allowed.Received);
    }

    [Fact]
    public void AFloodAtAFullReceiverBlocksNeitherOtherTargetsNorTheSupervisor()
    {
        using var dir = new TempDir();
        int port = NextPort(9), other = NextPort(10);
        string file = dir[$"socks/{port}.sock"], otherFile = dir[$"socks/{other}.sock"], stop = dir["stop"];
        // A receiver that never reads; eight blocking senders (SO_SNDTIMEO 200 ms) and a non-blocking one at it until
        // the test says stop. Meanwhile a request/response between two other programs of the same launcher.
        using var run = Launch(UdpLoopback(dir), "sh", "-c",
            $"{Py} {DgramProbe} blocked 127.0.0.1 {port} {stop} & while [ ! -S {file} ]; do sleep 0.05; done; " +
            $"{Py} {DgramProbe} flood 127.0.0.1 {port} {stop} & " +
            $"{Py} {DgramProbe} dns-server 127.0.0.1 {other} 1 & while [ ! -S {otherFile} ]; do sleep 0.05; done; " +
            $"{Py} {DgramProbe} dns-client 127.0.0.1 {other}; wait");
        try
        {
            // The queue is full before the exchange is over, or the exchange proves nothing; the flood runs until told.
            Assert.True(Wait.Until(() => run.Stdout.Contains("\"flooding\"") || run.HasExited, TimeSpan.FromSeconds(60)), run.Describe());
            Assert.True(Wait.Until(() => run.Stdout.Contains("\"reply\"") || run.HasExited, TimeSpan.FromSeconds(60)), run.Describe());
            Assert.False(run.HasExited, run.Describe());
            Assert.Equal("answer:q-unconnected", Line(run.Stdout, "reply").GetProperty("reply").GetString());
            Assert.DoesNotContain("\"blocking\"", run.Stdout); // the flood was still on when the answer came
            // Threads start as calls overlap, up to the engine's fixed counts: measure from the flood's steady state
            // (no new thread for a second; a count that keeps growing never gets there and fails below).
            var early = Usage(run.Pid);
            for (long until = Environment.TickCount64 + 15000; Environment.TickCount64 < until;)
            {
                Thread.Sleep(1000);
                var now = Usage(run.Pid);
                if (now.Threads == early.Threads) break;
                early = now;
            }
            Thread.Sleep(4000);
            var late = Usage(run.Pid);
            Console.WriteLine($"supervisor early {early}, late {late}");
            Assert.Equal(early.Threads, late.Threads);
            Assert.True(late.RssKb - early.RssKb < 8 * 1024, $"supervisor memory grew from {early.RssKb} kB to {late.RssKb} kB");
        }
        finally { File.WriteAllText(stop, ""); }
        Assert.True(0 == run.WaitForExit(Long), run.Describe());
        var flood = Line(run.Stdout, "blocking");
        Console.WriteLine($"flood: {flood}");
        var blocking = flood.GetProperty("blocking");
        var nonblocking = flood.GetProperty("nonblocking");
        // Non-blocking sends to the full queue: EAGAIN at once. Blocking ones: parked until SO_SNDTIMEO, then EAGAIN.
        Assert.True(nonblocking.GetProperty("errors").GetProperty("EAGAIN").GetInt32() > 0, flood.ToString());
        Assert.True(blocking.GetProperty("errors").GetProperty("EAGAIN").GetInt32() > 0, flood.ToString());
        Assert.True(flood.GetProperty("shortest_blocking_timeout").GetDouble() >= 0.15,
            $"a blocking send gave up before its SO_SNDTIMEO of 200 ms: {flood}");
        int sent = blocking.GetProperty("sent").GetInt32() + nonblocking.GetProperty("sent").GetInt32();
        Assert.True(sent <= 11, "a receiver that never reads queues at most net.unix.max_dgram_qlen + 1 datagrams");
    }

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("::1")]
    public void SocatAndNetcatTalkOverTheSocketFileWithNoUdpPortOpen(string host)
    {
        using var dir = new TempDir();
        int port = NextPort(host == "::1" ? 12 : 11);
        string file = dir[$"socks/{port}.sock"];
        string bracketed = host == "::1" ? "[::1]" : host;
        string pf = host == "::1" ? "6" : "4";
        // A real UDP socket of this test, which the tables read below must list (the launcher shares our network namespace).
        using var real = new UdpCounter();
        // A UDP upper-casing server in socat; socat (unconnected and connected), nc -u and python (sendmsg/recvmsg) as
        // clients. While it runs, the UDP tables of the network namespace are read.
        using var run = Launch(UdpLoopback(dir), "sh", "-c",
            $"socat UDP{pf}-RECVFROM:{port},bind={bracketed},fork EXEC:'tr a-z A-Z' & " +
            $"while [ ! -S {file} ]; do sleep 0.05; done; grep -F '{file}' /proc/net/unix | sed 's/^/unix /'; " +
            "sed 's/^/udp4 /' /proc/net/udp; sed 's/^/udp6 /' /proc/net/udp6; " +
            $"echo from-socat | socat -t 5 - UDP{pf}-SENDTO:{bracketed}:{port}; " +
            $"echo from-socat-connected | socat -t 5 - UDP{pf}:{bracketed}:{port}; " +
            $"echo from-nc | nc -{pf} -u -w 2 {host} {port}; " +
            $"{Py} {DgramProbe} dns-client {host} {port} msg; kill $!");
        run.WaitForExit(Long); // the shell's status is the killed server's
        string stdout = run.Stdout;
        Console.WriteLine(stdout);
        Assert.Equal("0002", stdout.Split('\n').Single(l => l.StartsWith("unix ")).Split(' ', StringSplitOptions.RemoveEmptyEntries)[5]);
        Assert.Contains("FROM-SOCAT\n", stdout);
        Assert.Contains("FROM-SOCAT-CONNECTED\n", stdout);
        Assert.Contains("FROM-NC\n", stdout);
        var msg = Line(stdout, "reply");
        Assert.Equal("Q-MSG", msg.GetProperty("reply").GetString());
        Assert.Equal($"{host}:{port}", msg.GetProperty("source").GetString());
        // No UDP socket has the port: the tables list local ports (hex) in their second column.
        var udpPorts = UdpTablePorts(stdout);
        Assert.Contains(real.Port, udpPorts);
        Assert.DoesNotContain(port, udpPorts);
    }

    /// <summary>The local ports in the /proc/net/udp and udp6 lines a script printed with a "udp4 "/"udp6 " prefix.</summary>
    private static List<int> UdpTablePorts(string stdout) =>
        stdout.Split('\n').Where(l => l.StartsWith("udp4 ") || l.StartsWith("udp6 "))
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(f => f.Length > 2 && f[1].EndsWith(':')) // not the header
            .Select(f => Convert.ToInt32(f[2][(f[2].LastIndexOf(':') + 1)..], 16)).ToList();

    [Fact]
    public void FifoRegularFileAndLiveSocketAtTheSocketPathAreLeftAlone()
    {
        using var dir = new TempDir();
        int fifo = NextPort(13), regular = NextPort(14), live = NextPort(15), stale = NextPort(16);
        string socks = dir["socks"];
        Directory.CreateDirectory(socks);
        using (var mk = new RunningProgram("mkfifo", [$"{socks}/{fifo}.sock"]))
            Assert.True(0 == mk.WaitForExit(Long), mk.Describe());
        File.WriteAllText($"{socks}/{regular}.sock", "precious");
        // A stale datagram socket file (its socket closed) and a live native AF_UNIX datagram server.
        using (var st = new RunningProgram(Py, ["-c", $"import socket; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).bind('{socks}/{stale}.sock')"]))
            Assert.True(0 == st.WaitForExit(Long), st.Describe());
        using var server = new RunningProgram(Py, [DgramProbe, "unix-server", $"{socks}/{live}.sock", "1"]);
        Assert.True(Wait.Until(() => File.Exists($"{socks}/{live}.sock") || server.HasExited, TimeSpan.FromSeconds(20)), server.Describe());

        // Each program's bind and send are answered at once (a FIFO opened would hang the call), as for a non-socket.
        string script = string.Join("; ", new[] { fifo, regular }.SelectMany(p => new[] { $"{Py} {DgramProbe} once bind 127.0.0.1 {p}", $"{Py} {DgramProbe} once send 127.0.0.1 {p}" }))
            + $"; {Py} {DgramProbe} once bind 127.0.0.1 {live}; {Py} {DgramProbe} dns-client 127.0.0.1 {live}; {Py} {DgramProbe} once bind 127.0.0.1 {stale}";
        using var run = Launch(UdpLoopback(dir), "sh", "-c", script);
        Assert.True(0 == run.WaitForExit(Long), run.Describe());
        Assert.True(0 == server.WaitForExit(Long), server.Describe());
        var results = JsonLines(run.Stdout).Where(e => e.TryGetProperty("action", out _))
            .Select(e => $"{e.GetProperty("action").GetString()} {e.GetProperty("port").GetInt32()} {e.GetProperty("result").GetString()}").ToList();
        Assert.Equal([
            $"bind {fifo} EADDRINUSE", $"send {fifo} ECONNREFUSED",
            $"bind {regular} EADDRINUSE", $"send {regular} ECONNREFUSED",
            $"bind {live} EADDRINUSE",
            $"bind {stale} OK",
        ], results);
        // The live server was not replaced: it answered the redirected client.
        Assert.Equal("unix-answer:q-unconnected", Line(run.Stdout, "reply").GetProperty("reply").GetString());
        Assert.Equal(0x1000, FileType($"{socks}/{fifo}.sock")); // S_IFIFO: still the FIFO
        Assert.Equal(0x8000, FileType($"{socks}/{regular}.sock")); // S_IFREG
        Assert.Equal(-1, FileType($"{socks}/{stale}.sock")); // replaced by the bind, and removed with its socket
        Assert.Equal("precious", File.ReadAllText($"{socks}/{regular}.sock"));
    }

    /// <summary>The S_IFMT bits of what is at <paramref name="path"/> (lstat), or -1 when nothing is.</summary>
    private static int FileType(string path)
    {
        var st = new Tmds.Linux.stat();
        unsafe
        {
            var bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
            fixed (byte* p = bytes) return Tmds.Linux.LibC.lstat(p, &st) == 0 ? (int)(st.st_mode & 0xF000) : -1;
        }
    }

    private static (int Threads, long RssKb) Usage(int launcherPid)
    {
        // The env(1) wrapper execs the launcher: same pid.
        int threads = 0;
        long rss = 0;
        foreach (var line in File.ReadLines($"/proc/{launcherPid}/status"))
        {
            if (line.StartsWith("Threads:")) threads = int.Parse(line[8..].Trim());
            if (line.StartsWith("VmRSS:")) rss = long.Parse(line[6..].Trim().Split(' ')[0]);
        }
        return (threads, rss);
    }
}

/// <summary>A real UDP socket on 127.0.0.1 (not under the launcher) that counts the datagrams reaching it.</summary>
public sealed class UdpCounter : IDisposable
{
    private readonly Socket _socket = new(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
    private int _received;

    public UdpCounter()
    {
        _socket.ReceiveBufferSize = 4 << 20;
        _socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        new Thread(Loop) { IsBackground = true }.Start();
    }

    public int Port => ((IPEndPoint)_socket.LocalEndPoint!).Port;

    public int Received => Volatile.Read(ref _received);

    private volatile bool _markerSeen;
    private static readonly byte[] Marker = "unsock-test-drain-marker"u8.ToArray();

    /// <summary>Sends a marker to the socket and waits until it is read: everything queued before it has been counted.</summary>
    public void Drain()
    {
        _markerSeen = false;
        using var sender = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        sender.SendTo(Marker, new IPEndPoint(IPAddress.Loopback, Port));
        if (!Wait.Until(() => _markerSeen, TimeSpan.FromSeconds(30))) throw new TimeoutException("the drain marker was never read");
    }

    private void Loop()
    {
        var buf = new byte[2048];
        while (true)
        {
            int n;
            try { n = _socket.Receive(buf); }
            catch (Exception e) when (e is SocketException or ObjectDisposedException) { return; }
            if (buf.AsSpan(0, n).SequenceEqual(Marker)) { _markerSeen = true; continue; }
            Interlocked.Increment(ref _received);
        }
    }

    public void Dispose() => _socket.Dispose();
}
