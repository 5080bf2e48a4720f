using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Unsock.Core.Supervision;
using Unsock.Tests.Integration;

namespace Unsock.Tests.Supervisor;

/// <summary>The supervisor service as a process: socket activation, READY/STOPPING/WATCHDOG, the control protocol and its refusals, reload, stop.</summary>
public sealed class SupervisorServiceTests : IntegrationTest
{
    private static string[] HttpServer(int port) => [Py, "-m", "http.server", port.ToString(), "--bind", "127.0.0.1"];

    private static string Curl(string socketFile)
    {
        using var curl = new RunningProgram("curl", ["-sS", "--max-time", "20", "--unix-socket", socketFile, "http://localhost/"]);
        Assert.Equal(0, curl.WaitForExit(Long));
        return curl.Stdout;
    }

    private static void WaitForTarget(ServiceUnderTest service, int pid, RunningProgram program)
    {
        Assert.True(Wait.Until(() => service.Status().Any(t => t.Pid == pid) || program.HasExited, Long),
            $"pid {pid} never showed up as a target.\n{program.Describe()}\n{service.Log}");
        Assert.False(program.HasExited, program.Describe());
    }

    [Fact]
    public void ServesTwoTargetsWithTheirOwnPoliciesExecutedInPlaceAndShowsThemInStatus()
    {
        using var service = new ServiceUnderTest();
        service.WritePolicy("web", service.LoopbackPolicy("web"));
        service.WritePolicy("other", service.LoopbackPolicy("other"));
        service.Process.Signal(1); // SIGHUP: the files came after the start
        Assert.True(Wait.Until(() => service.Log.Contains("policy \"other\" loaded"), Long), service.Log);
        // READY=1 came once, before anything else, and the socket answered right after it.
        Assert.Equal("READY=1", service.Notify.Messages[0]);

        using var web = service.Launch("web", HttpServer(8000));
        using var other = service.Launch("other", HttpServer(8000));
        Wait.ForListener(service.Dir["web/8000.sock"], web);
        Wait.ForListener(service.Dir["other/8000.sock"], other);
        Assert.Contains("Directory listing", Curl(service.Dir["web/8000.sock"]));
        Assert.Contains("Directory listing", Curl(service.Dir["other/8000.sock"]));

        var targets = service.Status();
        Assert.Equal(2, targets.Count);
        // Exec in place: the program is the process that registered (minilaunch's pid, which env and exec kept).
        var w = Assert.Single(targets, t => t.Pid == web.Pid);
        var o = Assert.Single(targets, t => t.Pid == other.Pid);
        Assert.Equal("web", w.Policy);
        Assert.Equal("other", o.Policy);
        Assert.Equal([service.Dir["web/8000.sock"]], w.SocketFiles);
        Assert.Equal([service.Dir["other/8000.sock"]], o.SocketFiles);
        Assert.Contains("http.server 8000", w.Command);
        Assert.DoesNotContain("minilaunch", w.Command);
        Assert.Equal("root", w.User);
        Assert.True(w.Redirected >= 1 && o.Redirected >= 1, $"{w.Redirected} {o.Redirected}");

        using var text = new RunningProgram(ServiceBinary.Path, ["status", "--socket", service.Socket]);
        Assert.Equal(0, text.WaitForExit(Long));
        var lines = text.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("PID", lines[0].TrimStart());
        Assert.Equal(3, lines.Length);
        Assert.Contains(lines, l => l.TrimStart().StartsWith($"{web.Pid} ") && l.Contains(" web ") && l.Contains(service.Dir["web/8000.sock"]));
        Assert.Contains(lines, l => l.TrimStart().StartsWith($"{other.Pid} ") && l.Contains(" other ") && l.Contains(service.Dir["other/8000.sock"]));

        using var json = new RunningProgram(ServiceBinary.Path, ["status", "--json", "--socket", service.Socket]);
        Assert.Equal(0, json.WaitForExit(Long));
        var parsed = StatusTable.FromJson(json.Stdout);
        Assert.Equal(new[] { web.Pid, other.Pid }.Order(), parsed.Select(t => t.Pid).Order());
        Assert.Equal(service.Dir["web/8000.sock"], parsed.Single(t => t.Pid == web.Pid).SocketFiles.Single());
        Console.WriteLine(text.Stdout);

        // A target that ends is gone from status, and its socket file with it.
        web.Signal(15);
        web.WaitForExit(Long);
        Assert.True(Wait.Until(() => service.Status().All(t => t.Pid != web.Pid) && !File.Exists(service.Dir["web/8000.sock"]), Long), service.Log);
        Assert.Contains(service.Status(), t => t.Pid == other.Pid);
    }

    [Fact]
    public void RefusesEveryBadRequestWithItsReasonAndStillServesOthers()
    {
        using var service = new ServiceUnderTest(new Dictionary<string, string> { ["web"] = "" });
        service.WritePolicy("web", service.LoopbackPolicy("web"));
        service.Process.Signal(1);
        Assert.True(Wait.Until(() => service.Log.Contains("policy \"web\" loaded"), Long), service.Log);

        string Refused(ControlRequest request, int fd = -1)
        {
            var reply = service.Ask(request, fd);
            Assert.False(reply.Ok, $"accepted: {JsonSerializer.Serialize(request)}");
            Assert.Null(reply.Filter);
            return reply.Error!;
        }

        Assert.Contains("no policy named \"nope\"", Refused(new ControlRequest { Kind = "register", Policy = "nope" }));
        Assert.Contains("known: web", Refused(new ControlRequest { Kind = "register", Policy = "nope" }));
        Assert.Contains("is not a policy name", Refused(new ControlRequest { Kind = "register", Policy = "../policies/web" }));
        Assert.Contains("rules[0].address: \"300.1.1.1\" is not an IPv4 or IPv6 address",
            Refused(new ControlRequest { Kind = "register", PolicyText = """{ "rules": [ { "address": "300.1.1.1", "reject": "EACCES" } ] }""", PolicySource = "/home/u/bad.json" }));
        Assert.Contains("/home/u/bad.json", Refused(new ControlRequest { Kind = "register", PolicyText = "{", PolicySource = "/home/u/bad.json" }));
        Assert.Contains("attach before register", Refused(new ControlRequest { Kind = "attach" }));
        Assert.Contains("unknown request kind \"dance\"", Refused(new ControlRequest { Kind = "dance" }));
        Assert.Contains("protocol version 7 is not supported", Refused(new ControlRequest { Kind = "status", Version = 7 }));
        Assert.Contains("not both", Refused(new ControlRequest { Kind = "register", Policy = "web", PolicyText = "{}" }));

        // Raw records: not JSON, and longer than the protocol allows.
        string Raw(byte[] record)
        {
            using var s = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
            s.Connect(new UnixDomainSocketEndPoint(service.Socket));
            s.Send(record);
            var buffer = new byte[65536];
            s.ReceiveTimeout = 30000;
            int n = s.Receive(buffer);
            var reply = JsonDocument.Parse(buffer.AsMemory(0, n)).RootElement;
            Assert.False(reply.GetProperty("ok").GetBoolean());
            return reply.GetProperty("error").GetString()!;
        }
        Assert.Contains("is not a valid control message", Raw("{\"kind\": register"u8.ToArray()));
        Assert.Contains("longer than the 131072 bytes", Raw(Encoding.UTF8.GetBytes("{\"kind\":\"status\",\"policyText\":\"" + new string('x', 200_000) + "\"}")));

        // attach with an fd that is not a seccomp listener (a pipe), after a good register; and with no fd at all.
        using (var channel = ControlChannel.Connect(service.Socket))
        {
            channel.Send(new ControlRequest { Kind = "register", Policy = "web" });
            var registered = channel.ReceiveReply(Long);
            Assert.True(registered.Ok, registered.Error);
            Assert.False(string.IsNullOrEmpty(registered.Filter));
            var pipe = new int[2];
            unsafe { fixed (int* p = pipe) Tmds.Linux.LibC.pipe2(p, Tmds.Linux.LibC.O_CLOEXEC); }
            channel.Send(new ControlRequest { Kind = "attach" }, pipe[0]);
            var reply = channel.ReceiveReply(Long);
            Assert.False(reply.Ok);
            Assert.Contains("is not a seccomp listener (it is pipe:", reply.Error);
            Tmds.Linux.LibC.close(pipe[0]);
            Tmds.Linux.LibC.close(pipe[1]);
        }
        using (var channel = ControlChannel.Connect(service.Socket))
        {
            channel.Send(new ControlRequest { Kind = "register", Policy = "web" });
            Assert.True(channel.ReceiveReply(Long).Ok);
            channel.Send(new ControlRequest { Kind = "register", Policy = "web" });
            Assert.Contains("registered already", channel.ReceiveReply(Long).Error);
        }
        using (var channel = ControlChannel.Connect(service.Socket))
        {
            channel.Send(new ControlRequest { Kind = "register", Policy = "web" });
            Assert.True(channel.ReceiveReply(Long).Ok);
            channel.Send(new ControlRequest { Kind = "attach" });
            Assert.Contains("attach carried no file descriptor", channel.ReceiveReply(Long).Error);
        }

        // Every refusal was logged with the caller, and none of them harmed a real registration.
        Assert.Contains($"refused pid {Environment.ProcessId} (uid 0), unknown_policy: no policy named \"nope\"", service.Log);
        Assert.Contains("malformed: ", service.Log);
        using var web = service.Launch("web", HttpServer(8001));
        Wait.ForListener(service.Dir["web/8001.sock"], web);
        Assert.Contains("Directory listing", Curl(service.Dir["web/8001.sock"]));
        Assert.Single(service.Status());
    }

    [Fact]
    public void AUserNotAllowedIsRefusedAndAnAllowedOneActsAsItself()
    {
        using var service = new ServiceUnderTest();
        service.WritePolicy("rootonly", service.LoopbackPolicy("r"));
        service.WritePolicy("shared", service.LoopbackPolicy("n", """ "allowed": { "users": ["nobody"] }, """));
        Directory.CreateDirectory(service.Dir["n"]);
        File.SetUnixFileMode(service.Dir["n"], (UnixFileMode)0x1FF);
        service.Process.Signal(1);
        Assert.True(Wait.Until(() => service.Log.Contains("policy \"shared\" loaded"), Long), service.Log);

        using var refused = service.Launch("rootonly", ["true"], asUser: "nobody");
        Assert.Equal(125, refused.WaitForExit(Long));
        Assert.Contains("user nobody (uid 65534) may not use policy \"rootonly\"", refused.Stderr);
        Assert.Contains("allows: root only", refused.Stderr);
        Assert.Contains("refused pid", service.Log);
        Assert.Contains("(uid 65534), not_allowed", service.Log);

        using var allowed = service.Launch("shared", HttpServer(8002), asUser: "nobody");
        Wait.ForListener(service.Dir["n/8002.sock"], allowed);
        // The root supervisor created the file as the target: nobody owns it.
        Assert.Equal(65534, OwnerOf(service.Dir["n/8002.sock"]));
        Assert.Contains("Directory listing", Curl(service.Dir["n/8002.sock"]));
        var t = Assert.Single(service.Status());
        Assert.Equal("nobody", t.User);
        Assert.Equal(65534u, t.Uid);

        // nobody sees its own targets only; root sees all.
        using var root = service.Launch("rootonly", HttpServer(8003));
        Wait.ForListener(service.Dir["r/8003.sock"], root);
        Assert.Equal(2, service.Status().Count);
        using var asNobody = new RunningProgram("setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", ServiceBinary.Path, "status", "--json", "--socket", service.Socket]);
        Assert.Equal(0, asNobody.WaitForExit(Long));
        Assert.Equal([allowed.Pid], StatusTable.FromJson(asNobody.Stdout).Select(s => s.Pid).ToArray());
    }

    private static int OwnerOf(string path)
    {
        Tmds.Linux.stat st;
        unsafe
        {
            var bytes = Encoding.UTF8.GetBytes(path + "\0");
            fixed (byte* p = bytes) Assert.Equal(0, Tmds.Linux.LibC.lstat(p, &st));
        }
        return (int)(uint)st.st_uid;
    }

    [Fact]
    public void RefusesTargetsBeyondTheLimit()
    {
        using var service = new ServiceUnderTest(args: ["--Unsock:MaxTargets=1"]);
        service.WritePolicy("web", service.LoopbackPolicy("web"));
        service.Process.Signal(1);
        Assert.True(Wait.Until(() => service.Log.Contains("policy \"web\" loaded"), Long), service.Log);
        using var first = service.Launch("web", ["sleep", "60"]);
        WaitForTarget(service, first.Pid, first);
        using var second = service.Launch("web", ["sleep", "60"]);
        Assert.Equal(125, second.WaitForExit(Long));
        Assert.Contains("too many targets: 1 attached and 0 registering, the limit is 1 (Unsock:MaxTargets)", second.Stderr);
        Assert.Contains("too_many_targets", service.Log);
        // The first one's end makes room.
        first.Signal(9);
        first.WaitForExit(Long);
        Assert.True(Wait.Until(() => service.Status().Count == 0, Long), service.Log);
        using var third = service.Launch("web", ["sleep", "60"]);
        WaitForTarget(service, third.Pid, third);
    }

    [Fact]
    public void ReloadsOnSighupKeepingThePreviousVersionOfABadFile()
    {
        using var service = new ServiceUnderTest();
        service.WritePolicy("web", service.LoopbackPolicy("web"));
        service.Process.Signal(1);
        Assert.True(Wait.Until(() => service.Log.Contains("policy \"web\" loaded"), Long), service.Log);
        using var before = service.Launch("web", HttpServer(8004));
        Wait.ForListener(service.Dir["web/8004.sock"], before);

        // web breaks, late appears (good), and bad never loads.
        service.WritePolicy("web", """{ "rules": [ { "address": "127.0.0.0/8", "directory": "relative/dir" } ] }""");
        service.WritePolicy("late", service.LoopbackPolicy("late"));
        service.WritePolicy("bad", """{ "allowed": { "users": ["no-such-user-here"] }, "rules": [] }""");
        service.Process.Signal(1);
        // The second reload's line (the first came with the SIGHUP above).
        Assert.True(Wait.Until(() => service.Log.Split("policies reloaded").Length > 2, Long), service.Log);
        Assert.Contains($"policy \"web\" not changed, the version loaded before stays: {service.PolicyDirectory}/web.json: rules[0].directory", service.Log);
        Assert.Contains($"policy \"bad\" not loaded: {service.PolicyDirectory}/bad.json: allowed.users[0]: \"no-such-user-here\" is not a user on this system", service.Log);
        Assert.Contains("policy \"late\" loaded", service.Log);

        using var late = service.Launch("late", HttpServer(8005));
        Wait.ForListener(service.Dir["late/8005.sock"], late);
        // The kept version of web still works, and the target started before goes on under it.
        using var again = service.Launch("web", HttpServer(8006));
        Wait.ForListener(service.Dir["web/8006.sock"], again);
        Assert.Contains("Directory listing", Curl(service.Dir["web/8004.sock"]));
        using var bad = service.Launch("bad", ["true"]);
        Assert.Equal(125, bad.WaitForExit(Long));
        Assert.Contains("no policy named \"bad\"", bad.Stderr);
        Assert.True(service.Process.HasExited == false, service.Log);
    }

    [Fact]
    public void SigtermStopsRegistrationsAndLogsWhatAttachedTargetsWillSee()
    {
        using var service = new ServiceUnderTest();
        service.WritePolicy("web", service.LoopbackPolicy("web"));
        service.Process.Signal(1);
        Assert.True(Wait.Until(() => service.Log.Contains("policy \"web\" loaded"), Long), service.Log);
        using var target = service.Launch("web", ["sh", "-c", $"while [ ! -e {service.Dir["go"]} ]; do sleep 0.05; done; exec {Py} {Probe} bind 127.0.0.1 8007"]);
        WaitForTarget(service, target.Pid, target);
        service.Process.Signal(15);
        Assert.Equal(0, service.Process.WaitForExit(Long));
        Assert.True(service.Notify.Count("STOPPING=1") == 1, string.Join(" | ", service.Notify.Messages));
        Assert.Contains($"stopping with target 1 still attached: pid {target.Pid}", service.Log);
        Assert.Contains("fail with ENOSYS", service.Log);
        // And so it is: the program's next bind gets ENOSYS.
        File.WriteAllText(service.Dir["go"], "");
        target.WaitForExit(Long);
        Assert.Contains("errno 38", target.Stdout);
    }

    [Fact]
    public void PingsTheWatchdogAtHalfTheInterval()
    {
        using var service = new ServiceUnderTest(env: new Dictionary<string, string?> { ["WATCHDOG_USEC"] = "400000" });
        Assert.True(service.Notify.WaitFor("WATCHDOG=1", Long, times: 4), string.Join(" | ", service.Notify.Messages) + service.Log);
        Assert.Contains("WATCHDOG=1 every 00:00:00.2", service.Log);
        // WATCHDOG_PID naming another process: not ours to ping.
        using var other = new ServiceUnderTest(env: new Dictionary<string, string?> { ["WATCHDOG_USEC"] = "400000", ["WATCHDOG_PID"] = "1" });
        Thread.Sleep(1500);
        Assert.Equal(0, other.Notify.Count("WATCHDOG=1"));
    }

    [Fact]
    public void IdleAndSlowClientsDoNotStopRegistrations()
    {
        using var service = new ServiceUnderTest(args: ["--Unsock:MaxConnections=300", "--Unsock:ConnectionTimeout=00:00:05"]);
        service.WritePolicy("web", service.LoopbackPolicy("web"));
        service.Process.Signal(1);
        Assert.True(Wait.Until(() => service.Log.Contains("policy \"web\" loaded"), Long), service.Log);
        var idle = new List<Socket>();
        try
        {
            // 1,000 connections that never say anything, a slow client that asks for status now and then,
            // and a launcher that registers and never attaches.
            for (int i = 0; i < 1000; i++)
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
                s.Connect(new UnixDomainSocketEndPoint(service.Socket));
                idle.Add(s);
            }
            using var stuck = service.Launch("web", ["sleep", "30"], attach: false);
            using var slow = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified) { ReceiveTimeout = 30000 };
            slow.Connect(new UnixDomainSocketEndPoint(service.Socket));
            var slowLoop = Task.Run(() =>
            {
                var buffer = new byte[65536];
                try
                {
                    for (int i = 0; i < 40; i++)
                    {
                        slow.Send("{\"version\":1,\"kind\":\"status\"}"u8);
                        if (slow.Receive(buffer) == 0) return; // closed after its 16 requests
                        Thread.Sleep(500);
                    }
                }
                catch (SocketException) { }
            });
            var started = System.Diagnostics.Stopwatch.StartNew();
            using var web = service.Launch("web", HttpServer(8008));
            Wait.ForListener(service.Dir["web/8008.sock"], web, seconds: 30);
            Console.WriteLine($"registered among 1,000 idle connections in {started.ElapsedMilliseconds} ms");
            Assert.Contains("Directory listing", Curl(service.Dir["web/8008.sock"]));
            Assert.Contains("control connections are open (Unsock:MaxConnections)", service.Log);
            // The registration that never attached is dropped at its deadline.
            Assert.True(Wait.Until(() => service.Log.Contains("registered but did not attach within 00:00:05"), Long), service.Log);
            Assert.True(Wait.Until(() => slowLoop.IsCompleted, Long), "the slow client did not finish");
            Assert.True(Wait.Until(() => !service.Process.HasExited && service.Status().Count == 1, Long), service.Log);
        }
        finally
        {
            foreach (var s in idle) s.Dispose();
        }
    }

    [Fact]
    public void RunsAsOneNativeProgramWithoutTheJitOrMemoryBothWritableAndExecutable()
    {
        using var service = new ServiceUnderTest();
        service.WritePolicy("web", service.LoopbackPolicy("web"));
        service.Process.Signal(1); // SIGHUP: the file came after the start
        Assert.True(Wait.Until(() => service.Log.Contains("policy \"web\" loaded"), Long), service.Log);
        using var web = service.Launch("web", HttpServer(8000));
        Wait.ForListener(service.Dir["web/8000.sock"], web);
        Assert.Contains("Directory listing", Curl(service.Dir["web/8000.sock"]));

        // What it maps once it has served: its own program and the C libraries, no .NET runtime, JIT or assemblies
        // (published NativeAOT: see the project file for what that saves), and nothing that is writable and executable.
        string[] maps = File.ReadAllLines($"/proc/{service.Process.Pid}/maps");
        var files = maps.Select(l => l.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries)).Where(f => f.Length == 6).Select(f => f[5]).ToHashSet();
        Assert.DoesNotContain(maps, l => l.Split(' ')[1].Contains('w') && l.Split(' ')[1].Contains('x'));
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable("UNSOCK_SUPERVISOR_BINARY"))) return; // a build of someone else's choosing
        Assert.DoesNotContain(files, f => f.EndsWith("libcoreclr.so", StringComparison.Ordinal) || f.EndsWith("libclrjit.so", StringComparison.Ordinal) || f.EndsWith(".dll", StringComparison.Ordinal));
        Assert.Contains(files, f => f == ServiceBinary.Path);
    }

    [Fact]
    public void ABadOptionStopsItWithTheOptionsName()
    {
        using var dir = new TempDir();
        var cases = new (string[] Args, IDictionary<string, string?>? Env, string Message)[]
        {
            (["--Unsock:MaxTargets=0"], null, "Unsock:MaxTargets must be between 1 and 1000000, not 0"),
            (["--Unsock:ControlSocketMode=0999"], null, "Unsock:ControlSocketMode must be an octal file mode"),
            (["--Unsock:ControlSocketGroup=no-such-group-here"], null, "Unsock:ControlSocketGroup: \"no-such-group-here\" is not a group"),
            ([], new Dictionary<string, string?> { ["Unsock__Engine__NotificationThreads"] = "999" }, "Engine:NotificationThreads must be 0 (automatic) or between 1 and 256, not 999"),
            (["--Unsock:MaxTargets=lots"], null, "Unsock:MaxTargets"),
        };
        foreach (var (args, env, message) in cases)
        {
            using var p = new RunningProgram(ServiceBinary.Path, [$"--Unsock:ControlSocket={dir["s.sock"]}", .. args], env);
            Assert.Equal(2, p.WaitForExit(Long));
            Assert.Contains(message, p.Stderr);
            Assert.False(File.Exists(dir["s.sock"]));
        }
    }

    [Fact]
    public void BindsItsOwnSocketWithModeAndGroupAndReplacesOnlyAStaleOne()
    {
        using var dir = new TempDir();
        string socket = dir["run/unsock/ctl.sock"];
        // A stale file of a supervisor that is gone: replaced.
        Directory.CreateDirectory(dir["run/unsock"]);
        using (var stale = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified)) stale.Bind(new UnixDomainSocketEndPoint(socket));
        using var service = new ServiceUnderTest(activate: false, args: [$"--Unsock:ControlSocket={socket}", "--Unsock:ControlSocketMode=0660", "--Unsock:ControlSocketGroup=nogroup"]);
        var mode = File.GetUnixFileMode(socket);
        Assert.Equal((UnixFileMode)0x1B0, mode);
        // The console logger writes from its own thread: the line may follow the socket by a moment (a busy machine).
        Assert.True(Wait.Until(() => service.Log.Contains($"control socket {socket} bound (mode 0660, group nogroup)"), Long), service.Log);
        Assert.Empty(StatusOf(socket));
        // A second one does not take the socket of a running one.
        using var second = new RunningProgram(ServiceBinary.Path, [$"--Unsock:ControlSocket={socket}", $"--Unsock:PolicyDirectory={dir.Path}"]);
        Assert.Equal(1, second.WaitForExit(Long));
        Assert.Contains("another supervisor listens there", second.Stderr);
        Assert.Empty(StatusOf(socket));
        // Stopping removes the file it bound.
        service.Process.Signal(15);
        Assert.Equal(0, service.Process.WaitForExit(Long));
        Assert.False(File.Exists(socket));
    }

    private static IReadOnlyList<TargetStatus> StatusOf(string socket)
    {
        using var channel = ControlChannel.Connect(socket);
        channel.Send(new ControlRequest { Kind = ControlProtocol.Status });
        var reply = channel.ReceiveReply(TimeSpan.FromSeconds(30));
        Assert.True(reply.Ok, reply.Error);
        return reply.Targets ?? [];
    }
}
