using System.Net.Sockets;

namespace Unsock.Tests.Engine;

/// <summary>The exact per-inode lookup the sweep trusts before it removes a socket file.</summary>
public unsafe class UnixDiagTests
{
    private static ulong InodeOf(Socket socket)
    {
        var st = new Tmds.Linux.stat();
        Assert.Equal(0, Tmds.Linux.LibC.fstat((int)socket.Handle, &st));
        return (ulong)st.st_ino;
    }

    [Fact]
    public void ALiveUnixSocketExistsAndAClosedOneDoesNot()
    {
        using var diag = Interop.UnixDiag.TryOpen();
        Assert.NotNull(diag);
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        ulong inode = InodeOf(socket);
        Assert.True(diag.Exists(inode));
        socket.Dispose();
        Assert.False(diag.Exists(inode));
    }

    [Fact]
    public void ManyLookupsInARowStayInStep()
    {
        using var diag = Interop.UnixDiag.TryOpen();
        Assert.NotNull(diag);
        using var a = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        ulong inode = InodeOf(a);
        for (int i = 0; i < 200; i++)
        {
            Assert.True(diag.Exists(inode));
            Assert.False(diag.Exists(1)); // inode 1 is never a socket
        }
    }
}
