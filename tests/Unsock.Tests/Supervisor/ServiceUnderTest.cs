using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Unsock.Core.Supervision;
using Unsock.Tests.Integration;

namespace Unsock.Tests.Supervisor;

/// <summary>The supervisor service as systemd runs it: published once per test run into artifacts/test-supervisor.</summary>
public static class ServiceBinary
{
    private static readonly Lazy<string> Published = new(Publish, LazyThreadSafetyMode.ExecutionAndPublication);

    public static string Path => Published.Value;

    private static string Publish()
    {
        string? preset = Environment.GetEnvironmentVariable("UNSOCK_SUPERVISOR_BINARY");
        if (!string.IsNullOrEmpty(preset)) return preset;
        string output = System.IO.Path.Combine(Integration.Launcher.RepoRoot, "artifacts", "test-supervisor");
        var psi = new ProcessStartInfo("dotnet", ["publish", System.IO.Path.Combine(Integration.Launcher.RepoRoot, "src", "Unsock.Supervisor"), "-c", "Release", "-o", output, "--nologo", "-v", "q"])
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(8))) { p.Kill(true); throw new TimeoutException("dotnet publish of the supervisor took over 8 minutes"); }
        if (p.ExitCode != 0) throw new InvalidOperationException($"dotnet publish of the supervisor failed:\n{stdout.Result}\n{stderr.Result}");
        return System.IO.Path.Combine(output, "unsock-supervisor");
    }
}

/// <summary>systemd's end of NOTIFY_SOCKET: a datagram socket that records what the service says, in order.</summary>
public sealed class NotifyRecorder : IDisposable
{
    private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
    private readonly List<(string Message, long At)> _messages = new();
    private readonly Thread _reader;

    public NotifyRecorder(string path)
    {
        Path = path;
        _socket.Bind(new UnixDomainSocketEndPoint(path));
        _reader = new Thread(Read) { IsBackground = true };
        _reader.Start();
    }

    public string Path { get; }

    public IReadOnlyList<string> Messages
    {
        get { lock (_messages) return _messages.Select(m => m.Message).ToList(); }
    }

    public int Count(string message) => Messages.Count(m => m.Split('\n').Contains(message));

    public bool WaitFor(string message, TimeSpan timeout, int times = 1) => Wait.Until(() => Count(message) >= times, timeout);

    private void Read()
    {
        var buffer = new byte[4096];
        while (true)
        {
            int n;
            try { n = _socket.Receive(buffer); }
            catch (Exception) { return; }
            lock (_messages) _messages.Add((Encoding.UTF8.GetString(buffer, 0, n), Environment.TickCount64));
        }
    }

    public void Dispose() => _socket.Dispose();
}

/// <summary>
/// A supervisor started for one test: its control socket passed as systemd's socket activation does (fd 3,
/// LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, through Programs/activate.py), a NOTIFY_SOCKET of the test's,
/// and a policy directory of its own.
/// </summary>
public sealed class ServiceUnderTest : IDisposable
{
    public TempDir Dir { get; } = new();
    public NotifyRecorder Notify { get; }
    public RunningProgram Process { get; }

    public string Socket => Dir["ctl.sock"];
    public string PolicyDirectory => Dir["policies"];

    /// <param name="policies">Policy files to write first, by name (without .json).</param>
    /// <param name="args">More command-line options (--Unsock:X=V).</param>
    /// <param name="activate">False: no socket activation, the supervisor binds ControlSocket itself.</param>
    public ServiceUnderTest(IDictionary<string, string>? policies = null, IEnumerable<string>? args = null, IDictionary<string, string?>? env = null,
        bool activate = true, bool waitReady = true)
    {
        // Other users (nobody, in the tests that need one) must reach the socket.
        File.SetUnixFileMode(Dir.Path, (UnixFileMode)0x1ED);
        Directory.CreateDirectory(PolicyDirectory);
        foreach (var (name, json) in policies ?? new Dictionary<string, string>()) WritePolicy(name, json);
        Notify = new NotifyRecorder(Dir["notify"]);
        var environment = new Dictionary<string, string?> { ["NOTIFY_SOCKET"] = Notify.Path, ["WATCHDOG_USEC"] = null, ["WATCHDOG_PID"] = null };
        foreach (var (k, v) in env ?? new Dictionary<string, string?>()) environment[k] = v;
        var all = new List<string>();
        if (activate) all.AddRange([Integration.Launcher.Program("activate.py"), Socket, "control"]);
        all.AddRange([ServiceBinary.Path, $"--Unsock:PolicyDirectory={PolicyDirectory}", $"--Unsock:ControlSocket={Socket}"]);
        all.AddRange(args ?? []);
        Process = activate
            ? new RunningProgram(Integration.Launcher.Python, all, environment)
            : new RunningProgram(all[0], all.Skip(1), environment);
        if (waitReady) WaitReady();
    }

    public void WaitReady()
    {
        if (!Notify.WaitFor("READY=1", TimeSpan.FromSeconds(60)))
            throw new Xunit.Sdk.XunitException($"the supervisor did not say READY=1.\nnotify: {string.Join(" | ", Notify.Messages)}\n{Process.Describe()}");
    }

    public string Log => Process.Stdout + Process.Stderr;

    public void WritePolicy(string name, string json) => File.WriteAllText(System.IO.Path.Combine(PolicyDirectory, name + ".json"), json);

    /// <summary>A policy redirecting every TCP bind/connect on 127.0.0.0/8 to SUBDIR/&lt;port&gt;.sock of the test's directory.</summary>
    public string LoopbackPolicy(string subdirectory, string allowed = "") => $$"""
        { {{allowed}} "rules": [ { "address": "127.0.0.0/8", "directory": "{{Dir[subdirectory]}}", "mode": "0666" } ] }
        """;

    /// <summary>Runs COMMAND registered with <paramref name="policy"/> through the protocol's launcher side (Programs/minilaunch.py).</summary>
    public RunningProgram Launch(string policy, IEnumerable<string> command, string? asUser = null, bool inline = false, bool attach = true)
    {
        var args = new List<string>();
        if (asUser is not null) args.AddRange(["setpriv", $"--reuid={asUser}", $"--regid={PrimaryGroup(asUser)}", "--clear-groups"]);
        args.AddRange([Integration.Launcher.Python, Integration.Launcher.Program("minilaunch.py"), Socket, inline ? "--policy-file" : "--policy", policy]);
        if (!attach) args.Add("--no-attach");
        args.Add("--");
        args.AddRange(command);
        return new RunningProgram(args[0], args.Skip(1));
    }

    /// <summary>The name of <paramref name="user"/>'s primary group (nobody's is nogroup on Debian), from /etc/passwd and /etc/group.</summary>
    public static string PrimaryGroup(string user)
    {
        string gid = File.ReadLines("/etc/passwd").Select(l => l.Split(':')).First(f => f[0] == user)[3];
        return File.ReadLines("/etc/group").Select(l => l.Split(':')).FirstOrDefault(f => f[2] == gid)?[0] ?? gid;
    }

    /// <summary>Asks for status in this process, as root.</summary>
    public IReadOnlyList<TargetStatus> Status() => StatusAt(Socket);

    /// <summary>Asks the supervisor at <paramref name="socket"/> for status in this process, as root.</summary>
    public static IReadOnlyList<TargetStatus> StatusAt(string socket)
    {
        using var channel = ControlChannel.Connect(socket);
        channel.Send(new ControlRequest { Kind = ControlProtocol.Status });
        var reply = channel.ReceiveReply(TimeSpan.FromSeconds(30));
        Assert.True(reply.Ok, reply.Error);
        return reply.Targets ?? [];
    }

    /// <summary>Sends one request (with an fd) and returns the reply.</summary>
    public ControlReply Ask(ControlRequest request, int passFd = -1)
    {
        using var channel = ControlChannel.Connect(Socket);
        channel.Send(request, passFd);
        return channel.ReceiveReply(TimeSpan.FromSeconds(30));
    }

    public void Dispose()
    {
        Process.Dispose();
        Notify.Dispose();
        Dir.Dispose();
    }
}
