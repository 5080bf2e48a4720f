using System.Diagnostics;
using System.Text;
using Xunit.Abstractions;

namespace Unsock.Tests.Integration;

/// <summary>
/// The launcher relays signals to its program: none lost at start-up, ignored ones still relayed (the program
/// keeps them ignored), and none delivered twice when the kernel already sent them to the program.
/// </summary>
public class LauncherSignalTests(ITestOutputHelper output) : IntegrationTest
{
    private static string SignalCount => Launcher.Program("signalcount.py");

    [Fact]
    public void SigtermInTheFirst30MsIsNeverLost()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        // Exit 3: the program's trap saw TERM. 143: TERM ended the launcher or the program before the trap existed,
        // as it would have ended the program started directly. 0 after 5 s: the signal was lost.
        const string Program = "trap 'exit 3' TERM; i=0; while [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; exit 0";
        int seen = 0, ended = 0;
        var lost = new List<string>();
        for (int attempt = 0; attempt < 200; attempt++)
        {
            int delayMs = attempt % 31;
            using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "sh", "-c", Program]);
            if (delayMs > 0) Thread.Sleep(delayMs);
            p.Signal(15);
            int status = p.WaitForExit(Long);
            if (status == 3) seen++;
            else if (status == 143) ended++;
            else lost.Add($"attempt {attempt}, TERM after {delayMs} ms: exit {status}\n{p.Stderr}");
        }
        output.WriteLine($"200 SIGTERMs 0-30 ms after start: {seen} seen by the program's trap, {ended} ended it before its trap, {lost.Count} lost");
        Assert.True(lost.Count == 0, string.Join("\n", lost));
    }

    [Fact]
    public void SigintReachesTheProgramWhenTheLauncherStartedWithItIgnored()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        // As a script's `prog &` starts it: SIGINT ignored. The program still sees it ignored, and gets `kill -INT`.
        using var p = new RunningProgram("env", ["--ignore-signal=INT", Launcher.Path, "--policy", policy, "--", Py, SignalCount, "INT"]);
        Assert.True(Wait.Until(() => p.Stdout.Contains("ready"), TimeSpan.FromSeconds(30)), p.Describe());
        p.Signal(2);
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        Assert.Equal("inherited ignored\nready\nINT count 1\n", p.Stdout);
    }

    [Theory]
    [InlineData("")]
    [InlineData("--ignore-signal=INT,QUIT")]
    [InlineData("--ignore-signal=HUP,USR1,USR2,TERM,WINCH")]
    public void TheProgramStartsWithTheSignalDispositionsAndMaskTheLauncherGot(string envOption)
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        // The .NET runtime ignores SIGPIPE before the launcher's Main, so what it inherited for SIGPIPE is unknown: the
        // program always gets the default. This test run's own children start with it ignored: reset it for both.
        string[] start = envOption.Length == 0 ? ["--default-signal=PIPE"] : ["--default-signal=PIPE", envOption];
        using var direct = new RunningProgram("env", [.. start, "cat", "/proc/self/status"]);
        using var launched = new RunningProgram("env", [.. start, Launcher.Path, "--policy", policy, "--", "cat", "/proc/self/status"]);
        Assert.True(0 == direct.WaitForExit(Long), direct.Describe());
        Assert.True(0 == launched.WaitForExit(Long), launched.Describe());
        static string Signals(string status) =>
            string.Join('\n', status.Split('\n').Where(l => l.StartsWith("SigIgn:", StringComparison.Ordinal) || l.StartsWith("SigBlk:", StringComparison.Ordinal)));
        output.WriteLine($"env {envOption}: {Signals(direct.Stdout).Replace('\n', ' ')}");
        Assert.Equal(Signals(direct.Stdout), Signals(launched.Stdout));
    }

    [Fact]
    public void EveryThreadOfTheLauncherBlocksTheRelayedSignals()
    {
        // A thread that does not block them would take them instead of the signalfd: lost, or the launcher killed.
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        // The engine's threads start at the first trapped call (from the main thread, as it relays): one connect
        // (refused: no socket file) first, so that they are there to be looked at.
        string connectFirst = "\"$0\" -c 'import socket; socket.socket().connect_ex((\"127.0.0.1\", 9))'; exec \"$0\" \"$@\"";
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "sh", "-c", connectFirst, Py, SignalCount, "USR1", "", "20"]);
        Assert.True(Wait.Until(() => p.Stdout.Contains("ready"), TimeSpan.FromSeconds(30)), p.Describe());
        const ulong Relayed = (1UL << 0) | (1UL << 1) | (1UL << 2) | (1UL << 9) | (1UL << 11) | (1UL << 14) | (1UL << 27);
        var threads = Directory.GetDirectories($"/proc/{p.Pid}/task");
        Assert.True(threads.Length > 2, $"the launcher has only {threads.Length} threads");
        foreach (string task in threads)
        {
            string status;
            try { status = File.ReadAllText(Path.Combine(task, "status")); }
            catch (IOException) { continue; } // a thread that ended meanwhile
            string name = status.Split('\n')[0];
            ulong blocked = Convert.ToUInt64(status.Split('\n').First(l => l.StartsWith("SigBlk:", StringComparison.Ordinal))[7..].Trim(), 16);
            Assert.True((blocked & Relayed) == Relayed, $"{name} (thread {Path.GetFileName(task)}) blocks only {blocked:x16}");
        }
        p.Signal(10);
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        Assert.EndsWith("USR1 count 1\n", p.Stdout);
    }

    [Theory]
    [InlineData("group", 1)]      // kill(0): the kernel delivered it to the program; relaying would make it two
    [InlineData("descendant", 1)] // the same, sent by a child of the program
    [InlineData("parent", 0)]     // sent to the launcher on purpose: the program would not have got it without us
    public void ASignalFromTheProgramOrItsDescendantsIsNotRelayedBackToIt(string action, int expected)
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        // setsid: kill(0) reaches our own new process group, not this test run.
        using var p = new RunningProgram("setsid", ["-w", Launcher.Path, "--policy", policy, "--", Py, SignalCount, "USR1", action, "3"]);
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        Assert.Equal($"inherited default\nready\nUSR1 count {expected}\n", p.Stdout);
    }

    [Fact]
    public void CtrlCOnTheTerminalReachesTheProgramOnce()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        // script(1) runs the command on a new pty, in its foreground process group, and copies its stdin to the pty.
        string command = $"{Launcher.Path} --policy {policy} -- {Py} {SignalCount} INT";
        var psi = new ProcessStartInfo("env", [RunningProgram.DefaultSignals, "script", "-qec", command, "/dev/null"])
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        var text = new StringBuilder();
        using var script = new Process { StartInfo = psi };
        script.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (text) text.AppendLine(e.Data); };
        script.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (text) text.AppendLine(e.Data); };
        script.Start();
        script.BeginOutputReadLine();
        script.BeginErrorReadLine();
        string Text() { lock (text) return text.ToString(); }
        try
        {
            Assert.True(Wait.Until(() => Text().Contains("ready"), TimeSpan.FromSeconds(30)), Text());
            script.StandardInput.Write('\x03'); // the terminal's intr character: SIGINT to the foreground process group
            script.StandardInput.Flush();
            Assert.True(Wait.Until(() => Text().Contains("INT count"), TimeSpan.FromSeconds(30)), Text());
            output.WriteLine(Text());
            Assert.Contains("INT count 1", Text());
            Assert.Contains("inherited default", Text());
        }
        finally
        {
            script.StandardInput.Close();
            if (!script.WaitForExit(30_000)) script.Kill(entireProcessTree: true);
        }
    }
}
