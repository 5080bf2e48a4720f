using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Unsock.Core.ControlFiles;
using static Tmds.Linux.LibC;
using static Unsock.Tests.ControlFiles.ControlFileTestSupport;

namespace Unsock.Tests.ControlFiles;

/// <summary>The Firecracker handshake against a fake multiplexer: an AF_UNIX listener served by a test thread.</summary>
public sealed class ControlFileHandshakeTests : IDisposable
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(10);

    private readonly ControlFileTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>
    /// Listens at a temp path; for the one connection, reads the request line (unless told not to)
    /// and then runs <paramref name="serve"/>. <see cref="Request"/> holds the line it read.
    /// </summary>
    private sealed class FakeProxy : IDisposable
    {
        private readonly Socket _listener;
        private readonly Thread _thread;
        private Exception? _failure;

        public FakeProxy(string path, Action<Socket> serve, bool readRequest = true)
        {
            Path = path;
            _listener = BindUnixSocket(path);
            _listener.Listen(1);
            _thread = new Thread(() =>
            {
                try
                {
                    using Socket connection = _listener.Accept();
                    if (readRequest)
                    {
                        Request = ReadLine(connection);
                    }
                    serve(connection);
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
                {
                    _failure = e;
                }
            }) { IsBackground = true, Name = "fake Firecracker proxy" };
            _thread.Start();
        }

        public string Path { get; }

        public string? Request { get; private set; }

        /// <summary>Waits for the serving thread; rethrows what went wrong on it.</summary>
        public void Finish()
        {
            Assert.True(_thread.Join(Generous), "the fake proxy thread did not finish");
            if (_failure is not null)
            {
                throw new InvalidOperationException("the fake proxy failed", _failure);
            }
        }

        public void Dispose()
        {
            _listener.Dispose();
            _thread.Join(Generous);
        }

        private static string ReadLine(Socket connection)
        {
            var line = new StringBuilder();
            var one = new byte[1];
            while (connection.Receive(one) == 1 && one[0] != (byte)'\n')
            {
                line.Append((char)one[0]);
            }
            return line.ToString();
        }
    }

    private FakeProxy Proxy(Action<Socket> serve, bool readRequest = true) => new(_dir["vsock"], serve, readRequest);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void OK_reply_completes_and_the_stream_then_carries_the_guest_data(bool nonBlocking)
    {
        string? fromClient = null;
        using var proxy = Proxy(connection =>
        {
            // Reply and first guest bytes in one write: the handshake must not read past the newline.
            connection.Send("OK 1073741824\nHELLO"u8);
            var buffer = new byte[4];
            int n = connection.Receive(buffer);
            fromClient = Encoding.ASCII.GetString(buffer, 0, n);
        });
        int fd = ConnectUnix(proxy.Path, nonBlocking);
        try
        {
            FirecrackerHandshake.Run(fd, 5678, Generous);

            Assert.Equal("HELLO", Encoding.ASCII.GetString(Receive(fd, 5)));
            SendAll(fd, "PING"u8.ToArray());
            proxy.Finish();
            Assert.Equal("CONNECT 5678", proxy.Request);
            Assert.Equal("PING", fromClient);
        }
        finally
        {
            close(fd);
        }
    }

    [Fact]
    public void Port_is_sent_as_an_unsigned_decimal()
    {
        using var proxy = Proxy(connection => connection.Send("OK 1\n"u8));
        int fd = ConnectUnix(proxy.Path, nonBlocking: false);
        try
        {
            FirecrackerHandshake.Run(fd, 4000000000, Generous);

            proxy.Finish();
            Assert.Equal("CONNECT 4000000000", proxy.Request);
        }
        finally
        {
            close(fd);
        }
    }

    [Theory]
    [InlineData("FAILURE\n", "\"FAILURE\\n\"")]
    [InlineData("OK\n", "\"OK\\n\"")]
    [InlineData("ok 1\n", "\"ok 1\\n\"")]
    [InlineData("\n", "\"\\n\"")]
    public void Reply_other_than_OK_fails_with_ECONNREFUSED_naming_the_reply(string reply, string quoted)
    {
        using var proxy = Proxy(connection => connection.Send(Encoding.ASCII.GetBytes(reply)));

        var e = RunExpectingFailure(proxy, Generous);

        Assert.Equal(ECONNREFUSED, e.Errno);
        Assert.Contains($"it replied {quoted}", e.Message);
        Assert.Contains("CONNECT 5678", e.Message);
    }

    [Fact]
    public void Proxy_closing_without_a_reply_fails_with_ECONNREFUSED()
    {
        using var proxy = Proxy(_ => { });

        var e = RunExpectingFailure(proxy, Generous);

        Assert.Equal(ECONNREFUSED, e.Errno);
        Assert.Contains("closed the connection", e.Message);
        Assert.Contains("without a reply", e.Message);
    }

    [Fact]
    public void Proxy_closing_in_the_middle_of_OK_fails_with_ECONNREFUSED()
    {
        using var proxy = Proxy(connection => connection.Send("OK 10"u8));

        var e = RunExpectingFailure(proxy, Generous);

        Assert.Equal(ECONNREFUSED, e.Errno);
        Assert.Contains("in the middle of its reply \"OK 10\"", e.Message);
    }

    [Fact]
    public void Reply_without_newline_within_15_bytes_fails_with_ECONNREFUSED()
    {
        using var proxy = Proxy(connection => connection.Send("OK 123456789012345678901234\n"u8));

        var e = RunExpectingFailure(proxy, Generous);

        Assert.Equal(ECONNREFUSED, e.Errno);
        Assert.Contains("no newline within 15 bytes: \"OK 123456789012\"", e.Message);
    }

    [Fact]
    public void Reply_of_exactly_15_bytes_with_newline_is_accepted()
    {
        using var proxy = Proxy(connection => connection.Send("OK 12345678901\n"u8));
        int fd = ConnectUnix(proxy.Path, nonBlocking: false);
        try
        {
            FirecrackerHandshake.Run(fd, 5678, Generous);
            proxy.Finish();
        }
        finally
        {
            close(fd);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Silent_proxy_fails_with_ETIMEDOUT_after_the_timeout(bool nonBlocking)
    {
        using var release = new ManualResetEventSlim();
        using var proxy = Proxy(_ => release.Wait(Generous));
        int fd = ConnectUnix(proxy.Path, nonBlocking);
        var clock = Stopwatch.StartNew();
        try
        {
            var e = Assert.Throws<FirecrackerHandshakeException>(() => FirecrackerHandshake.Run(fd, 5678, TimeSpan.FromMilliseconds(300)));

            Assert.Equal(ETIMEDOUT, e.Errno);
            Assert.Contains("did not answer within 300 ms", e.Message);
            Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(280), TimeSpan.FromSeconds(3));
        }
        finally
        {
            release.Set();
            close(fd);
        }
    }

    [Fact]
    public void Cancellation_aborts_a_silent_wait_without_timeout_with_EINTR()
    {
        using var release = new ManualResetEventSlim();
        using var proxy = Proxy(_ => release.Wait(Generous));
        int fd = ConnectUnix(proxy.Path, nonBlocking: false);
        var clock = Stopwatch.StartNew();
        try
        {
            var e = Assert.Throws<FirecrackerHandshakeException>(
                () => FirecrackerHandshake.Run(fd, 5678, Timeout.InfiniteTimeSpan, () => clock.ElapsedMilliseconds > 200));

            Assert.Equal(EINTR, e.Errno);
            Assert.Contains("cancelled", e.Message);
            Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(3));
        }
        finally
        {
            release.Set();
            close(fd);
        }
    }

    [Fact]
    public void Proxy_resetting_the_connection_reports_the_io_errno()
    {
        // Closing an AF_UNIX stream socket with unread data resets the peer: the client's recv gets ECONNRESET.
        using var proxy = Proxy(connection =>
        {
            connection.Poll(TimeSpan.FromSeconds(5), SelectMode.SelectRead);
            connection.Close();
        }, readRequest: false);

        var e = RunExpectingFailure(proxy, Generous);

        Assert.Equal(ECONNRESET, e.Errno);
        Assert.Contains("reading the Firecracker proxy's reply", e.Message);
    }

    [Fact]
    public void Sending_on_a_descriptor_that_is_not_a_socket_reports_ENOTSOCK()
    {
        using var devNull = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.ReadWrite);

        var e = Assert.Throws<FirecrackerHandshakeException>(() => FirecrackerHandshake.Run((int)devNull.DangerousGetHandle(), 1, Generous));

        Assert.Equal(ENOTSOCK, e.Errno);
        Assert.Contains("sending 'CONNECT 1'", e.Message);
    }

    private static FirecrackerHandshakeException RunExpectingFailure(FakeProxy proxy, TimeSpan timeout)
    {
        int fd = ConnectUnix(proxy.Path, nonBlocking: false);
        try
        {
            var e = Assert.Throws<FirecrackerHandshakeException>(() => FirecrackerHandshake.Run(fd, 5678, timeout));
            proxy.Finish();
            return e;
        }
        finally
        {
            close(fd);
        }
    }
}
