using System.Net.Sockets;

namespace Unsock.Tests.Integration;

/// <summary>
/// Targets that see another file tree than the supervisor: their own mount namespace, their own root. Socket
/// paths are resolved as the target sees them (through /proc/PID/root, openat2 RESOLVE_IN_ROOT), socket files
/// are made and removed there, and nothing a target puts in its tree leads the supervisor outside it.
/// </summary>
public class MountNamespaceTests : IntegrationTest
{
    private static void NeedsRoot() =>
        Assert.True(Environment.IsPrivilegedProcess, "this test needs root (mount namespaces, chroot), as CI and the development machines have");

    /// <summary>Listens, waits for DIR/go, connects to itself over TCP as a client, then waits for its socket file to go.</summary>
    private const string ServerAndClient = """
        import os, socket, stat, sys, time
        port, sock, go = int(sys.argv[1]), sys.argv[2], sys.argv[3]
        srv = socket.socket(); srv.bind(('127.0.0.1', port)); srv.listen()
        print('listening', os.getpid(), stat.S_ISSOCK(os.lstat(sock).st_mode), flush=True)
        while not os.path.exists(go): time.sleep(0.02)
        c = socket.create_connection(('127.0.0.1', port)); a, _ = srv.accept(); a.sendall(b'hello from inside')
        print('client got', c.recv(100).decode(), flush=True)
        c.close(); a.close(); srv.close()
        while os.path.exists(sock): time.sleep(0.02)
        print('removed', flush=True)
        """;

    [Fact]
    public void TargetInItsOwnMountNamespaceGetsItsSocketFileThere()
    {
        NeedsRoot();
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        Directory.CreateDirectory(dir["socks"]);
        const int port = 7471;
        string sock = dir[$"socks/{port}.sock"];
        // The launcher (and so the engine) stays in our namespace; the program mounts a private tmpfs over the
        // socket directory in a namespace of its own.
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "unshare", "-m", "--propagation", "private",
            "sh", "-c", "mount -t tmpfs none \"$0\" && exec \"$@\"", dir["socks"], Py, "-c", ServerAndClient, $"{port}", sock, dir["go"]]);
        Assert.True(Wait.Until(() => p.Stdout.Contains("listening") || p.HasExited, Long), p.Describe());
        var fields = p.Stdout.Split('\n')[0].Split(' ');
        Assert.True(fields is ["listening", _, "True"], $"the program did not see its socket file at {sock}: {p.Describe()}");
        int pid = int.Parse(fields[1]);

        // There in its namespace, absent in ours.
        string theirs = $"/proc/{pid}/root{sock}";
        Assert.True(File.Exists(theirs), $"{theirs} is missing: {p.Describe()}");
        Assert.False(File.Exists(sock), $"the socket file was made in the supervisor's namespace: {sock}");
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir["socks"]));

        // A client in the same namespace is redirected to it; once the listener closes, the file goes from there.
        File.WriteAllText(dir["go"], "");
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        Assert.Contains("client got hello from inside\n", p.Stdout);
        Assert.Contains("removed\n", p.Stdout);
    }

    /// <summary>
    /// The program's own AF_UNIX sockets under a policy that rejects (so the engine carries their binds and
    /// connects out): by absolute path, by a path relative to its directory, through a symlink within its
    /// root, and the escapes: through a symlink to our directory, and up out of its working directory.
    /// </summary>
    private const string OwnUnixSockets = """
        import errno, os, socket, sys
        def attempt(f):
            try: f(); return 'done'
            except OSError as e: return errno.errorcode.get(e.errno, str(e.errno))
        def unix(): return socket.socket(socket.AF_UNIX)
        own = unix(); print('bind own', attempt(lambda: (own.bind('/inside/own.sock'), own.listen())))
        print('name', own.getsockname())
        print('file', os.path.exists('/inside/own.sock'), oct(os.lstat('/inside/own.sock').st_mode & 0o777))
        print('connect own', attempt(lambda: unix().connect('/inside/own.sock')))
        os.chdir('/inside')
        print('connect relative', attempt(lambda: unix().connect('own.sock')))
        print('connect via inside link', attempt(lambda: unix().connect(sys.argv[3] + '/own.sock')))
        print('connect live', attempt(lambda: unix().connect(sys.argv[1] + '/live.sock')))
        print('bind stale', attempt(lambda: unix().bind(sys.argv[1] + '/stale.sock')))
        print('connect up', attempt(lambda: unix().connect('../' * 12 + sys.argv[2] + '/live.sock')))
        """;

    [Fact]
    public void OwnUnixSocketsOfAProgramWithItsOwnRootAreMadeAndReachedThereOnly()
    {
        NeedsRoot();
        using var dir = new TempDir();
        // Ours, root's: a stale socket file and a live listener.
        Directory.CreateDirectory(dir["root-only"]);
        File.SetUnixFileMode(dir["root-only"], (UnixFileMode)0x1ED);
        using (var make = new RunningProgram(Py, ["-c", $"import socket; socket.socket(socket.AF_UNIX).bind('{dir["root-only/stale.sock"]}')"]))
            Assert.True(0 == make.WaitForExit(Long), make.Describe());
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(dir["root-only/live.sock"]));
        listener.Listen();
        string policy = Policies.Write(dir, """
            { "rules": [ { "address": "0.0.0.0/0", "reject": "EACCES" }, { "address": "::/0", "reject": "EACCES" } ] }
            """);
        Directory.CreateDirectory(dir["newroot"]);
        string setup = "mount -t tmpfs none \"$0\" && cd \"$0\" && mkdir usr inside && mount --rbind /usr usr"
            + " && ln -s usr/bin bin && ln -s usr/lib lib && ln -s usr/lib64 lib64"
            + $" && ln -s {dir["root-only"]} outside-link && ln -s /inside inside-link && umask 022 && exec chroot \"$0\" \"$@\"";
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "unshare", "-m", "--propagation", "private",
            "sh", "-c", setup, dir["newroot"], "/usr/bin/python3", "-c", OwnUnixSockets, "/outside-link", dir["root-only"], "/inside-link"]);
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        Assert.Equal($"""
            bind own done
            name own.sock
            file True 0o755
            connect own done
            connect relative done
            connect via inside link done
            connect live ENOENT
            bind stale ENOENT
            connect up EACCES

            """, p.Stdout);
        Assert.Contains("its relative path leaves its working directory", p.Stderr);
        Assert.True(File.Exists(dir["root-only/stale.sock"]), "root's stale socket file was touched");
        Assert.Equal(["live.sock", "stale.sock"], Directory.EnumerateFileSystemEntries(dir["root-only"]).Select(Path.GetFileName).Order());
        listener.Blocking = false;
        Assert.Throws<SocketException>(() => listener.Accept()); // nothing reached our listener
    }

    /// <summary>A UDP server and client in one process: unconnected sendto, the reply's source, then a connected send.</summary>
    private const string UdpExchange = """
        import os, socket, sys
        port, sock = int(sys.argv[1]), sys.argv[2]
        srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); srv.bind(('127.0.0.1', port))
        print('bound', os.path.exists(sock), flush=True)
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.sendto(b'ping', ('127.0.0.1', port)); data, peer = srv.recvfrom(100); srv.sendto(b'pong:' + data, peer)
        reply, source = c.recvfrom(100); print('reply', reply.decode(), source, flush=True)
        c.connect(('127.0.0.1', port)); c.send(b'again'); print('server got', srv.recv(100).decode(), flush=True)
        """;

    [Fact]
    public void UdpInATargetsOwnMountNamespaceUsesItsSocketFileThere()
    {
        NeedsRoot();
        using var dir = new TempDir();
        string policy = Policies.Write(dir, $$"""
            { "rules": [ { "protocol": "udp", "address": "127.0.0.0/8", "directory": "{{dir["socks"]}}" } ] }
            """);
        Directory.CreateDirectory(dir["socks"]);
        const int port = 7491;
        string sock = dir[$"socks/{port}.sock"];
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "unshare", "-m", "--propagation", "private",
            "sh", "-c", "mount -t tmpfs none \"$0\" && exec \"$@\"", dir["socks"], Py, "-c", UdpExchange, $"{port}", sock]);
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
        Assert.Equal($"bound True\nreply pong:ping ('127.0.0.1', {port})\nserver got again\n", p.Stdout);
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir["socks"]));
    }

    /// <summary>Binds and connects over TCP and prints what each said; the policy sends 127.0.0.2 to /inside-link, the rest to /outside-link.</summary>
    private const string BindAndConnect = """
        import errno, os, socket, sys
        def attempt(f):
            try: f(); return 'done'
            except OSError as e: return errno.errorcode.get(e.errno, str(e.errno))
        stale, live, inside = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
        b = socket.socket(); print('bind stale', attempt(lambda: b.bind(('127.0.0.1', stale))))
        c = socket.socket(); print('connect live', attempt(lambda: c.connect(('127.0.0.1', live))))
        s = socket.socket(); print('bind inside', attempt(lambda: (s.bind(('127.0.0.2', inside)), s.listen())))
        print('file inside', os.path.exists(f'/inside/{inside}.sock'))
        k = socket.socket(); print('connect inside', attempt(lambda: k.connect(('127.0.0.2', inside))))
        """;

    [Fact]
    public void SymlinkInATargetsOwnRootLeadsNowhereOutsideIt()
    {
        NeedsRoot();
        using var dir = new TempDir();
        const int stale = 7481, live = 7482, inside = 7483;
        // Ours, root's: a stale socket file (a bind whose socket is gone) and a live listener.
        Directory.CreateDirectory(dir["root-only"]);
        File.SetUnixFileMode(dir["root-only"], (UnixFileMode)0x1ED);
        using (var make = new RunningProgram(Py, ["-c", $"import socket; socket.socket(socket.AF_UNIX).bind('{dir[$"root-only/{stale}.sock"]}')"]))
            Assert.True(0 == make.WaitForExit(Long), make.Describe());
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(dir[$"root-only/{live}.sock"]));
        listener.Listen();

        // Its root: a tmpfs with our /usr, where /outside-link names our root-only directory by its absolute path
        // and /inside-link names a directory of its own. The link names are new in our root too.
        string tag = Path.GetFileName(dir.Path);
        string outsideLink = $"/{tag}-outside", insideLink = $"/{tag}-inside";
        string policy = Policies.Write(dir, $$"""
            { "rules": [
                { "address": "127.0.0.2", "directory": "{{insideLink}}" },
                { "address": "127.0.0.0/8", "directory": "{{outsideLink}}" } ] }
            """);
        Directory.CreateDirectory(dir["newroot"]);
        string setup = "mount -t tmpfs none \"$0\" && cd \"$0\" && mkdir usr inside && mount --rbind /usr usr"
            + " && ln -s usr/bin bin && ln -s usr/lib lib && ln -s usr/lib64 lib64"
            + $" && ln -s {dir["root-only"]} .{outsideLink} && ln -s /inside .{insideLink} && exec chroot \"$0\" \"$@\"";
        try
        {
            using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "unshare", "-m", "--propagation", "private",
                "sh", "-c", setup, dir["newroot"], "/usr/bin/python3", "-c", BindAndConnect, $"{stale}", $"{live}", $"{inside}"]);
            Assert.True(0 == p.WaitForExit(Long), p.Describe());
            var said = p.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);

            // In its root, /outside-link leads to a path it does not have: neither the bind nor the connect is made.
            Assert.True(said.Length == 5 && said[0].StartsWith("bind stale E") && said[1].StartsWith("connect live E"), p.Describe());
            Assert.True(File.Exists(dir[$"root-only/{stale}.sock"]), "root's stale socket file was removed for the target");
            Assert.Equal([$"{stale}.sock", $"{live}.sock"], Directory.EnumerateFileSystemEntries(dir["root-only"]).Select(Path.GetFileName).Order());
            listener.Blocking = false;
            Assert.Throws<SocketException>(() => listener.Accept()); // nothing reached our listener
            Assert.False(Path.Exists(outsideLink), $"{outsideLink} was made in the supervisor's root");
            Assert.False(Path.Exists(insideLink), $"{insideLink} was made in the supervisor's root");

            // A symlink within its root is followed as it sees it.
            Assert.Equal(["bind inside done", "file inside True", "connect inside done"], said[2..]);
        }
        finally
        {
            foreach (var link in new[] { outsideLink, insideLink })
                if (Directory.Exists(link)) Directory.Delete(link, recursive: true);
        }
    }

    /// <summary>Connects twice, chroots, connects again and listens until /done: each connect sends ping and says what came back.</summary>
    private const string ConnectChrootConnect = """
        import errno, os, socket, sys, time
        port, newroot, bound = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
        def attempt():
            try:
                c = socket.socket(); c.connect(('127.0.0.1', port)); c.sendall(b'ping'); return c.recv(100).decode()
            except OSError as e: return errno.errorcode.get(e.errno, str(e.errno))
        print('before', attempt(), flush=True)
        print('again', attempt(), flush=True)
        os.chroot(newroot); os.chdir('/')
        print('after chroot', attempt(), flush=True)
        s = socket.socket(); s.bind(('127.0.0.1', bound)); s.listen(); print('bound', flush=True)
        while not os.path.exists('/done'): time.sleep(0.02)
        """;

    [Fact]
    public void TargetThatChrootsAfterItsTreeWasLookedAtHasItsNextPathsResolvedInItsNewRoot()
    {
        // The engine remembers that a task sees our tree; the chroot it sees coming must make it look again.
        NeedsRoot();
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        const int port = 7481, bound = 7482;
        using var server = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, Probe, "serve-threaded", "127.0.0.1", $"{port}"]);
        Wait.ForListener(dir[$"socks/{port}.sock"], server);
        // Its new root has the socket directory's path, empty.
        string newRoot = dir["newroot"];
        Directory.CreateDirectory(newRoot + dir["socks"]);
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, "-c", ConnectChrootConnect, $"{port}", newRoot, $"{bound}"]);
        Assert.True(Wait.Until(() => p.Stdout.Contains("bound") || p.HasExited, Long), p.Describe());
        Assert.Equal("before ping\nagain ping\nafter chroot ECONNREFUSED\nbound\n", p.Stdout);
        Assert.True(File.Exists(newRoot + dir[$"socks/{bound}.sock"]), $"the socket file is not in its new root: {p.Describe()}");
        Assert.False(File.Exists(dir[$"socks/{bound}.sock"]), "the socket file was made in the supervisor's tree");
        File.WriteAllText(newRoot + "/done", "");
        Assert.True(0 == p.WaitForExit(Long), p.Describe());
    }
}
