using System.Text;
using Unsock.Core.Supervision;

namespace Unsock.Tests.Supervision;

/// <summary>The control protocol's records over a real SOCK_SEQPACKET pair: what arrives, and what is refused whole.</summary>
public class ControlChannelTests
{
    private const int AfUnix = 1, SockSeqpacket = 5, SockCloexec = 0x80000;

    private static unsafe (ControlChannel A, ControlChannel B) Pair()
    {
        int* fds = stackalloc int[2];
        Assert.Equal(0, Tmds.Linux.LibC.socketpair(AfUnix, SockSeqpacket | SockCloexec, 0, fds));
        return (ControlChannel.Adopt(fds[0], "a"), ControlChannel.Adopt(fds[1], "b"));
    }

    /// <summary>A file of this test's own, so that its fds can be told from those of tests running alongside.</summary>
    private sealed class Marker : IDisposable
    {
        public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"unsock-marker-{Guid.NewGuid():N}");

        public Marker() => File.WriteAllText(Path, "");

        public int Open()
        {
            var handle = File.OpenHandle(Path);
            int fd = (int)handle.DangerousGetHandle();
            handle.SetHandleAsInvalid(); // ours to close, and no finalizer closes the number later
            return fd;
        }

        /// <summary>How many of this process's fds are open on the file.</summary>
        public int OpenCount() => new DirectoryInfo("/proc/self/fd").GetFiles()
            .Count(f => { try { return f.LinkTarget == Path; } catch (IOException) { return false; } });

        public void Dispose() => File.Delete(Path);
    }

    [Fact]
    public void ARequestAndTheFdItCarriesArriveTogether()
    {
        var (a, b) = Pair();
        using (a) using (b)
        {
            using var file = File.OpenHandle("/dev/null");
            a.Send(new ControlRequest { Kind = ControlProtocol.Attach }, (int)file.DangerousGetHandle());
            var request = b.ReceiveRequest(out int fd);
            Assert.Equal(ControlProtocol.Attach, request!.Kind);
            Assert.True(fd > 2);
            Assert.Equal("/dev/null", new FileInfo($"/proc/self/fd/{fd}").LinkTarget);
            // Received close-on-exec: nothing the supervisor is given leaks into what it runs.
            Assert.Contains("flags:\t02", File.ReadAllText($"/proc/self/fdinfo/{fd}"));
            Interop.ControlSocket.Close(fd);
        }
    }

    [Fact]
    public void RepliesRoundTripWithTheirStatusRecords()
    {
        var (a, b) = Pair();
        using (a) using (b)
        {
            var status = new TargetStatus { Target = 3, Pid = 42, Command = "redis-server *:6379", Policy = "web", Uid = 65534, User = "nobody", SocketFiles = ["/run/x/6379.sock"] };
            a.Send(new ControlReply { Ok = true, Targets = [status] });
            var reply = b.ReceiveReply(TimeSpan.FromSeconds(5));
            Assert.True(reply.Ok);
            Assert.Equal(status with { SocketFiles = reply.Targets![0].SocketFiles }, reply.Targets[0]);
            Assert.Equal(["/run/x/6379.sock"], reply.Targets[0].SocketFiles);
        }
    }

    [Fact]
    public void AnOversizedRecordIsRefusedWholeAndItsFdClosed()
    {
        var (a, b) = Pair();
        using (a) using (b)
        {
            Interop.Socket.SetInt(a.Fd, 1, 7 /* SO_SNDBUF */, 4 << 20);
            var big = Encoding.UTF8.GetBytes("{\"kind\":\"register\",\"policyText\":\"" + new string('x', ControlProtocol.MaxMessageBytes) + "\"}");
            using var marker = new Marker();
            int fd = marker.Open();
            Assert.Equal(0, Interop.ControlSocket.Send(a.Fd, big, fd));
            Interop.ControlSocket.Close(fd);
            var e = Assert.Throws<ControlChannelException>(() => b.ReceiveRequest(out _));
            Assert.Contains("longer than the 131072 bytes the protocol allows", e.Message);
            Assert.Equal(0, marker.OpenCount());
            // And our own side refuses to send one.
            var send = Assert.Throws<ControlChannelException>(() => a.Send(new ControlRequest { Kind = "register", PolicyText = new string('y', ControlProtocol.MaxMessageBytes) }));
            Assert.Contains("more than the 131072 the protocol allows", send.Message);
        }
    }

    [Fact]
    public void ExtraFdsBeyondTheFirstAreClosedNotKept()
    {
        var (a, b) = Pair();
        using (a) using (b)
        {
            using var marker = new Marker();
            SendWithFds(a.Fd, "{\"version\":1,\"kind\":\"attach\"}"u8.ToArray(), 5, marker);
            var request = b.ReceiveRequest(out int fd);
            Assert.NotNull(request);
            Assert.Equal(1, marker.OpenCount());
            Interop.ControlSocket.Close(fd);
            Assert.Equal(0, marker.OpenCount());
        }
    }

    [Theory]
    [InlineData("not json", "is not a valid control message")]
    [InlineData("null", "is empty (null)")]
    [InlineData("{\"version\":2,\"kind\":\"status\"}", "protocol version 2 is not supported")]
    [InlineData("{\"kind\":[1,2]}", "is not a valid control message")]
    [InlineData("{\"kind\":\"status\"}", "has no \"version\"")]
    public void MalformedRequestsAreRefusedInWordsAndTheirFdClosed(string text, string expected)
    {
        var (a, b) = Pair();
        using (a) using (b)
        {
            using var marker = new Marker();
            SendWithFds(a.Fd, Encoding.UTF8.GetBytes(text), 1, marker);
            var e = Assert.Throws<ControlChannelException>(() => b.ReceiveRequest(out _));
            Assert.Contains(expected, e.Message);
            Assert.Equal(0, marker.OpenCount());
        }
    }

    [Fact]
    public void APeerThatHangsUpOrSaysNothingIsToldApart()
    {
        var (a, b) = Pair();
        using (b)
        {
            var silent = Assert.Throws<ControlChannelException>(() => b.ReceiveReply(TimeSpan.FromMilliseconds(200)));
            Assert.Contains("did not answer within 0.2 s", silent.Message);
            b.Dispose();
            Assert.Null(a.ReceiveRequest(out _)); // SOCK_SEQPACKET: a zero-length read is the peer's close
        }
        a.Dispose();
        var (c, d) = Pair();
        using (d)
        {
            c.Dispose();
            var closed = Assert.Throws<ControlChannelException>(() => d.ReceiveReply(TimeSpan.FromSeconds(5)));
            Assert.Contains("closed the connection without answering", closed.Message);
        }
    }

    [Fact]
    public void PeerCredentialsAreTheKernelsNotTheMessages()
    {
        var (a, b) = Pair();
        using (a) using (b)
        {
            var (pid, uid, gid) = b.PeerCredentials();
            Assert.Equal(Environment.ProcessId, pid);
            Assert.Equal((uint)Tmds.Linux.LibC.getuid(), uid);
            Assert.Equal((uint)Tmds.Linux.LibC.getgid(), gid);
            int pidfd = b.PeerPidfd();
            Assert.True(pidfd >= 0, "SO_PEERPIDFD (6.5) is expected on this kernel");
            Assert.Contains($"Pid:\t{Environment.ProcessId}", File.ReadAllText($"/proc/self/fdinfo/{pidfd}"));
            Interop.ControlSocket.Close(pidfd);
        }
    }

    /// <summary>Sends a record with <paramref name="count"/> fds of the marker file, as a hostile client could.</summary>
    private static unsafe void SendWithFds(int socket, byte[] record, int count, Marker marker)
    {
        var fds = new int[count];
        for (int i = 0; i < count; i++) fds[i] = marker.Open();
        int space = (int)Tmds.Linux.LibC.CMSG_SPACE(count * sizeof(int));
        byte* control = stackalloc byte[space];
        new Span<byte>(control, space).Clear();
        fixed (byte* data = record)
        {
            var iov = new Tmds.Linux.iovec { iov_base = data, iov_len = (Tmds.Linux.size_t)record.Length };
            var msg = new Tmds.Linux.msghdr { msg_iov = &iov, msg_iovlen = 1, msg_control = control, msg_controllen = (Tmds.Linux.socklen_t)(uint)space };
            var c = Tmds.Linux.LibC.CMSG_FIRSTHDR(&msg);
            c->cmsg_level = 1;
            c->cmsg_type = 1;
            c->cmsg_len = (Tmds.Linux.socklen_t)(uint)Tmds.Linux.LibC.CMSG_LEN(count * sizeof(int));
            for (int i = 0; i < count; i++) ((int*)Tmds.Linux.LibC.CMSG_DATA(c))[i] = fds[i];
            Assert.True(Tmds.Linux.LibC.sendmsg(socket, &msg, 0) > 0);
        }
        foreach (int fd in fds) Tmds.Linux.LibC.close(fd);
    }
}
