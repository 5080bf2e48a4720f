using System.Buffers.Binary;
using Tmds.Linux;
using Unsock.Core.ControlFiles;
using static Tmds.Linux.LibC;

namespace Unsock.Tests.ControlFiles;

public class ControlFileAddressTests
{
    [Fact]
    public void Vsock_address_is_16_bytes_laid_out_like_sockaddr_vm()
    {
        Assert.Equal(16, VsockAddress.Size);

        byte[] bytes = new VsockAddress(0x01020304, 0x0A0B0C0D).ToBytes();

        Assert.Equal(new byte[] { 40, 0, 0, 0, 4, 3, 2, 1, 0x0D, 0x0C, 0x0B, 0x0A, 0, 0, 0, 0 }, bytes);
        Assert.Equal(new VsockAddress(0x01020304, 0x0A0B0C0D), VsockAddress.Decode(bytes));
    }

    [Fact]
    public void Vsock_encode_clears_the_reserved_and_trailing_bytes()
    {
        byte[] buffer = Enumerable.Repeat((byte)0xFF, 16).ToArray();

        new VsockAddress(1, 2).Encode(buffer);

        Assert.Equal(new byte[] { 40, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0 }, buffer);
    }

    [Fact]
    public void Vsock_decode_refuses_another_family_and_short_input()
    {
        byte[] bytes = new VsockAddress(1, 2).ToBytes();
        bytes[0] = 30;

        Assert.Contains("family is 30", Assert.Throws<ArgumentException>(() => VsockAddress.Decode(bytes)).Message);
        Assert.Contains("got 15", Assert.Throws<ArgumentException>(() => VsockAddress.Decode(new byte[15])).Message);
    }

    [Fact]
    public void Tipc_address_is_16_bytes_laid_out_like_sockaddr_tipc()
    {
        Assert.Equal(16, TipcAddress.Size);

        byte[] bytes = new TipcAddress(TipcAddress.ServiceRange, -3, 0x01020304, 7, 0xFFFFFFFF).ToBytes();

        Assert.Equal(new byte[] { 30, 0, 1, 0xFD, 4, 3, 2, 1, 7, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF }, bytes);
        Assert.Equal(new TipcAddress(1, -3, 0x01020304, 7, 0xFFFFFFFF), TipcAddress.Decode(bytes));
    }

    [Theory]
    [InlineData(1, 1, "TIPC service range, zone scope, type 1000, lower 1, upper 9")]
    [InlineData(2, 3, "TIPC service address, node scope, type 1000, instance 1, upper 9")]
    [InlineData(3, 2, "TIPC socket address, cluster scope, ref 1000, node 1")]
    [InlineData(9, -2, "TIPC address type 9, scope -2, words 1000 1 9")]
    public void Tipc_address_describes_itself_by_address_type(byte addrType, sbyte scope, string expected)
    {
        Assert.Equal(expected, new TipcAddress(addrType, scope, 1000, 1, 9).ToString());
        Assert.Equal(expected, ControlFile.ForTipc(addrType, scope, 1000, 1, 9).ToString());
    }

    [Fact]
    public void Tipc_control_file_destination_is_the_encoded_sockaddr_tipc()
    {
        var file = ControlFile.ForTipc(1, 2, 18888, 10, 20);

        Assert.Equal(new TipcAddress(1, 2, 18888, 10, 20).ToBytes(), file.Destination.ToArray());
    }

    [Fact]
    public unsafe void Vsock_destination_binds_on_cid_any_on_this_kernel()
    {
        int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int socketErrno = fd < 0 ? errno : 0;
        Assert.True(fd >= 0, socketErrno == EAFNOSUPPORT
            ? "socket(AF_VSOCK) gives EAFNOSUPPORT: this kernel has no vsock; the VSOCK bind path cannot be checked here"
            : $"socket(AF_VSOCK) failed with errno {socketErrno}");
        try
        {
            // A port of our own so parallel test runs do not collide; retry on the rare clash.
            int bindErrno = 0;
            uint port = 0;
            for (int attempt = 0; attempt < 20; attempt++)
            {
                port = (uint)Random.Shared.Next(0x10000, 0x7FFFFFFF);
                var file = ControlFile.ForVsock(port);
                fixed (byte* address = file.Destination.Span)
                {
                    bindErrno = bind(fd, (sockaddr*)address, file.Destination.Length) == 0 ? 0 : errno;
                }
                if (bindErrno != EADDRINUSE)
                {
                    break;
                }
            }
            Assert.True(bindErrno == 0, $"bind(AF_VSOCK, CID any, port {port}) failed with errno {bindErrno}");

            byte[] bound = new byte[16];
            socklen_t length = 16;
            fixed (byte* p = bound)
            {
                Assert.Equal(0, getsockname(fd, (sockaddr*)p, &length));
            }
            var name = VsockAddress.Decode(bound);
            Assert.Equal(port, name.Port);
            Assert.Equal(VsockAddress.CidAny, name.Cid);
        }
        finally
        {
            close(fd);
        }
    }
}
