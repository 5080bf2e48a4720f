using System.Net.Sockets;
using System.Text;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace Unsock.Tests.ControlFiles;

/// <summary>The golden fixtures (made by the original C tool) and native bits the control-file tests share.</summary>
internal static class ControlFileTestSupport
{
    public const string VsockAny5678 = "vsock-any-5678.sock";
    public const string VsockCid2Port5000 = "vsock-cid2-5000.sock";
    public const string Firecracker5678 = "firecracker-5678.sock";
    public const string Tipc2_2_128_99_0 = "tipc-2-2-128-99-0.sock";

    public static IEnumerable<string> AllFixtures => [VsockAny5678, VsockCid2Port5000, Firecracker5678, Tipc2_2_128_99_0];

    /// <summary>tests/Unsock.Tests/ControlFiles/Fixtures, found from the test binary by walking up to Unsock.sln.</summary>
    public static string FixtureDirectory { get; } = FindFixtureDirectory();

    public static string FixturePath(string name) => Path.Combine(FixtureDirectory, name);

    public static byte[] Fixture(string name) => File.ReadAllBytes(FixturePath(name));

    private static string FindFixtureDirectory()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Unsock.sln")))
            {
                return Path.Combine(dir.FullName, "tests", "Unsock.Tests", "ControlFiles", "Fixtures");
            }
        }
        throw new InvalidOperationException($"no Unsock.sln above {AppContext.BaseDirectory}: cannot find the control-file fixtures");
    }

    public static byte[] NulTerminated(string path) => Encoding.UTF8.GetBytes(path + "\0");

    /// <summary>A bound AF_UNIX stream socket file at <paramref name="path"/> (the socket stays open until disposed).</summary>
    public static Socket BindUnixSocket(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(path));
        return socket;
    }

    /// <summary>A raw AF_UNIX stream fd connected to <paramref name="path"/>, blocking or not.</summary>
    public static unsafe int ConnectUnix(string path, bool nonBlocking)
    {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonBlocking ? SOCK_NONBLOCK : 0), 0);
        Assert.True(fd >= 0, $"socket(AF_UNIX) failed: errno {errno}");
        sockaddr_un address = default;
        address.sun_family = AF_UNIX;
        byte[] pathBytes = Encoding.UTF8.GetBytes(path);
        Assert.True(pathBytes.Length < 108, $"socket path too long for sockaddr_un: {path}");
        for (int i = 0; i < pathBytes.Length; i++)
        {
            address.sun_path[i] = pathBytes[i];
        }
        // A listening AF_UNIX socket with backlog room accepts at once, even on a non-blocking fd.
        int rc = connect(fd, (sockaddr*)&address, sizeof(sockaddr_un));
        Assert.True(rc == 0, $"connect({path}) failed: errno {errno}");
        return fd;
    }

    /// <summary>Reads up to <paramref name="count"/> bytes, waiting at most <paramref name="timeoutMs"/> for each.</summary>
    public static unsafe byte[] Receive(int fd, int count, int timeoutMs = 5000)
    {
        var result = new List<byte>();
        byte* buffer = stackalloc byte[count];
        while (result.Count < count)
        {
            pollfd pfd = default;
            pfd.fd = fd;
            pfd.events = POLLIN;
            if (poll(&pfd, 1, timeoutMs) <= 0)
            {
                break;
            }
            long n = recv(fd, buffer, (size_t)(count - result.Count), MSG_DONTWAIT);
            if (n <= 0)
            {
                break;
            }
            for (int i = 0; i < n; i++)
            {
                result.Add(buffer[i]);
            }
        }
        return result.ToArray();
    }

    public static unsafe void SendAll(int fd, byte[] data)
    {
        fixed (byte* p = data)
        {
            long n = send(fd, p, (size_t)data.Length, MSG_NOSIGNAL);
            Assert.Equal(data.Length, n);
        }
    }
}

/// <summary>A temporary directory removed with everything in it.</summary>
internal sealed class ControlFileTempDirectory : IDisposable
{
    public ControlFileTempDirectory() => Path = Directory.CreateTempSubdirectory("unsock-cf-").FullName;

    public string Path { get; }

    public string this[string name] => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
