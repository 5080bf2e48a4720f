using System.Net.Sockets;

namespace Unsock.Tests.Engine;

/// <summary>From a socket file to its socket: what tells a stale file from one whose socket is bound but not listening.</summary>
public unsafe class UnixSocketFilesTests
{
    private static (ulong Device, ulong Inode) FileIds(string path)
    {
        var st = new Tmds.Linux.stat();
        fixed (byte* p = System.Text.Encoding.UTF8.GetBytes(path + "\0")) Assert.Equal(0, Tmds.Linux.LibC.lstat(p, &st));
        return ((ulong)st.st_dev, (ulong)st.st_ino);
    }

    [Fact]
    public void ABoundSocketThatDoesNotListenIsFoundAndAClosedOneIsNot()
    {
        var dir = Directory.CreateTempSubdirectory("unsock-diag-");
        try
        {
            string path = Path.Combine(dir.FullName, "a.sock");
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            socket.Bind(new UnixDomainSocketEndPoint(path));
            var (device, inode) = FileIds(path);
            Assert.True(Interop.UnixSocketFiles.IsBound(device, inode));
            File.WriteAllText(Path.Combine(dir.FullName, "plain"), "");
            var plain = FileIds(Path.Combine(dir.FullName, "plain"));
            Assert.False(Interop.UnixSocketFiles.IsBound(plain.Device, plain.Inode));
            socket.Dispose();
            Assert.False(Interop.UnixSocketFiles.IsBound(device, inode));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
