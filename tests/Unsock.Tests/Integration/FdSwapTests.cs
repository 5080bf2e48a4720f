using System.Text.Json;

namespace Unsock.Tests.Integration;

/// <summary>
/// Under a policy that rejects, a call on a socket that is not AF_INET/AF_INET6 is carried out on our copy
/// of that socket, never left to the kernel (which would look the fd number up again after a second thread
/// dup2()ed a TCP socket onto it); and carried out so that the program cannot tell: its credentials,
/// capabilities, working directory and umask.
/// </summary>
public class FdSwapTests : IntegrationTest
{
    private static string OwnSockets => Launcher.Program("ownsockets.py");

    private static string RejectEverything(TempDir dir) => Policies.Write(dir, """
        { "rules": [ { "address": "0.0.0.0/0", "reject": "EACCES" }, { "address": "::/0", "reject": "EACCES" } ] }
        """);

    private static readonly string[] AsNobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];

    [Theory]
    [InlineData("connect", 3000)]
    [InlineData("fastopen", 2000)]
    [InlineData("bind", 2000)]
    public void DupingATcpSocketOntoTheFdDuringTheCallNeverGetsPastARejectEverythingPolicy(string call, int tries)
    {
        using var dir = new TempDir();
        using var victim = new NativeTcpServer();
        using var attacker = new RunningProgram(Launcher.Path, ["--policy", RejectEverything(dir), "--", CPrograms.Path("fdswap"), victim.Port.ToString(), tries.ToString(), call]);
        Assert.True(0 == attacker.WaitForExit(TimeSpan.FromMinutes(8)), attacker.Describe());
        Thread.Sleep(500); // a connection that got through is accepted by now
        Console.WriteLine($"fdswap {call}: {attacker.Stdout.Trim()}, victim accepted {victim.Accepted}");
        Assert.Contains($"bypasses 0 tries {tries} ", attacker.Stdout);
        Assert.Equal(0, victim.Accepted);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AProgramsOwnUnixNetlinkAndVsockSocketsBehaveAsNativeUnderAPolicyThatRejects(bool nobody)
    {
        Assert.True(Environment.IsPrivilegedProcess, "this test needs root, as CI and the development machines have");
        using var dir = new TempDir();
        File.SetUnixFileMode(dir.Path, (UnixFileMode)0x1ED); // nobody must reach its directory in it
        string policy = RejectEverything(dir);
        string tag = $"own{Environment.ProcessId}{(nobody ? "n" : "r")}";
        string Run(string where, bool guarded)
        {
            string work = dir[where];
            Directory.CreateDirectory(work);
            File.SetUnixFileMode(work, (UnixFileMode)0x1FF);
            string[] program = [.. nobody ? AsNobody : [], Py, OwnSockets, work, tag];
            using var p = guarded ? new RunningProgram(Launcher.Path, ["--policy", policy, "--", .. program]) : new RunningProgram(program[0], program[1..]);
            Assert.True(0 == p.WaitForExit(Long), p.Describe());
            return p.Stdout.Trim();
        }
        string native = Run("native", guarded: false);
        string guarded = Run("guarded", guarded: true);
        Console.WriteLine($"native:  {native}\nguarded: {guarded}");
        Assert.Equal(native, guarded);

        var r = JsonDocument.Parse(guarded).RootElement;
        int uid = nobody ? 65534 : 0;
        // The server saw the program as its peer; the file is the program's, made under its umask (027), in its directory.
        Assert.Equal(uid, r.GetProperty("peer_of_client").GetProperty("uid").GetInt32());
        Assert.Equal(uid, r.GetProperty("relative_owner").GetInt32());
        Assert.Equal("0o750", r.GetProperty("relative_mode").GetString());
        Assert.True(File.Exists(dir[$"guarded/{tag}.sock"]));
        Assert.Equal("ping", r.GetProperty("echo").GetString());
        Assert.Equal("ENOENT", r.GetProperty("connect_relative_elsewhere").GetString());
        Assert.Equal("OK", r.GetProperty("connect_abstract").GetString());
        Assert.Equal("datagram", r.GetProperty("dgram").GetString());
        Assert.Equal("EAGAIN", r.GetProperty("nonblocking_full").GetString());
        Assert.Equal("EAGAIN", r.GetProperty("blocking_full_sndtimeo").GetString());
        Assert.Equal("OK", r.GetProperty("blocking_full").GetString());
        Assert.True(r.GetProperty("waited_for_room").GetBoolean());
        Assert.Equal("OK", r.GetProperty("netlink_bind").GetString());
        Assert.Equal("OK", r.GetProperty("netlink_bind_group").GetString());
        // What the kernel checks against the caller's capabilities is checked against the program's, not ours.
        Assert.Equal(nobody ? "EPERM" : "OK", r.GetProperty("netlink_connect_group").GetString());
        if (!r.GetProperty("vsock_low_port").GetString()!.StartsWith("socket"))
            Assert.Equal(nobody ? "EACCES" : "OK", r.GetProperty("vsock_low_port").GetString());
        Assert.True(r.GetProperty("addrconfig").GetBoolean());
    }

    [Fact]
    public void AUnixPathOfAProgramUnderAnotherRootIsResolvedInItsRootNotInOurs()
    {
        Assert.True(Environment.IsPrivilegedProcess, "this test needs root (chroot)");
        using var dir = new TempDir();
        // The program's root is dir/root; a socket file at the same path in our root must not be what it reaches.
        string root = dir["root"];
        Directory.CreateDirectory(Path.Combine(root, "tmp"));
        using var ours = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        string path = $"/tmp/unsock-chroot-{Environment.ProcessId}.sock";
        File.Delete(path);
        ours.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
        ours.Listen(4);
        try
        {
            Directory.CreateDirectory(Path.Combine(root, "bin"));
            File.Copy(CompiledC.Build("c/unixconnect.c", "-static"), Path.Combine(root, "bin", "unixconnect"));
            using var p = new RunningProgram(Launcher.Path, ["--policy", RejectEverything(dir), "--", "chroot", root, "/bin/unixconnect", path]);
            Assert.True(0 == p.WaitForExit(Long), p.Describe());
            Assert.Equal("errno 2", p.Stdout.Trim()); // ENOENT: its root has no such socket
            Assert.False(ours.Poll(200_000, System.Net.Sockets.SelectMode.SelectRead), "the program reached a socket in our root");
        }
        finally { File.Delete(path); }
    }
}
