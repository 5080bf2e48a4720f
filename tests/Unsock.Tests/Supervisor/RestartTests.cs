using System.Text.Json;
using Unsock.Core.Supervision;
using Unsock.Tests.Integration;
using Xunit.Abstractions;

namespace Unsock.Tests.Supervisor;

/// <summary>
/// The supervisor restarted under its targets' feet, with systemd's part played by Programs/fakesystemd.py (the fd
/// store, NOTIFY_SOCKET, LISTEN_FDS at each start): servers and clients under load lose no request across three
/// restarts and a SIGKILL, a call parked in the old process (a blocking accept) is answered by the new one, and
/// socket files stay where they are throughout.
/// </summary>
public sealed class RestartTests(ITestOutputHelper output) : IntegrationTest
{
    /// <summary>The harness and the supervisor it runs, with a policy "web" sending 127.0.0.0/8 to sockets/PORT.sock.</summary>
    private sealed class Harness : IDisposable
    {
        public TempDir Dir { get; } = new();
        public RunningProgram Process { get; }
        public string Socket => Dir["ctl.sock"];
        public string Sockets => Dir["sockets"];
        public string State => Dir["state"];

        public Harness()
        {
            File.SetUnixFileMode(Dir.Path, (UnixFileMode)0x1ED);
            Directory.CreateDirectory(Dir["policies"]);
            Directory.CreateDirectory(Sockets);
            File.WriteAllText(Dir["policies/web.json"], $$"""{ "rules": [ { "address": "127.0.0.0/8", "directory": "{{Sockets}}", "mode": "0666" } ] }""");
            Process = new RunningProgram(Integration.Launcher.Python,
            [
                Integration.Launcher.Program("fakesystemd.py"), Dir["notify"], Socket, "--", ServiceBinary.Path,
                $"--Unsock:PolicyDirectory={Dir["policies"]}", $"--Unsock:ControlSocket={Socket}", $"--Unsock:StateDirectory={State}",
            ], new Dictionary<string, string?> { ["WATCHDOG_USEC"] = null, ["NOTIFY_SOCKET"] = null, ["FDSTORE"] = null });
            WaitForStart(0);
        }

        public List<JsonElement> Events => Process.Stdout.Split('\n').Where(l => l.StartsWith('{'))
            .Select(l => JsonDocument.Parse(l).RootElement).ToList();

        public JsonElement WaitForStart(int number)
        {
            JsonElement? found = null;
            if (!Wait.Until(() => (found = Events.FirstOrDefault(e => e.GetProperty("event").GetString() == "ready" && e.GetProperty("start").GetInt32() == number)) is { ValueKind: JsonValueKind.Object }, TimeSpan.FromSeconds(90)))
                throw new Xunit.Sdk.XunitException($"start {number} of the supervisor did not say READY=1.\n{Process.Describe()}");
            return found!.Value;
        }

        /// <summary>SIGTERM (or SIGKILL) to the supervisor, and a new one started with the stored fds; the pause in ms.</summary>
        public double Restart(int number, bool kill = false)
        {
            Process.Signal(kill ? 12 : 10);
            return WaitForStart(number).GetProperty("pauseMs").GetDouble();
        }

        public RunningProgram Launch(params string[] command) =>
            new(Integration.Launcher.Path, ["--supervisor", Socket, "--policy", "web", "--", .. command]);

        public IReadOnlyList<TargetStatus> Status() => ServiceUnderTest.StatusAt(Socket);

        public void Dispose()
        {
            if (!Process.HasExited)
            {
                Process.Signal(15);
                Process.WaitForExit(TimeSpan.FromSeconds(30));
            }
            Process.Dispose();
            Dir.Dispose();
        }
    }

    private const string BlockingEchoServer = """
        import socket, sys
        s = socket.socket()
        s.bind(("127.0.0.1", int(sys.argv[1])))
        s.listen(64)
        while True:  # a blocking accept: parked in the supervisor between connections
            c, a = s.accept()
            c.sendall(("hi " + a[0] + "\n").encode())
            c.close()
        """;

    [Fact]
    public void ServersAndClientsUnderLoadLoseNoRequestAcrossThreeRestartsAndAKill()
    {
        using var h = new Harness();
        using var data = new TempDir();
        const int Http = 19331, Echo = 19332, Redis = 19333, Idle = 19330;
        File.WriteAllText(data["index.html"], "kept across restarts\n");
        using var http = h.Launch(Py, "-m", "http.server", $"{Http}", "--bind", "127.0.0.1", "--directory", data.Path);
        using var echo = h.Launch(Py, "-c", BlockingEchoServer, $"{Echo}");
        using var redis = h.Launch("redis-server", "--port", $"{Redis}", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", data.Path, "--logfile", data["redis.log"]);
        // Nobody connects to this one until the end: its accept waits through every restart and the kill.
        using var idle = h.Launch(Py, "-c", BlockingEchoServer, $"{Idle}");
        foreach (var (port, owner) in new[] { (Http, http), (Echo, echo), (Redis, redis), (Idle, idle) })
            Wait.ForListener(Path.Combine(h.Sockets, $"{port}.sock"), owner, seconds: 30);

        // One client target makes a new connection to each server per round (curl, nc, redis-cli); another keeps
        // redis-benchmark's connections busy. Every failure is a line; "ok" counts the requests that worked.
        string stop = data["stop"];
        using var clients = h.Launch("sh", "-c", $$"""
            while [ ! -e {{stop}} ]; do
              curl -sf -m 20 http://127.0.0.1:{{Http}}/index.html | grep -q "kept across" && echo ok || echo "FAIL curl"
              r=$(nc -N 127.0.0.1 {{Echo}} </dev/null); [ "$r" = "hi 127.0.0.1" ] && echo ok || echo "FAIL nc: $r"
              [ "$(redis-cli -p {{Redis}} incr requests)" -gt 0 ] 2>/dev/null && echo ok || echo "FAIL redis-cli"
            done
            """);
        using var benchmark = h.Launch("redis-benchmark", "-p", $"{Redis}", "-c", "4", "-n", "100000000", "-t", "set,get", "-q");
        int Ok() => clients.Stdout.Split('\n').Count(l => l == "ok");
        Assert.True(Wait.Until(() => Ok() >= 30, Long), clients.Describe());
        var before = h.Status().Select(t => (t.Target, t.Pid, t.Policy)).Order().ToList();
        Assert.Equal(6, before.Count);
        string[] files = [.. Directory.GetFiles(h.Sockets).Order()];

        var pauses = new List<double>();
        for (int i = 1; i <= 4; i++)
        {
            int okBefore = Ok();
            pauses.Add(h.Restart(i, kill: i == 4));
            // Socket files stay; every target is served again; requests go on after each restart.
            Assert.Equal(files, Directory.GetFiles(h.Sockets).Order());
            Assert.Equal(before, h.Status().Select(t => (t.Target, t.Pid, t.Policy)).Order().ToList());
            Assert.True(Wait.Until(() => Ok() >= okBefore + 30, Long), $"after restart {i}:\n{clients.Describe()}\n{h.Process.Describe()}");
        }
        output.WriteLine($"pauses (signal to READY=1 of the next supervisor): {string.Join(", ", pauses.Select(p => $"{p:F0} ms"))}; requests: {Ok()}");

        File.WriteAllText(stop, "");
        Assert.Equal(0, clients.WaitForExit(Long));
        Assert.DoesNotContain("FAIL", clients.Stdout);
        Assert.False(benchmark.HasExited, "redis-benchmark stopped: " + benchmark.Describe());
        Assert.DoesNotContain("rror", benchmark.Stdout + benchmark.Stderr);
        // The blocking accept parked in each old process was handed on: the new ones answered it.
        // The idle server's accept, parked in the first supervisor, was handed on at each restart (the others' calls
        // may or may not be waiting at that moment) and is answered now, by the fifth, with the peer converted.
        string log = h.Process.Stdout;
        Assert.Equal(3, System.Text.RegularExpressions.Regex.Count(log, $@"pid {idle.Pid} served again under policy web \(\d+ converted sockets, 1 socket files, 1 calls to answer; handed over\)"));
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(log, $@"pid {idle.Pid} served again under policy web \(\d+ converted sockets, 1 socket files, 1 calls to answer; after an unclean exit"));
        using var late = h.Launch("nc", "-N", "127.0.0.1", $"{Idle}");
        Assert.Equal(0, late.WaitForExit(Long));
        Assert.Equal("hi 127.0.0.1\n", late.Stdout);
    }

    [Fact]
    public void ASocketFileReplacedWhileHandedOverIsNotTakenBackNorRemoved()
    {
        using var h = new Harness();
        const int Port = 19334;
        string file = Path.Combine(h.Sockets, $"{Port}.sock");
        using var server = h.Launch(Py, "-c", BlockingEchoServer, $"{Port}");
        Wait.ForListener(file, server, seconds: 30);
        Assert.True(Wait.Until(() => File.Exists(Path.Combine(h.State, "1.json")) && File.ReadAllText(Path.Combine(h.State, "1.json")).Contains(file), Long));

        // The program (or anyone who may write the directory) puts something else there: a file that is not its socket.
        File.Move(file, file + ".moved");
        File.WriteAllText(file, "not a socket, and not ours to remove");
        h.Restart(1);
        Assert.Matches("socket file .*: it is gone or was replaced; left alone", h.Process.Stdout);
        server.Signal(9);
        server.WaitForExit(Long);
        Assert.True(Wait.Until(() => h.Status().Count == 0, Long), h.Process.Describe());
        Thread.Sleep(1500); // a sweep or two
        Assert.Equal("not a socket, and not ours to remove", File.ReadAllText(file));
    }

    [Fact]
    public void ATargetThatExitsWhileNoSupervisorRunsIsDroppedFromTheStoreAndAKeptFileGoesWithItsSocket()
    {
        using var h = new Harness();
        const int Port = 19335;
        using var server = h.Launch(Py, "-c", BlockingEchoServer, $"{Port}");
        Wait.ForListener(Path.Combine(h.Sockets, $"{Port}.sock"), server, seconds: 30);
        using var other = h.Launch(Py, "-c", BlockingEchoServer, $"{Port + 1}");
        string file = Path.Combine(h.Sockets, $"{Port + 1}.sock");
        Wait.ForListener(file, other, seconds: 30);
        // Written when it was bound: a SIGKILL right after loses it not.
        Assert.True(Wait.Until(() => File.ReadAllText(Path.Combine(h.State, "2.json")).Contains(file), TimeSpan.FromSeconds(5)));
        h.Process.Signal(12); // SIGKILL to the supervisor; the harness starts the next one at once
        server.Signal(9);
        server.WaitForExit(Long);
        h.WaitForStart(1);
        // The harness passed both listeners, or the first already removed: either way only the live one is served.
        Assert.True(Wait.Until(() => h.Status().Count == 1, Long), h.Process.Describe());
        Assert.Equal(other.Pid, h.Status().Single().Pid);
        h.Restart(2);
        Assert.Equal(["unsock-target-2"], h.WaitForStart(2).GetProperty("store").EnumerateArray().Select(e => e.GetString()!).ToArray());
        // A socket file taken back is removed as usual once its program is gone.
        Assert.True(File.Exists(file));
        other.Signal(9);
        other.WaitForExit(Long);
        Assert.True(Wait.Until(() => !File.Exists(file), Long), h.Process.Describe());
    }
}
