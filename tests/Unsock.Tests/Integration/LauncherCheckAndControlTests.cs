namespace Unsock.Tests.Integration;

/// <summary><c>unsock-launch --check</c> and <c>unsock-launch control show</c>, as users run them.</summary>
public class LauncherCheckAndControlTests : IntegrationTest
{
    [Fact]
    public void CheckValidatesWithoutRunningAndShowsWhatEachRuleDoes()
    {
        using var dir = new TempDir();
        string policy = Policies.Write(dir, $$"""
            { "rules": [
              { "fromUnix": "/var/run/docker.sock", "reject": "EACCES" },
              { "direction": "bind", "address": "127.0.0.1/8", "port": 8000, "unix": "{{dir.Path}}/%p.sock", "mode": "0660" },
              { "port": 6379, "direction": "bind", "blackhole": true }
            ] }
            """);
        // A command after the options is not run: --check only looks at the policy.
        using var p = new RunningProgram(Launcher.Path, ["--check", "--policy", policy]);
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        Assert.StartsWith($"{policy}: valid policy, 3 rules\n", p.Stdout);
        Assert.Contains("  connect unix /var/run/docker.sock: rules[0]: fails with EACCES (13)\n", p.Stdout);
        Assert.Contains($"  bind tcp 127.0.0.1:8000: rules[1]: unix socket {dir.Path}/8000.sock, mode 0660\n", p.Stdout);
        Assert.Contains("  bind tcp 127.0.0.1:6379: rules[2]: blackhole (bound where nobody can reach it)\n", p.Stdout);
        Assert.Contains("  connect tcp 127.0.0.1:80: no rule matches: carried out as made (TCP/IP)\n", p.Stdout);
        Assert.Empty(Directory.GetFiles(dir.Path, "*.sock"));

        File.WriteAllText(policy, """{ "rules": [ { "fromUnix": "relative.sock", "unix": "/a" } ] }""");
        using var bad = new RunningProgram(Launcher.Path, ["--check", "--policy", policy]);
        Assert.Equal(2, bad.WaitForExit(Long));
        Assert.Equal($"unsock-launch: {policy}: rules[0].fromUnix: \"relative.sock\" is not an absolute path pattern (it must start with '/')\n", bad.Stderr);
    }

    [Fact]
    public void CheckAfterTheCommandIsTheCommandsArgument()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "echo", "--check"]);
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        Assert.Equal("--check\n", p.Stdout);
    }

    [Fact]
    public void ControlShowPrintsAControlFileAsJsonAndSaysWhatIsNotOne()
    {
        using var dir = new TempDir();
        using (var make = new RunningProgram(Launcher.Path, [], new Dictionary<string, string?>
               { ["UNSOCK_FILE"] = dir["fc.sock"], ["UNSOCK_FC_SOCK"] = "/run/fc/vsock", ["UNSOCK_VSOCK_PORT"] = "52" }))
            Assert.True(0 == make.WaitForExit(Long), make.Describe());
        File.WriteAllText(dir["short"], "UNSK");
        using var p = new RunningProgram(Launcher.Path, ["control", "show", dir["fc.sock"], dir["short"], dir["missing"], dir.Path]);
        Assert.Equal(1, p.WaitForExit(Long));
        Assert.Contains("\"kind\": \"firecracker\"", p.Stdout);
        Assert.Contains("\"socket\": \"/run/fc/vsock\"", p.Stdout);
        Assert.Contains("\"port\": 52", p.Stdout);
        Assert.Equal(
            $"unsock-launch: {dir["short"]} is not a control file: it is 4 bytes; a control file is a regular file of exactly 452\n" +
            $"unsock-launch: {dir["missing"]} is not a control file: no such file\n" +
            $"unsock-launch: {dir.Path} is not a control file: it is a directory\n", p.Stderr);

        // The attack: a FIFO where a control file might be is looked at, never opened (that would block).
        using (var mkfifo = new RunningProgram("mkfifo", [dir["fifo"]])) Assert.Equal(0, mkfifo.WaitForExit(Long));
        using var fifo = new RunningProgram(Launcher.Path, ["control", "show", dir["fifo"]]);
        Assert.Equal(1, fifo.WaitForExit(Long));
        Assert.Equal($"unsock-launch: {dir["fifo"]} is not a control file: it is not a regular file (a socket, FIFO or device)\n", fifo.Stderr);
    }

}
