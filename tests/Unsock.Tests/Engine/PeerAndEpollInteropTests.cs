using System.Net.Sockets;
using System.Text;
using Unsock.Core.Engine;

namespace Unsock.Tests.Engine;

/// <summary>The sock_diag peer lookup that pairs a server's accepted socket with its client, and the epoll fdinfo parser.</summary>
public unsafe class PeerAndEpollInteropTests
{
    private static ulong InodeOf(Socket socket)
    {
        var st = new Tmds.Linux.stat();
        Assert.Equal(0, Tmds.Linux.LibC.fstat((int)socket.Handle, &st));
        return (ulong)st.st_ino;
    }

    [Fact]
    public void TheAcceptedEndOfAUnixConnectionNamesItsClient()
    {
        string path = Path.Combine(Path.GetTempPath(), $"unsock-peer-{Environment.ProcessId}-{Guid.NewGuid():N}.sock");
        try
        {
            using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            listener.Bind(new UnixDomainSocketEndPoint(path));
            listener.Listen();
            using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            client.Connect(new UnixDomainSocketEndPoint(path));
            using var accepted = listener.Accept();
            using var diag = Interop.UnixDiag.TryOpen();
            Assert.NotNull(diag);
            Assert.Equal(InodeOf(client), diag.PeerOf(InodeOf(accepted)));
            Assert.Equal(InodeOf(accepted), diag.PeerOf(InodeOf(client)));
            Assert.Null(diag.PeerOf(InodeOf(listener))); // a listener has no peer
            Assert.Null(diag.PeerOf(uint.MaxValue - 7));  // no such socket
            Assert.True(diag.Exists(InodeOf(client)));    // and the plain lookups stay in step
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void EpollFdinfoEntriesAreReadAndOtherLinesRefused()
    {
        Assert.True(EpollTransfer.TryParseEntry(Encoding.ASCII.GetBytes("tfd:        4 events: 8000001d data: 1122334455667788  pos:0 ino:ae83 sdev:9"),
            out int tfd, out uint events, out ulong data, out ulong inode));
        Assert.Equal((4, 0x8000001du, 0x1122334455667788ul, 0xae83ul), (tfd, events, data, inode));
        foreach (string line in (string[])["pos:\t0", "flags:\t02", "ino:\t1038", "tfd: x events: 1 data: 1 ino:1",
                     "tfd: 4 events: 100000000 data: 1 ino:1", "tfd: 4 events: 1 data: 11223344556677889 ino:1", "tfd: 4 events: 1 data: 1"])
            Assert.False(EpollTransfer.TryParseEntry(Encoding.ASCII.GetBytes(line), out _, out _, out _, out _), line);
    }
}
