using System.Text.Json;
using Microsoft.Extensions.Options;
using Unsock.Core.Engine;
using Unsock.Tests.Integration;
using static Tmds.Linux.LibC;

namespace Unsock.Tests.Engine;

/// <summary>
/// One engine hands a live target to another, as a restarted supervisor does (the test keeps a copy of the listener,
/// as systemd's fd store does): a blocking accept parked in the first is answered by the second, with the accepted
/// peer converted; and a connect the first swapped and never answered (killed right then) is finished by the second.
/// </summary>
public sealed class EngineHandoverTests
{
    private static string Py => Integration.Launcher.Python;

    private readonly NotificationEngineTests.ListLoggerFactory _log = new();

    private string Log
    {
        get { lock (_log.Lines) return string.Join('\n', _log.Lines); }
    }

    private NotificationEngine EngineWith(CallJournal journal)
    {
        var engine = new NotificationEngine(Options.Create(new EngineOptions { NotificationThreads = 2 }), _log);
        engine.UseJournal(journal);
        engine.Start();
        return engine;
    }

    [Fact]
    public void AParkedAcceptIsAnsweredByTheNextEngineWithItsPeerConverted()
    {
        using var dir = new TempDir();
        const int Port = 19341;
        var policy = NotificationEngineTests.PolicyFor(dir, "web");
        string server = $$"""
            import json, socket
            s = socket.socket(); s.bind(("127.0.0.1", {{Port}})); s.listen(4)
            c, peer = s.accept()
            print(json.dumps({"peer": peer[0], "again": c.getpeername()[0], "local": list(c.getsockname())}), flush=True)
            """;
        string client = $"import socket; socket.create_connection((\"127.0.0.1\", {Port})).close()";
        var (listener, pid) = NotificationEngineTests.SpawnFiltered(policy,
            $"{Py} -c '{server}' > {dir["server.out"]} 2>&1 & while [ ! -e {dir["go"]} ]; do sleep 0.02; done; {Py} -c '{client}'; wait");
        int kept = dup(listener); // systemd's fd store
        using var journal1 = CallJournal.Open(dir["calls1"], 64, out _);
        using var journal2 = CallJournal.Open(dir["calls2"], 64, out _);
        try
        {
            AttachmentState state;
            using (var first = EngineWith(journal1))
            {
                var a = first.Attach(listener, policy, new TargetContext(pid, Key: 7));
                // Parked and journaled (the bind before it may wait too, for its epoll move: that one is handed over as well).
                Assert.True(Wait.Until(() => CallJournal.ReadLeft(dir["calls1"]).Any(c => c.Request.Nr is 43 or 288), TimeSpan.FromSeconds(30)),
                    $"the server's accept did not park:\n{File.ReadAllText(dir["server.out"])}\n{Log}");
                first.Handover(TimeSpan.FromSeconds(5));
                Assert.True(a.Completion.IsCompleted);
                state = AttachmentState.FromJson(a.ExportState().ToJson());
            }
            // Handed over: the socket file stays, and the accept is in the journal, not answered.
            Assert.True(File.Exists(dir[$"web/{Port}.sock"]));
            var left = CallJournal.ReadLeft(dir["calls1"]);
            var accept = Assert.Single(left, c => c.Request.Nr is 43 or 288);
            Assert.All(left, c => Assert.Equal(7, c.Key));

            using var second = EngineWith(journal2);
            second.Attach(kept, policy, new TargetContext(pid, Key: 7), state, [.. left.Select(c => c.Request)]);
            kept = -1;
            File.WriteAllText(dir["go"], "");
            Assert.True(Wait.Until(() => File.ReadAllText(dir["server.out"]).Contains('}'), TimeSpan.FromSeconds(30)), $"{File.ReadAllText(dir["server.out"])}\n{Log}");
            var seen = JsonDocument.Parse(File.ReadAllText(dir["server.out"])).RootElement;
            Assert.Equal("127.0.0.1", seen.GetProperty("peer").GetString());
            Assert.Equal("127.0.0.1", seen.GetProperty("again").GetString());
            Assert.Equal(Port, seen.GetProperty("local")[1].GetInt32());
        }
        finally
        {
            if (kept >= 0) close(kept);
            kill(pid, 9);
        }
    }

    [Fact]
    public void AConnectSwappedByAnEngineThatDiedBeforeAnsweringIsFinishedByTheNext()
    {
        using var dir = new TempDir();
        const int Port = 19342;
        var policy = NotificationEngineTests.PolicyFor(dir, "web");
        Directory.CreateDirectory(dir["web"]);
        // The server is a plain Unix socket at the policy's path; only the client is supervised.
        using var server = new RunningProgram(Py, ["-c", $$"""
            import socket
            s = socket.socket(socket.AF_UNIX); s.bind("{{dir[$"web/{Port}.sock"]}}"); s.listen(4); print("listening", flush=True)
            c, _ = s.accept(); c.sendall(c.recv(10) + b" back"); c.close()
            """]);
        Assert.True(Wait.Until(() => server.Stdout.Contains("listening"), TimeSpan.FromSeconds(30)), server.Describe());
        var (listener, pid) = NotificationEngineTests.SpawnFiltered(policy,
            $"{Py} -c 'import socket; c = socket.create_connection((\"127.0.0.1\", {Port})); c.sendall(b\"ping\"); print(c.recv(20).decode())' > {dir["client.out"]} 2>&1");
        int kept = dup(listener);
        SyscallRequest? swapped = null;
        using var dead = new ManualResetEventSlim();
        Redirector.AfterReplaceForTests = (target, r) =>
        {
            if (target.Key != 8) return;
            swapped = r;
            dead.Wait(); // the first engine "dies" here: our socket is in the program, the connect unanswered
        };
        var first = EngineWith(CallJournal.Open(dir["calls1"], 64, out _));
        try
        {
            first.Attach(listener, policy, new TargetContext(pid, Key: 8));
            Assert.True(Wait.Until(() => swapped is not null, TimeSpan.FromSeconds(30)), "the connect was not swapped");
            Redirector.AfterReplaceForTests = null;

            // The record of the swapped socket died with the first engine: the second starts with none.
            using var second = EngineWith(CallJournal.Open(dir["calls2"], 64, out _));
            second.Attach(kept, policy, new TargetContext(pid, Key: 8), new AttachmentState(), [swapped!.Value]);
            kept = -1;
            Assert.True(Wait.Until(() => File.Exists(dir["client.out"]) && File.ReadAllText(dir["client.out"]).Contains('\n'), TimeSpan.FromSeconds(30)));
            Assert.True("ping back\n" == File.ReadAllText(dir["client.out"]), $"{File.ReadAllText(dir["client.out"])}\n{Log}");
        }
        finally
        {
            Redirector.AfterReplaceForTests = null;
            dead.Set();
            first.Dispose();
            if (kept >= 0) close(kept);
            kill(pid, 9);
        }
    }
}
