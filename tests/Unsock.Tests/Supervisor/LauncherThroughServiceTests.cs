using System.Net.Sockets;
using System.Text;
using Unsock.Core.Supervision;
using Unsock.Tests.Integration;
using Unsock.Tests.Supervision;

namespace Unsock.Tests.Supervisor;

/// <summary>
/// The real unsock-launch (NativeAOT, as users run it) in front of the real supervisor process (socket-activated
/// as systemd does): a server is redirected through the service and keeps the launcher's pid, status lists it,
/// a user the policy does not allow is refused with the service's reason, metrics carry the policy's name, and
/// clients that misbehave on the control socket do not stop a launcher being served.
/// </summary>
public sealed class LauncherThroughServiceTests : IntegrationTest
{
    private static ServiceUnderTest StartWith(params (string Name, Func<ServiceUnderTest, string> Json)[] policies) =>
        StartWith([], null, policies);

    private static ServiceUnderTest StartWith(string[] args, IDictionary<string, string?>? env, params (string Name, Func<ServiceUnderTest, string> Json)[] policies)
    {
        var service = new ServiceUnderTest(args: args, env: env);
        foreach (var (name, json) in policies) service.WritePolicy(name, json(service));
        service.Process.Signal(1); // SIGHUP: the files name the service's own directory, known only once it exists
        if (!Wait.Until(() => service.Log.Contains("policies reloaded"), Long) || policies.Any(p => !service.Log.Contains($"policy \"{p.Name}\" loaded")))
        {
            string log = service.Log;
            service.Dispose();
            throw new Xunit.Sdk.XunitException($"the policies did not load:\n{log}");
        }
        return service;
    }

    private static string[] HttpServer(int port) => [Py, "-m", "http.server", port.ToString(), "--bind", "127.0.0.1"];

    private static RunningProgram Launch(ServiceUnderTest service, string policy, string[] command, string? asUser = null,
        IDictionary<string, string?>? env = null, string? workingDirectory = null)
    {
        var args = new List<string>();
        if (asUser is not null) args.AddRange([$"--reuid={asUser}", $"--regid={ServiceUnderTest.PrimaryGroup(asUser)}", "--clear-groups", Integration.Launcher.Path]);
        args.AddRange(["--supervisor", service.Socket, "--policy", policy, "--", .. command]);
        return asUser is null
            ? new RunningProgram(Integration.Launcher.Path, args, env, workingDirectory: workingDirectory)
            : new RunningProgram("setpriv", args, env, workingDirectory: workingDirectory);
    }

    private static string Curl(string socketFile, string path = "/")
    {
        using var curl = new RunningProgram("curl", ["-sS", "--max-time", "20", "--unix-socket", socketFile, "http://localhost" + path]);
        Assert.Equal(0, curl.WaitForExit(Long));
        return curl.Stdout;
    }

    /// <summary>Whether anything listens on TCP <paramref name="port"/> (any address, IPv4 or IPv6), by /proc/net/tcp*.</summary>
    private static bool TcpListening(int port)
    {
        string hex = ":" + port.ToString("X4");
        foreach (string file in new[] { "/proc/net/tcp", "/proc/net/tcp6" })
        {
            if (!File.Exists(file)) continue;
            foreach (string line in File.ReadLines(file).Skip(1))
            {
                var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (f.Length > 3 && f[1].EndsWith(hex, StringComparison.Ordinal) && f[3] == "0A") return true;
            }
        }
        return false;
    }

    private static RunningProgram LauncherStatus(IEnumerable<string> args, IDictionary<string, string?>? env = null, string? asUser = null) =>
        asUser is null
            ? new RunningProgram(Integration.Launcher.Path, ["status", .. args], env)
            : new RunningProgram("setpriv", [$"--reuid={asUser}", $"--regid={ServiceUnderTest.PrimaryGroup(asUser)}", "--clear-groups", Integration.Launcher.Path, "status", .. args], env);

    [Fact]
    public void AnHttpServerRunsInPlaceThroughTheServiceAndStatusShowsIt()
    {
        using var service = StartWith(("web", s => s.LoopbackPolicy("web")));
        using var site = new TempDir();
        File.WriteAllText(site["index.html"], "served through the unsock supervisor\n");
        string socketFile = service.Dir["web/8110.sock"];

        using var server = Launch(service, "web", HttpServer(8110), workingDirectory: site.Path);
        Wait.ForListener(socketFile, server, seconds: 30);
        Assert.Equal("served through the unsock supervisor\n", Curl(socketFile, "/index.html"));
        // The program believes it listens on 127.0.0.1:8110; nothing does.
        Assert.False(TcpListening(8110), "a TCP listener on port 8110");
        using (var tcp = new RunningProgram("curl", ["-sS", "--max-time", "10", "http://127.0.0.1:8110/"]))
            Assert.Equal(7, tcp.WaitForExit(Long)); // curl: could not connect

        // Exec in place: the launcher's process (env(1) exec'd it) is python now, a child of ours, with no wrapper.
        string exe = new FileInfo($"/proc/{server.Pid}/exe").LinkTarget ?? "";
        Assert.Contains("python3", Path.GetFileName(exe));
        Assert.Equal(Environment.ProcessId, ParentOf(server.Pid));
        Assert.Contains("http.server\08110", File.ReadAllText($"/proc/{server.Pid}/cmdline"));

        // unsock-launch status through --supervisor: the table.
        using (var table = LauncherStatus(["--supervisor", service.Socket]))
        {
            Assert.Equal(0, table.WaitForExit(Long));
            var lines = table.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(2, lines.Length);
            Assert.StartsWith("PID", lines[0].TrimStart());
            Assert.Contains("POLICY", lines[0]);
            string row = lines[1];
            Assert.StartsWith($"{server.Pid}  root", row.TrimStart());
            Assert.Contains("  web  ", row);
            Assert.Contains(socketFile, row);
            Assert.EndsWith($"{Py} -m http.server 8110 --bind 127.0.0.1", row);
        }
        // ... and as JSON, the supervisor found through $UNSOCK_SUPERVISOR.
        using (var json = LauncherStatus(["--json"], new Dictionary<string, string?> { [ControlProtocol.SocketVariable] = service.Socket }))
        {
            Assert.Equal(0, json.WaitForExit(Long));
            var target = Assert.Single(StatusTable.FromJson(json.Stdout));
            Assert.Equal(server.Pid, target.Pid);
            Assert.Equal("web", target.Policy);
            Assert.Equal("root", target.User);
            Assert.Equal($"{Py} -m http.server 8110 --bind 127.0.0.1", target.Command);
            Assert.Equal([socketFile], target.SocketFiles);
            Assert.True(target.Redirected >= 1, $"redirected {target.Redirected}");
        }

        // The program's end is its own: SIGTERM kills python (no launcher left to relay or translate it).
        server.Signal(15);
        Assert.Equal(128 + 15, server.WaitForExit(Long));
        Assert.True(Wait.Until(() => service.Status().Count == 0 && !File.Exists(socketFile), Long), service.Log);
        using (var none = LauncherStatus(["--supervisor", service.Socket]))
        {
            Assert.Equal(0, none.WaitForExit(Long));
            Assert.Equal("no targets attached\n", none.Stdout);
        }
    }

    private static int ParentOf(int pid)
    {
        string stat = File.ReadAllText($"/proc/{pid}/stat");
        // pid (comm) state ppid ...: comm may hold spaces and parentheses, so count from the last ')'.
        return int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1]);
    }

    [Fact]
    public void StatusWithoutASupervisorIsAnErrorNamingWhereItLooked()
    {
        using var dir = new TempDir();
        using (var p = LauncherStatus(["--supervisor", dir["none.sock"]]))
        {
            Assert.Equal(125, p.WaitForExit(Long));
            Assert.Equal("", p.Stdout);
            Assert.Contains($"unsock-launch: status: no supervisor answered (--supervisor): cannot connect to the supervisor at {dir["none.sock"]}", p.Stderr);
        }
        using (var p = LauncherStatus([], new Dictionary<string, string?> { [ControlProtocol.SocketVariable] = dir["none.sock"] }))
        {
            Assert.Equal(125, p.WaitForExit(Long));
            Assert.Contains("no supervisor answered ($UNSOCK_SUPERVISOR)", p.Stderr);
        }
        // Something that accepts and never answers (systemd holding the socket of a service that does not start).
        using var silent = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
        silent.Bind(new UnixDomainSocketEndPoint(dir["silent.sock"]));
        silent.Listen(4);
        using (var p = LauncherStatus(["--supervisor", dir["silent.sock"]]))
        {
            Assert.Equal(125, p.WaitForExit(Long));
            Assert.Contains("did not answer within 15 s", p.Stderr);
        }
        using (var p = LauncherStatus(["--embedded"]))
        {
            Assert.Equal(2, p.WaitForExit(Long));
            Assert.Contains("--embedded has none", p.Stderr);
        }
    }

    [Fact]
    public void AUserThePolicyDoesNotAllowIsRefusedWithTheServicesReasonAndNothingRuns()
    {
        using var service = StartWith(
            ("rootonly", s => s.LoopbackPolicy("r")),
            ("shared", s =>
            {
                Directory.CreateDirectory(s.Dir["n"]);
                File.SetUnixFileMode(s.Dir["n"], (UnixFileMode)0x1FF);
                return s.LoopbackPolicy("n", """ "allowed": { "users": ["nobody"] }, """);
            }));
        using var marks = new TempDir();
        File.SetUnixFileMode(marks.Path, (UnixFileMode)0x1FF); // nobody could write the mark, were it to run
        string mark = marks["ran"];

        using (var refused = Launch(service, "rootonly", ["sh", "-c", $"touch {mark}"], asUser: "nobody"))
        {
            Assert.Equal(125, refused.WaitForExit(Long));
            Assert.Contains($"unsock-launch: the supervisor at {service.Socket} refused: user nobody (uid 65534) may not use policy \"rootonly\"; "
                + $"{service.PolicyDirectory}/rootonly.json allows: root only", refused.Stderr);
        }
        Assert.False(File.Exists(mark), "the command ran although the supervisor refused");
        Assert.Contains("(uid 65534), not_allowed: user nobody (uid 65534) may not use policy \"rootonly\"", service.Log);
        Assert.Empty(service.Status());

        // The policy that lists nobody: served, and the socket file is nobody's own.
        using var allowed = Launch(service, "shared", HttpServer(8111), asUser: "nobody", workingDirectory: "/");
        Wait.ForListener(service.Dir["n/8111.sock"], allowed, seconds: 30);
        Assert.Contains("Directory listing", Curl(service.Dir["n/8111.sock"]));
        Tmds.Linux.stat st;
        unsafe
        {
            var bytes = Encoding.UTF8.GetBytes(service.Dir["n/8111.sock"] + "\0");
            fixed (byte* p = bytes) Assert.Equal(0, Tmds.Linux.LibC.lstat(p, &st));
        }
        Assert.Equal(65534u, (uint)st.st_uid);
        // nobody's own status shows its target, under its policy.
        using var mine = LauncherStatus(["--json", "--supervisor", service.Socket], asUser: "nobody");
        Assert.Equal(0, mine.WaitForExit(Long));
        var t = Assert.Single(StatusTable.FromJson(mine.Stdout));
        Assert.Equal((allowed.Pid, "shared", "nobody"), (t.Pid, t.Policy, t.User));
    }

    [Fact]
    public void MetricsCarryThePolicysNameOrInlineOverOtlp()
    {
        using var receiver = new OtlpReceiver();
        var otel = new Dictionary<string, string?>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.Endpoint,
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
            ["OTEL_METRIC_EXPORT_INTERVAL"] = "200",
        };
        using var service = StartWith([], otel, ("web", s => s.LoopbackPolicy("web")));
        using var inlineDir = new TempDir();
        string inlinePolicy = inlineDir["mine.json"];
        File.WriteAllText(inlinePolicy, service.LoopbackPolicy("inl"));

        const string BindOnce = "import socket; s = socket.socket(); s.bind(('127.0.0.1', {0})); s.listen(); print('bound')";
        using (var named = Launch(service, "web", [Py, "-c", string.Format(BindOnce, 8112)]))
            Assert.True(named.WaitForExit(Long) == 0, named.Describe());
        using (var inline = Launch(service, inlinePolicy, [Py, "-c", string.Format(BindOnce, 8113)]))
            Assert.True(inline.WaitForExit(Long) == 0, inline.Describe());
        // status tells where the inline one came from; the metrics only that it was inline (bounded attributes).
        Assert.Contains($"registered with policy inline: {inlinePolicy}", service.Log);

        static bool BindRedirected(OtlpPoint p, string policy) =>
            p.Attributes.GetValueOrDefault("unsock.policy") == policy && p.Attributes.GetValueOrDefault("unsock.call") == "bind"
            && p.Attributes.GetValueOrDefault("unsock.outcome") == "redirected";
        Assert.True(Wait.Until(() => receiver.Metrics.Where(m => m.Name == "unsock.notifications").LastOrDefault() is { } last
            && last.Points.Any(p => BindRedirected(p, "web")) && last.Points.Any(p => BindRedirected(p, "inline")), Long),
            $"{receiver.Requests} OTLP requests; problems: {string.Join("; ", receiver.Problems)}\n{service.Log}");
        var notifications = receiver.Metrics.Where(m => m.Name == "unsock.notifications").Last();
        Assert.Equal("unsock-supervisor", notifications.Resource["service.name"]);
        Assert.Equal(1, notifications.Points.Where(p => BindRedirected(p, "web")).Sum(p => p.Value));
        Assert.Equal(1, notifications.Points.Where(p => BindRedirected(p, "inline")).Sum(p => p.Value));
        Assert.Equal(["inline", "web"], notifications.Points.Select(p => p.Attributes["unsock.policy"]).Distinct().Order().ToArray());
        Assert.Empty(receiver.Problems);
    }

    [Fact]
    public void ClientsThatSendGarbageOrNothingDoNotStopALauncherBeingServed()
    {
        // One worker thread, and connections allowed to stay five minutes: a design where a silent or broken client
        // occupies the worker would keep the launcher below waiting past its own 15 s reply timeout.
        using var service = StartWith(["--Unsock:ControlThreads=1", "--Unsock:ConnectionTimeout=00:05:00"], null, ("web", s => s.LoopbackPolicy("web")));
        var held = new List<Socket>();
        using var stop = new CancellationTokenSource();
        Thread? garbage = null;
        int sent = 0, refused = 0;
        Exception? garbageFault = null;
        try
        {
            Socket Connect()
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified) { ReceiveTimeout = 30000, SendTimeout = 30000 };
                s.Connect(new UnixDomainSocketEndPoint(service.Socket));
                return s;
            }
            // 200 connections that never send anything, held open throughout.
            for (int i = 0; i < 200; i++) held.Add(Connect());
            // One that registers and then neither attaches nor reads the answer.
            var registered = Connect();
            registered.Send("""{"version":1,"kind":"register","policy":"web"}"""u8);
            held.Add(registered);
            // And a client that keeps sending garbage on new connections the whole time, reading each refusal.
            garbage = new Thread(() =>
            {
                var random = new Random(7);
                var reply = new byte[65536];
                try
                {
                    while (!stop.IsCancellationRequested)
                    {
                        Once();
                        Thread.Sleep(10); // a steady stream, not a CPU-bound flood of the shared test machine
                    }
                }
                catch (Exception e)
                {
                    garbageFault = e; // a failure of the attacker's own (an unanswered record times out here)
                }
                void Once()
                {
                    using var s = Connect();
                    var junk = new byte[random.Next(1, 4096)];
                    random.NextBytes(junk);
                    junk[0] = (byte)'{'; // JSON-looking, then nonsense
                    s.Send(junk);
                    sent++;
                    int n = s.Receive(reply);
                    if (n > 0 && Encoding.UTF8.GetString(reply, 0, n).Contains("\"ok\":false")) refused++;
                }
            }) { IsBackground = true };
            garbage.Start();
            Assert.True(Wait.Until(() => service.Log.Contains("malformed:"), Long), service.Log);

            using var site = new TempDir();
            File.WriteAllText(site["index.html"], "still served\n");
            using var server = Launch(service, "web", HttpServer(8114), workingDirectory: site.Path);
            Wait.ForListener(service.Dir["web/8114.sock"], server, seconds: 30);
            Assert.Equal("still served\n", Curl(service.Dir["web/8114.sock"], "/index.html"));
            using (var status = LauncherStatus(["--json", "--supervisor", service.Socket]))
            {
                Assert.Equal(0, status.WaitForExit(Long));
                Assert.Equal(server.Pid, Assert.Single(StatusTable.FromJson(status.Stdout)).Pid);
            }
            stop.Cancel();
            Assert.True(garbage.Join(Long), "the garbage client did not stop");
            Assert.Null(garbageFault);
            Assert.True(sent > 0 && refused == sent, $"garbage sent {sent}, refused {refused}");
            // The silent connections were there all along: one of them is served now that it asks.
            var first = held[0];
            first.Send("""{"version":1,"kind":"status"}"""u8);
            var buffer = new byte[65536];
            int got = first.Receive(buffer);
            Assert.Contains("\"ok\":true", Encoding.UTF8.GetString(buffer, 0, got));
            Assert.False(service.Process.HasExited, service.Log);
        }
        finally
        {
            stop.Cancel();
            garbage?.Join(TimeSpan.FromSeconds(30));
            foreach (var s in held) s.Dispose();
        }
    }
}
