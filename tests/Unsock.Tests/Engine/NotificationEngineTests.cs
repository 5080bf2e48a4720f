using System.Diagnostics.Metrics;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Unsock.Core.Engine;
using Unsock.Core.Filter;
using Unsock.Core.Policies;
using Unsock.Tests.Integration;
using Spawn = Unsock.Launcher.Spawn;

namespace Unsock.Tests.Engine;

/// <summary>
/// The engine in this process, serving child programs that carry filters installed here: two listeners
/// with different policies on the same threads, one detached while the other goes on, and a stop.
/// </summary>
public class NotificationEngineTests
{
    private static string Py => Integration.Launcher.Python;
    private static string EngineProbe => Integration.Launcher.Program("engineprobe.py");
    private static string NetProbe => Integration.Launcher.Program("netprobe.py");

    /// <summary>Spawns /bin/sh -c <paramref name="script"/> with a filter for <paramref name="policy"/>; the listener fd and the pid.</summary>
    internal static (int Listener, int Pid) SpawnFiltered(Policy policy, string script)
    {
        var program = FilterCompiler.Compile(FilterPlan.For(policy));
        using var prepared = new Spawn.Prepared("/bin/sh", ["sh", "-c", script], [], 0);
        int listener = -1, pid = 0, error = 0;
        // The filter goes on a thread of its own that spawns the child and ends: no other thread of ours carries it.
        var t = new Thread(() =>
        {
            listener = SeccompFilter.InstallWithListener(program, waitKillableRecv: true);
            error = prepared.Run(out pid);
        });
        t.Start();
        t.Join();
        Assert.Equal(0, error);
        return (listener, pid);
    }

    /// <summary>
    /// Runs /bin/sh -c <paramref name="script"/> filtered for <paramref name="policy"/>, attached to <paramref name="engine"/>,
    /// to its end: it exits with 0 and its attachment completes. Returns the attachment.
    /// </summary>
    internal static ListenerAttachment RunAttached(NotificationEngine engine, Policy policy, string script, int seconds = 30)
    {
        var (fd, pid) = SpawnFiltered(policy, script);
        var attachment = engine.Attach(fd, policy, new TargetContext(pid));
        Assert.Equal(0, Spawn.WaitForExit(pid));
        Assert.True(Wait.Until(() => attachment.Completion.IsCompleted, TimeSpan.FromSeconds(seconds)), "the attachment did not complete");
        return attachment;
    }

    internal static Policy PolicyFor(TempDir dir, string name, string top = "") =>
        Policy.Load(Integration.Policies.Write(dir, $$"""{ {{top}} "rules": [ { "address": "127.0.0.0/8", "directory": "{{dir.Path}}/{{name}}" } ] }""", name + ".json"));

    internal sealed class TestMeterFactory : IMeterFactory
    {
        public readonly List<Meter> Meters = new();

        public Meter Create(MeterOptions options)
        {
            var m = new Meter(options);
            lock (Meters) Meters.Add(m);
            return m;
        }

        public void Dispose()
        {
            foreach (var m in Meters) m.Dispose();
        }
    }

    [Fact]
    public void TwoListenersWithTheirOwnPoliciesShareTheThreadsAndOneCanBeDetached()
    {
        using var dir = new TempDir();
        using var meters = new TestMeterFactory();
        var counts = new Dictionary<string, long>();
        long latencies = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (meters.Meters.Contains(instrument.Meter)) l.EnableMeasurementEvents(instrument);
        };
        // Every other long instrument: counters summed by their tag, observable ones at their last value.
        var others = new Dictionary<string, long>();
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            if (instrument.Name != "unsock.notifications")
            {
                string key = instrument.Name;
                foreach (var t in tags) key += $"|{t.Key}={t.Value}";
                lock (others) others[key] = instrument.IsObservable ? value : others.GetValueOrDefault(key) + value;
                return;
            }
            string outcome = "", call = "";
            foreach (var t in tags)
            {
                if (t.Key == "unsock.outcome") outcome = (string)t.Value!;
                if (t.Key == "unsock.call") call = (string)t.Value!;
            }
            lock (counts) counts[$"{call}/{outcome}"] = counts.GetValueOrDefault($"{call}/{outcome}") + value;
        });
        listener.SetMeasurementEventCallback<double>((instrument, _, _, _) =>
        {
            if (instrument.Name == "unsock.answer.duration") Interlocked.Increment(ref latencies);
        });
        listener.Start();

        using var engine = new NotificationEngine(Options.Create(new EngineOptions { NotificationThreads = 2 }), null, meters);
        engine.Start();
        // A connect to a port nothing listens on is answered with ECONNREFUSED by us: counted as an error.
        var (fdA, pidA) = SpawnFiltered(PolicyFor(dir, "a"),
            $"{Py} -c 'import socket; socket.socket().connect((\"127.0.0.1\", 9609))' 2>/dev/null; " +
            $"{Py} {NetProbe} never-accept 127.0.0.1 9600 & {Py} {EngineProbe} victim 127.0.0.1 9601 10 > {dir["a.out"]}; " +
            $"while [ ! -e {dir["detached"]} ]; do sleep 0.05; done; {Py} {EngineProbe} victim 127.0.0.1 9602 1 > {dir["a2.out"]} 2>&1; kill $!");
        var (fdB, pidB) = SpawnFiltered(PolicyFor(dir, "b"),
            $"{Py} {NetProbe} never-accept 127.0.0.1 9600 & for i in $(seq 1 400); do {Py} {EngineProbe} victim 127.0.0.1 9601 5 >> {dir["b.out"]} || break; " +
            $"[ -e {dir["stop"]} ] && break; done; kill $!");
        var a = engine.Attach(fdA, PolicyFor(dir, "a"), new TargetContext(pidA));
        var b = engine.Attach(fdB, PolicyFor(dir, "b"), new TargetContext(pidB));
        try
        {
            Assert.Equal(2, engine.Attachments.Count);
            // The same port lands in each policy's own directory.
            Assert.True(Wait.Until(() => File.Exists(dir["a/9600.sock"]) && File.Exists(dir["b/9600.sock"]) && File.Exists(dir["a.out"])
                && new FileInfo(dir["a.out"]).Length > 0 && File.Exists(dir["b.out"]), TimeSpan.FromSeconds(60)), "both programs should be served");
            Assert.Equal(2, JsonDocument.Parse(File.ReadAllText(dir["a.out"])).RootElement.GetProperty("family").GetInt32());
            Assert.True(a.Counters.Redirected >= 11, $"a: {a.Counters.Redirected} redirected");
            // The gauges, while both are attached and both programs run with their socket files bound.
            listener.RecordObservableInstruments();
            lock (others)
            {
                string seen = string.Join(", ", others.Select(kv => $"{kv.Key}: {kv.Value}"));
                Assert.True(others.GetValueOrDefault("unsock.listeners") == 2, seen);
                Assert.True(others.GetValueOrDefault("unsock.targets") == 2, seen);
                Assert.True(others.GetValueOrDefault("unsock.socket_files") >= 2, seen);
                Assert.True(others.ContainsKey("unsock.parked_calls"), seen);
            }

            engine.Detach(a);
            Assert.True(Wait.Until(() => a.Completion.IsCompleted, TimeSpan.FromSeconds(10)), "a detached listener's completion did not come");
            File.WriteAllText(dir["detached"], "");
            // Detached: its targets' trapped calls fail (ENOSYS), the other listener's program is still served.
            Assert.True(Wait.Until(() => File.Exists(dir["a2.out"]) && File.ReadAllText(dir["a2.out"]).Contains("Errno 38"), TimeSpan.FromSeconds(30)),
                File.Exists(dir["a2.out"]) ? File.ReadAllText(dir["a2.out"]) : "no a2.out");
            int before = File.ReadAllLines(dir["b.out"]).Length;
            Assert.True(Wait.Until(() => File.ReadAllLines(dir["b.out"]).Length >= before + 5, TimeSpan.FromSeconds(30)), "b was not served after a was detached");
            Assert.All(File.ReadAllLines(dir["b.out"]), line => Assert.Equal(2, JsonDocument.Parse(line).RootElement.GetProperty("family").GetInt32()));
            Assert.Single(engine.Attachments);
            Assert.Equal(b, engine.Attachments[0]);

            File.WriteAllText(dir["stop"], "");
            Assert.Equal(0, Spawn.WaitForExit(pidB));
            Assert.True(Wait.Until(() => b.Completion.IsCompleted, TimeSpan.FromSeconds(10)), "b's targets exited but its attachment did not complete");
            Assert.False(File.Exists(dir["b/9600.sock"]), "the socket file of an exited target stayed");
            Assert.Empty(engine.Attachments);
        }
        finally
        {
            File.WriteAllText(dir["stop"], "");
            File.WriteAllText(dir["detached"], "");
            Spawn.WaitForExit(pidA);
            Spawn.WaitForExit(pidB);
        }
        engine.Stop();
        listener.RecordObservableInstruments();
        lock (counts)
        {
            Assert.True(counts.GetValueOrDefault("connect/redirected") >= 20, string.Join(", ", counts));
            Assert.True(counts.GetValueOrDefault("bind/redirected") >= 4, string.Join(", ", counts));
        }
        Assert.True(Interlocked.Read(ref latencies) >= 24, $"{latencies} latencies recorded");
        lock (others)
        {
            string seen = string.Join(", ", others.Select(kv => $"{kv.Key}: {kv.Value}"));
            Assert.True(others.GetValueOrDefault("unsock.redirects|network.transport=unix|unsock.policy=embedded") >= 24, seen);
            Assert.True(others.GetValueOrDefault("unsock.errors|error.type=ECONNREFUSED|unsock.policy=embedded") >= 1, seen);
            // Stopped: nothing attached, nothing parked.
            Assert.True(others.GetValueOrDefault("unsock.listeners") == 0 && others.GetValueOrDefault("unsock.parked_calls") == 0, seen);
        }
    }

    [Fact]
    public void StopAnswersWaitingCallsAndCompletesEveryAttachment()
    {
        using var dir = new TempDir();
        var engine = new NotificationEngine(Options.Create(new EngineOptions { NotificationThreads = 1 }));
        engine.Start();
        var policy = PolicyFor(dir, "s", "\"acceptConvert\": \"all\",");
        // A blocking accept that never gets a connection: it waits on the poller until the engine stops.
        var (fd, pid) = SpawnFiltered(policy, $"{Py} {NetProbe} sigint-accept 127.0.0.1 9610 > {dir["s.out"]} 2>&1");
        var a = engine.Attach(fd, policy, new TargetContext(pid));
        Assert.True(Wait.Until(() => File.Exists(dir["s/9610.sock"]) && engine.Poller.Count == 1, TimeSpan.FromSeconds(30)), $"{engine.Poller.Count} parked");
        engine.Dispose();
        Assert.True(a.Completion.IsCompleted);
        Assert.Equal(0, engine.Poller.Count);
        Spawn.Kill(pid, 9);
        Spawn.WaitForExit(pid);
    }

    /// <summary>Every line logged, with its level.</summary>
    internal sealed class ListLoggerFactory : Microsoft.Extensions.Logging.ILoggerFactory, Microsoft.Extensions.Logging.ILogger
    {
        public readonly List<string> Lines = new();

        public Microsoft.Extensions.Logging.ILogger CreateLogger(string categoryName) => this;
        public void AddProvider(Microsoft.Extensions.Logging.ILoggerProvider provider) { }
        public void Dispose() { }
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

        public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state,
            Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (Lines) Lines.Add($"{logLevel}: {formatter(state, exception)}");
        }
    }

    /// <summary>
    /// One engine serving both ends (the supervisor service with a server and its client as two targets): the
    /// server's accept finds the client's record in the other attachment, so it reports the address the client
    /// reports for itself, at once (it used to wait 5 ms for a record in its own registry, then guess a port).
    /// </summary>
    [Fact]
    public void AServerAcceptingAClientOfAnotherTargetReportsTheAddressTheClientHas()
    {
        using var dir = new TempDir();
        using var engine = new NotificationEngine(Options.Create(new EngineOptions { NotificationThreads = 2 }));
        engine.Start();
        var policy = PolicyFor(dir, "socks");
        var (serverFd, serverPid) = SpawnFiltered(policy, $"{Py} {EngineProbe} peer-server 127.0.0.1 9631 20 > {dir["server.out"]} 2>&1");
        engine.Attach(serverFd, policy, new TargetContext(serverPid));
        Assert.True(Wait.Until(() => File.Exists(dir["server.out"]) && File.ReadAllText(dir["server.out"]).Contains("listening"), TimeSpan.FromSeconds(30)));
        var (clientFd, clientPid) = SpawnFiltered(policy, $"{Py} {EngineProbe} peer-client 127.0.0.1 9631 20 > {dir["client.out"]} 2>&1");
        engine.Attach(clientFd, policy, new TargetContext(clientPid));
        Assert.Equal(0, Spawn.WaitForExit(clientPid));
        Assert.Equal(0, Spawn.WaitForExit(serverPid));
        var lines = File.ReadAllLines(dir["server.out"]).Where(l => l.StartsWith('{')).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(20, lines.Count);
        Assert.All(lines, l => Assert.Equal(l.GetProperty("client").GetInt32(), l.GetProperty("accepted").GetInt32()));
        engine.Stop();
    }

    [Fact]
    public void AFailingListenerIsDetachedAloneAndItsTargetsKeepTheirFiles()
    {
        using var dir = new TempDir();
        var log = new ListLoggerFactory();
        using var engine = new NotificationEngine(Options.Create(new EngineOptions { NotificationThreads = 2 }), log);
        engine.Start();
        var (fdA, pidA) = SpawnFiltered(PolicyFor(dir, "a"), $"exec {Py} {NetProbe} never-accept 127.0.0.1 9620 > {dir["a.out"]} 2>&1");
        var (fdB, pidB) = SpawnFiltered(PolicyFor(dir, "b"),
            $"for i in $(seq 1 400); do {Py} {EngineProbe} victim 127.0.0.1 9621 3 >> {dir["b.out"]} || break; [ -e {dir["stop"]} ] && break; done");
        var a = engine.Attach(fdA, PolicyFor(dir, "a"), new TargetContext(pidA));
        var b = engine.Attach(fdB, PolicyFor(dir, "b"), new TargetContext(pidB));
        try
        {
            // A's bind and listen answered, not merely its file created: the file appears while the bind is still
            // being carried out, and a fault before the socket went into the target rightly takes the file back
            // (the target's bind then fails, and the file would belong to nobody).
            Assert.True(Wait.Until(() => File.Exists(dir["a.out"]) && File.ReadAllText(dir["a.out"]).Contains("listening\n") && File.Exists(dir["b.out"]),
                TimeSpan.FromSeconds(60)), "both programs should be served");
            // Our own fault, simulated: the listener's fd number now refers to something that is not a listener.
            int devNull = DevNull();
            Assert.True(Tmds.Linux.LibC.dup2(devNull, a.Listener.RawFd) >= 0);
            Tmds.Linux.LibC.close(devNull);
            Assert.True(Wait.Until(() => a.Completion.IsCompleted, TimeSpan.FromSeconds(10)), "the failing listener was not detached");
            Assert.Contains("its listener failed", a.DetachReason!);
            lock (log.Lines) Assert.Contains(log.Lines, l => l.StartsWith("Error: listener of pid", StringComparison.Ordinal));
            // Its target still runs: its socket file was not swept because of our fault.
            Assert.True(File.Exists(dir["a/9620.sock"]), "a running target's socket file was removed after our fault");
            // And it still names the target's listener: the target runs, and a connect there reaches its backlog.
            Assert.True(IsRunning(pidA), File.ReadAllText(dir["a.out"]));
            using (var client = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, 0) { Blocking = false })
                client.Connect(new System.Net.Sockets.UnixDomainSocketEndPoint(dir["a/9620.sock"]));
            int before = File.ReadAllLines(dir["b.out"]).Length;
            Assert.True(Wait.Until(() => File.ReadAllLines(dir["b.out"]).Length >= before + 3, TimeSpan.FromSeconds(30)), "the other listener's program was not served");
        }
        finally
        {
            File.WriteAllText(dir["stop"], "");
            Spawn.Kill(pidA, 9);
            Spawn.WaitForExit(pidA);
            Spawn.WaitForExit(pidB);
        }
    }

    /// <summary>True while <paramref name="pid"/> has not exited (a zombie has).</summary>
    private static bool IsRunning(int pid)
    {
        string stat;
        try { stat = File.ReadAllText($"/proc/{pid}/stat"); }
        catch (IOException) { return false; }
        // pid (comm) state ...: comm may hold spaces and parentheses, so the state follows the last ')'.
        return stat[stat.LastIndexOf(')') + 2] is not ('Z' or 'X');
    }

    /// <summary>
    /// The attack on moving epoll registrations: a program holds its epoll set (an epoll_wait that faults into a
    /// userfaultfd nobody serves keeps the set's mutex) while its registered sockets are swapped, one after the
    /// other or all at once. Its calls are answered (the move given up after its time), and another listener's
    /// program, on the same single notification thread and the same poller, still gets every registration moved
    /// while the first one holds its set. Old sockets left registered in the held set are not closed by us (the
    /// close would wait for the set) until the holder is gone.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AProgramHoldingItsEpollSetStallsNeitherTheThreadsNorAnotherProgramsMoves(bool together)
    {
        using var dir = new TempDir();
        var log = new ListLoggerFactory();
        string hold = CompiledC.Build("epollhold.c", "-pthread"), probe = CompiledC.Build("epollprobe.c");
        using var engine = new NotificationEngine(Options.Create(new EngineOptions { NotificationThreads = 1 }), log);
        engine.Start();
        var (fdA, pidA) = SpawnFiltered(PolicyFor(dir, "a"), $"exec {hold} 9630 5 {dir["release"]} {(together ? "together" : "")} > {dir["a.out"]} 2>&1");
        var (fdB, pidB) = SpawnFiltered(PolicyFor(dir, "b"),
            $"while ! grep -q attacker-done {dir["a.out"]} 2>/dev/null; do sleep 0.05; done; {probe} 9631 > {dir["b.out"]} 2>&1; echo $? > {dir["b.rc"]}");
        var a = engine.Attach(fdA, PolicyFor(dir, "a"), new TargetContext(pidA));
        engine.Attach(fdB, PolicyFor(dir, "b"), new TargetContext(pidB));
        try
        {
            // Every connect of the holder is answered, though its set stays held.
            Assert.True(Wait.Until(() => File.Exists(dir["a.out"]) && File.ReadAllText(dir["a.out"]).Contains("attacker-done"), TimeSpan.FromSeconds(60)),
                File.Exists(dir["a.out"]) ? File.ReadAllText(dir["a.out"]) : "no a.out");
            string attacker = File.ReadAllText(dir["a.out"]);
            Assert.StartsWith("held\n", attacker);
            if (!together)
            {
                // The first swapped once its move was given up, the others refused while that move still waits
                // (closing their old sockets, still registered in the held set, would hang the thread that closes them).
                Assert.Contains("connect 0: ok", attacker);
                for (int i = 1; i < 5; i++) Assert.Contains($"connect {i}: Connection timed out", attacker);
            }
            else
            {
                // Swapped before the first move was found stuck (their moves then given up unstarted), or refused after.
                for (int i = 0; i < 5; i++) Assert.Matches($"connect {i}: (ok|Connection timed out)\n", attacker);
                Assert.Contains(": ok", attacker);
            }
            // The other program, served while the first still holds its set: all its registrations moved.
            Assert.True(Wait.Until(() => File.Exists(dir["b.rc"]) && File.ReadAllText(dir["b.rc"]).Trim().Length > 0, TimeSpan.FromSeconds(120)), "the other program did not finish");
            string victim = File.ReadAllText(dir["b.out"]);
            Assert.True(File.ReadAllText(dir["b.rc"]).Trim() == "0", victim);
            Assert.Equal(["ok level", "ok edge", "ok oneshot", "ok two-sets", "ok shared-number", "ok crowded", "done"],
                victim.Split('\n').Where(l => l.StartsWith("ok ", StringComparison.Ordinal) || l.StartsWith("FAIL", StringComparison.Ordinal) || l == "done"));
            Assert.DoesNotContain("released", File.ReadAllText(dir["a.out"]));
            Assert.False(a.Completion.IsCompleted);
            // One mover at most waits in the holder's set; the old sockets it swapped are kept, not closed.
            Assert.Equal(1, EpollTransfer.StuckMovers);
            Assert.True(EpollTransfer.KeptCount(a) >= 1, $"{EpollTransfer.KeptCount(a)} kept");
            lock (log.Lines)
            {
                // Logged under the calling thread's id (the connecting threads are not the holder's main thread).
                Assert.Contains(log.Lines, l => l.Contains("gave up after 2000 ms", StringComparison.Ordinal));
                if (!together)
                    Assert.Equal(4, log.Lines.Count(l => l.Contains($"pid {pidA} connect", StringComparison.Ordinal) && l.Contains("ETIMEDOUT: a move for this program still waits", StringComparison.Ordinal)));
                Assert.Contains(log.Lines, l => l.Contains("data 0x1111) moved to the new socket", StringComparison.Ordinal));
            }
            File.WriteAllText(dir["release"], "");
            Assert.Equal(0, Spawn.WaitForExit(pidA));
            Assert.Contains("released", File.ReadAllText(dir["a.out"]));
            // Let go, the given-up mover finishes and ends; gone, the holder's kept sockets are closed.
            Assert.True(Wait.Until(() => EpollTransfer.StuckMovers == 0, TimeSpan.FromSeconds(30)), $"{EpollTransfer.StuckMovers} movers still stuck");
            Assert.True(Wait.Until(() => a.Completion.IsCompleted, TimeSpan.FromSeconds(30)), "the holder's attachment did not complete");
            Assert.Equal(0, EpollTransfer.KeptCount(a));
        }
        finally
        {
            File.WriteAllText(dir["release"], "");
            Spawn.Kill(pidA, 9);
            Spawn.Kill(pidB, 9);
            Spawn.WaitForExit(pidA);
            Spawn.WaitForExit(pidB);
        }
    }

    /// <summary>
    /// A program makes our copy of its socket the last reference to it (it closes its fd while its connect is
    /// parked with our copy) and holds an epoll set that socket is in: closing our copy waits for that set. The
    /// close runs on a closer thread, not on the poller: its next parked connect is still answered, and another
    /// program is served meanwhile. Its further copies (a flood of getsockname calls) wait behind the stuck close
    /// up to a bound; past it, that program alone is detached, so our fds stay bounded. Let go, all is closed.
    /// </summary>
    [Fact]
    public void AProgramMakingOurCloseOfItsSocketWaitStallsNeitherThePollerNorAnotherProgram()
    {
        using var dir = new TempDir();
        var log = new ListLoggerFactory();
        string hold = CompiledC.Build("c/closehold.c", "-pthread");
        File.WriteAllText(dir["victim.py"], """
            import socket
            l = socket.socket(); l.bind(("127.0.0.1", 9651)); l.listen()
            for i in range(5):
                c = socket.socket(); c.connect(("127.0.0.1", 9651)); s, _ = l.accept()
                c.sendall(b"x"); assert s.recv(1) == b"x"
                c.close(); s.close()
            print("victim ok")
            """);
        using var engine = new NotificationEngine(Options.Create(new EngineOptions { NotificationThreads = 1 }), log);
        engine.Start();
        var (fdA, pidA) = SpawnFiltered(PolicyFor(dir, "a"), $"exec {hold} 9650 {dir["release"]} 100000 > {dir["a.out"]} 2>&1");
        var (fdB, pidB) = SpawnFiltered(PolicyFor(dir, "b"),
            $"while ! grep -q flood {dir["a.out"]} 2>/dev/null; do sleep 0.05; done; {Py} {dir["victim.py"]} > {dir["b.out"]} 2>&1; echo $? > {dir["b.rc"]}");
        var a = engine.Attach(fdA, PolicyFor(dir, "a"), new TargetContext(pidA));
        var b = engine.Attach(fdB, PolicyFor(dir, "b"), new TargetContext(pidB));
        string Out(string name) => File.Exists(dir[name]) ? File.ReadAllText(dir[name]) : $"no {name}";
        try
        {
            // The parked connect whose copy is the last reference is answered at its SO_SNDTIMEO, and so is the
            // next one: the poller did not wait in the close.
            Assert.True(Wait.Until(() => Out("a.out").Contains("flood:"), TimeSpan.FromSeconds(60)), Out("a.out"));
            string attacker = Out("a.out");
            Assert.StartsWith("held\n", attacker);
            Assert.Contains("closed c1\n", attacker);
            Assert.Contains("c1 connect: Connection timed out\n", attacker);
            Assert.Contains("c2 connect: Connection timed out\n", attacker);
            Assert.DoesNotContain("released", attacker);
            // Its copies queued behind the stuck close until the bound, then it alone was let go: its later calls failed.
            Assert.Matches(@"flood: [0-9]+ ok, [1-9][0-9]* failed", attacker);
            Assert.True(Wait.Until(() => a.DetachReason is not null, TimeSpan.FromSeconds(30)), "the holder was not detached");
            Assert.Contains("wait to be closed", a.DetachReason);
            Assert.InRange(CopyCloser.PendingCount(a), 1, CopyCloser.MaxPendingPerAttachment + 8);
            // The other program, served while the first holds its set.
            Assert.True(Wait.Until(() => Out("b.rc").Trim().Length > 0 && !Out("b.rc").StartsWith("no ", StringComparison.Ordinal), TimeSpan.FromSeconds(60)), "the other program did not finish");
            Assert.True(Out("b.rc").Trim() == "0", Out("b.out"));
            Assert.Contains("victim ok", Out("b.out"));
            Assert.DoesNotContain("wait to be closed", b.DetachReason ?? ""); // let go once it exited, not refused
            lock (log.Lines)
                Assert.Contains(log.Lines, l => l.Contains($"pid {pidA} getsockname: ", StringComparison.Ordinal)
                    && l.Contains("wait to be closed", StringComparison.Ordinal) && l.Contains("its listener is detached, answered EIO", StringComparison.Ordinal));
            // Let go, the stuck close finishes and the rest follow.
            File.WriteAllText(dir["release"], "");
            Assert.True(Wait.Until(() => CopyCloser.PendingCount(a) == 0, TimeSpan.FromSeconds(30)), $"{CopyCloser.PendingCount(a)} closes still wait");
            Assert.Equal(0, Spawn.WaitForExit(pidA));
            Assert.Contains("released", Out("a.out"));
            Assert.True(Wait.Until(() => CopyCloser.StuckClosers == 0, TimeSpan.FromSeconds(30)), $"{CopyCloser.StuckClosers} closers still stuck");
        }
        finally
        {
            File.WriteAllText(dir["release"], "");
            Spawn.Kill(pidA, 9);
            Spawn.Kill(pidB, 9);
            Spawn.WaitForExit(pidA);
            Spawn.WaitForExit(pidB);
        }
    }

    /// <summary>
    /// A bug of ours while handling a call (simulated: the attachment's policy taken away under the engine)
    /// costs that call EIO and an error in the log; the only notification thread goes on serving.
    /// </summary>
    [Fact]
    public void AnExceptionWhileHandlingACallAnswersEioAndTheThreadGoesOn()
    {
        using var dir = new TempDir();
        var log = new ListLoggerFactory();
        File.WriteAllText(dir["first.py"], """
            import errno, socket
            try:
                socket.socket().connect(("127.0.0.1", 9641))
                print("connected")
            except OSError as e:
                print(errno.errorcode[e.errno])
            """);
        File.WriteAllText(dir["second.py"], """
            import socket
            l = socket.socket(); l.bind(("127.0.0.1", 9642)); l.listen()
            c = socket.socket(); c.connect(("127.0.0.1", 9642)); s, _ = l.accept()
            c.sendall(b"served"); print(s.recv(6).decode())
            """);
        using var engine = new NotificationEngine(Options.Create(new EngineOptions { NotificationThreads = 1 }), log);
        engine.Start();
        var policy = PolicyFor(dir, "f");
        var (fd, pid) = SpawnFiltered(policy,
            $"while [ ! -e {dir["go"]} ]; do sleep 0.02; done; {Py} {dir["first.py"]} > {dir["first.out"]} 2>&1; " +
            $"while [ ! -e {dir["go2"]} ]; do sleep 0.02; done; {Py} {dir["second.py"]} > {dir["second.out"]} 2>&1");
        var a = engine.Attach(fd, policy, new TargetContext(pid));
        var field = typeof(ListenerAttachment).GetField("<Policy>k__BackingField", System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.NonPublic)!;
        try
        {
            field.SetValue(a, null);
            File.WriteAllText(dir["go"], "");
            Assert.True(Wait.Until(() => File.Exists(dir["first.out"]) && File.ReadAllText(dir["first.out"]).Length > 0, TimeSpan.FromSeconds(60)), "the first call was not answered");
            Assert.Equal("EIO", File.ReadAllText(dir["first.out"]).Trim());
            lock (log.Lines) Assert.Contains(log.Lines, l => l.StartsWith("Error: pid ", StringComparison.Ordinal) && l.EndsWith("internal error, answered EIO", StringComparison.Ordinal));
            field.SetValue(a, policy);
            File.WriteAllText(dir["go2"], "");
            Assert.Equal(0, Spawn.WaitForExit(pid));
            // Served by the same thread after the fault, redirected: its bind and its connect.
            Assert.Equal("served", File.ReadAllText(dir["second.out"]).Trim());
            Assert.True(a.Counters.Redirected >= 2, $"{a.Counters.Redirected} redirected");
        }
        finally
        {
            field.SetValue(a, policy);
            File.WriteAllText(dir["go"], "");
            File.WriteAllText(dir["go2"], "");
            Spawn.Kill(pid, 9);
            Spawn.WaitForExit(pid);
        }
    }

    private static unsafe int DevNull()
    {
        fixed (byte* p = "/dev/null\0"u8) return Tmds.Linux.LibC.open(p, Tmds.Linux.LibC.O_RDONLY | Tmds.Linux.LibC.O_CLOEXEC, 0);
    }

    [Fact]
    public void OptionsOutOfRangeAreRefusedNamingTheOption()
    {
        var e = Assert.Throws<OptionsValidationException>(() => new NotificationEngine(Options.Create(new EngineOptions { NotificationThreads = -1, MaxParkedCalls = 0 })));
        Assert.Contains("Engine:NotificationThreads must be 0 (automatic) or between 1 and 256, not -1", e.Message);
        Assert.Contains("Engine:MaxParkedCalls must be at least 1, not 0", e.Message);
    }
}
