using System.Buffers.Binary;
using System.Text.Json;
using Unsock.Tests.Integration;

namespace Unsock.Tests.Supervisor;

/// <summary>
/// Real servers and clients under the real unsock-launch, handed to the real supervisor process: redis-server
/// with redis-cli, a statically linked Go server with Go clients, and a program in its own mount namespace,
/// whose socket file the supervisor (in ours) makes in that namespace.
/// </summary>
public sealed class RealServersThroughServiceTests : IntegrationTest
{
    private static ServiceUnderTest StartWithLoopback(string name)
    {
        var service = new ServiceUnderTest();
        service.WritePolicy(name, service.LoopbackPolicy(name));
        service.Process.Signal(1); // SIGHUP: the policy names the service's own directory, known only once it exists
        if (!Wait.Until(() => service.Log.Contains($"policy \"{name}\" loaded"), Long))
        {
            string log = service.Log;
            service.Dispose();
            throw new Xunit.Sdk.XunitException($"the policy did not load:\n{log}");
        }
        return service;
    }

    private static RunningProgram Launch(ServiceUnderTest service, string policy, params string[] command) =>
        new(Integration.Launcher.Path, ["--supervisor", service.Socket, "--policy", policy, "--", .. command]);

    private static string Run(RunningProgram p)
    {
        using (p)
        {
            Assert.True(0 == p.WaitForExit(Long), p.Describe());
            return p.Stdout;
        }
    }

    [Fact]
    public void RedisServerAndCliThroughTheService()
    {
        using var service = StartWithLoopback("cache");
        using var data = new TempDir();
        const int Port = 19206;
        string socketFile = service.Dir[$"cache/{Port}.sock"];
        using var server = Launch(service, "cache", "redis-server", "--port", $"{Port}", "--bind", "127.0.0.1", "--protected-mode", "yes",
            "--save", "", "--appendonly", "no", "--dir", data.Path, "--logfile", data["redis.log"]);
        Wait.ForListener(socketFile, server, seconds: 30);
        // Exec in place: the launcher's process is redis-server itself (comm: its exec'd name; the file is a link on Debian).
        Assert.Equal("redis-server\n", File.ReadAllText($"/proc/{server.Pid}/comm"));

        Assert.Equal("OK\n", Run(Launch(service, "cache", "redis-cli", "-h", "127.0.0.1", "-p", $"{Port}", "set", "greeting", "through the service")));
        Assert.Equal("through the service\n", Run(Launch(service, "cache", "redis-cli", "-h", "127.0.0.1", "-p", $"{Port}", "get", "greeting")));
        // The same server, reached at its socket file by a client that knows nothing of unsock.
        Assert.Equal("through the service\n", Run(new RunningProgram("redis-cli", ["-s", socketFile, "get", "greeting"])));
        // A client of the launcher is loopback to redis (protected mode lets it in) and is served from the socket file.
        Assert.Contains("laddr=127.0.0.1:" + Port, Run(Launch(service, "cache", "redis-cli", "-h", "127.0.0.1", "-p", $"{Port}", "client", "info")));

        server.Signal(15);
        Assert.True(0 == server.WaitForExit(Long), server.Describe());
    }

    private static readonly Lazy<string> StaticGoProbe = new(() =>
    {
        string output = Path.Combine(Integration.Launcher.RepoRoot, "artifacts", "goprobe-static");
        using var build = new RunningProgram("go", ["build", "-o", output, "."], new Dictionary<string, string?>
        {
            ["CGO_ENABLED"] = "0", ["GOFLAGS"] = "-mod=mod", ["GOPROXY"] = "off",
            ["GOCACHE"] = Path.Combine(Integration.Launcher.RepoRoot, "artifacts", "gocache"),
            ["GOPATH"] = Path.Combine(Integration.Launcher.RepoRoot, "artifacts", "gopath"),
        }, workingDirectory: Integration.Launcher.Program("goprobe"));
        if (build.WaitForExit(TimeSpan.FromMinutes(5)) != 0) throw new InvalidOperationException("go build failed (is golang-go installed?)\n" + build.Describe());
        return output;
    });

    /// <summary>True when the ELF executable at <paramref name="path"/> has no PT_INTERP: no dynamic loader, no libc.</summary>
    private static bool IsStatic(string path)
    {
        byte[] elf = File.ReadAllBytes(path);
        Assert.True(elf.Length > 64 && elf[0] == 0x7F && elf[1] == (byte)'E' && elf[4] == 2, $"{path} is not a 64-bit ELF file");
        long phoff = BinaryPrimitives.ReadInt64LittleEndian(elf.AsSpan(0x20));
        int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(elf.AsSpan(0x36)), phnum = BinaryPrimitives.ReadUInt16LittleEndian(elf.AsSpan(0x38));
        for (int i = 0; i < phnum; i++)
            if (BinaryPrimitives.ReadUInt32LittleEndian(elf.AsSpan((int)phoff + i * phentsize)) == 3) return false; // PT_INTERP
        return true;
    }

    [Fact]
    public void StaticGoServerAndClientsThroughTheService()
    {
        string probe = StaticGoProbe.Value;
        Assert.True(IsStatic(probe), $"{probe} is linked dynamically");
        using var service = StartWithLoopback("go");
        const int Port = 19207;
        using var server = Launch(service, "go", probe, "serve", $"127.0.0.1:{Port}");
        Wait.ForListener(service.Dir[$"go/{Port}.sock"], server, seconds: 30);
        Assert.Equal(probe, new FileInfo($"/proc/{server.Pid}/exe").LinkTarget);

        var result = JsonDocument.Parse(Run(Launch(service, "go", probe, "clients", $"127.0.0.1:{Port}", "500", "8"))).RootElement;
        Assert.Equal(500, result.GetProperty("done").GetInt32());
        Assert.True(0 == result.GetProperty("failures").GetInt32(), result.ToString());
        server.Signal(9);
        server.WaitForExit(Long);
    }

    /// <summary>Listens, connects to itself over TCP, then waits for its socket file to go.</summary>
    private const string ServerAndClient = """
        import os, socket, stat, sys, time
        port, sock = int(sys.argv[1]), sys.argv[2]
        srv = socket.socket(); srv.bind(('127.0.0.1', port)); srv.listen()
        print('bound', stat.S_ISSOCK(os.lstat(sock).st_mode), oct(os.lstat(sock).st_mode & 0o777), flush=True)
        c = socket.create_connection(('127.0.0.1', port)); a, _ = srv.accept(); a.sendall(b'hello from inside')
        print('client got', c.recv(100).decode(), flush=True)
        c.close(); a.close(); srv.close()
        while os.path.exists(sock): time.sleep(0.02)
        print('removed', flush=True)
        """;

    [Fact]
    public void TargetInItsOwnMountNamespaceGetsItsSocketFileThereThroughTheService()
    {
        Assert.True(Environment.IsPrivilegedProcess, "this test needs root (mount namespaces), as CI and the development machines have");
        using var service = StartWithLoopback("web");
        Directory.CreateDirectory(service.Dir["web"]);
        const int Port = 19208;
        string sock = service.Dir[$"web/{Port}.sock"];
        using var p = Launch(service, "web", "unshare", "-m", "--propagation", "private",
            "sh", "-c", "mount -t tmpfs none \"$0\" && exec \"$@\"", service.Dir["web"], Py, "-c", ServerAndClient, $"{Port}", sock);
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        // Made there with the policy's mode, reached by a client there, removed from there; never in ours.
        Assert.Equal("bound True 0o666\nclient got hello from inside\nremoved\n", p.Stdout);
        Assert.Empty(Directory.EnumerateFileSystemEntries(service.Dir["web"]));
    }
}
