namespace Unsock.Tests.Integration;

/// <summary>
/// What the supervisor does per call, counted with strace on the launcher (its threads and the program): the work a
/// connect or a socket option costs us must not grow with what the program did not ask for.
/// </summary>
public class SupervisorCallCostTests : IntegrationTest
{
    /// <summary>Connects three times; on each connection sets TCP_NODELAY N times and reads it back once.</summary>
    private const string ConnectAndSetOptions = """
        import socket, sys
        port, times = int(sys.argv[1]), int(sys.argv[2])
        for i in range(3):
            c = socket.socket(); c.connect(('127.0.0.1', port)); c.sendall(b'x'); c.recv(1)
            for j in range(times): c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if times: assert c.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            c.close()
        print('done', flush=True)
        """;

    /// <summary>The lines strace wrote for the client and its supervisor: pidfd_getfd and getsockopt calls.</summary>
    private static string[] Traced(TempDir dir, string policy, int port, int times)
    {
        string log = dir[$"strace-{times}.log"];
        using var p = new RunningProgram("strace", ["-f", "-qq", "-e", "trace=pidfd_getfd,getsockopt", "-o", log,
            Launcher.Path, "--policy", policy, "--", Py, "-c", ConnectAndSetOptions, $"{port}", $"{times}"]);
        Assert.True(0 == p.WaitForExit(Long), $"strace (Debian package strace) or the program failed: {p.Describe()}");
        Assert.Equal("done\n", p.Stdout);
        return File.ReadAllLines(log);
    }

    [Fact]
    public void TcpOptionsOnASwappedSocketTakeNoCopyOfItsFdAndOptionsNeverSetAreNotRead()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        const int port = 9231;
        using var server = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "serve-threaded", "127.0.0.1", $"{port}"]);
        Wait.ForListener(dir[$"socks/{port}.sock"], server);

        var plain = Traced(dir, policy, port, times: 0);
        var withOptions = Traced(dir, policy, port, times: 8);
        // 3 x (8 setsockopt + 1 getsockopt) answered from the socket's record: found by its inode, not through a copy.
        int copies(string[] lines) => lines.Count(l => l.Contains("pidfd_getfd("));
        Assert.True(copies(withOptions) - copies(plain) < 3, $"pidfd_getfd: {copies(plain)} without options, {copies(withOptions)} with 27 option calls");
        // The program sets no SOL_SOCKET option: the swap does not look for the ones it would have had to trap. Nor
        // does the decision ask a TCP socket its SO_TYPE: TCP_INFO, read for its state, tells that too.
        string[] marked = ["SO_SNDBUF", "SO_RCVBUF", "SO_OOBINLINE", "SO_PRIORITY", "SO_RCVLOWAT", "SO_TYPE"];
        var read = plain.Concat(withOptions).Where(l => l.Contains("getsockopt(") && marked.Any(l.Contains)).ToList();
        Assert.True(read.Count == 0, string.Join('\n', read));
    }
}
