using System.Buffers.Binary;
using Tmds.Linux;
using Unsock.Core.ControlFiles;
using static Tmds.Linux.LibC;
using static Unsock.Tests.ControlFiles.ControlFileTestSupport;

namespace Unsock.Tests.ControlFiles;

public class ControlFileParameterTests
{
    [Fact]
    public unsafe void Receive_timeout_from_a_control_file_is_set_on_a_real_socket()
    {
        byte[] bytes = Fixture(VsockAny5678);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(288), 1);  // SOL_SOCKET
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(292), 20); // SO_RCVTIMEO
        ControlFileFormatTests.Timeval(5, 500_000).CopyTo(bytes, 296);
        var parameter = Assert.Single(ControlFile.Parse(bytes, "timeout").Parameters);
        int fd = NewUnixSocket();
        try
        {
            parameter.ApplyTo(fd);

            long* timeval = stackalloc long[2];
            socklen_t length = 16;
            Assert.Equal(0, getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, timeval, &length));
            Assert.Equal(16u, (uint)length);
            Assert.Equal(5L, timeval[0]);
            Assert.Equal(500_000L, timeval[1]);
        }
        finally
        {
            close(fd);
        }
    }

    [Fact]
    public unsafe void Send_timeout_factory_matches_the_timeval_layout()
    {
        var parameter = SocketParameter.Timeout(SocketParameter.SoSendTimeout, TimeSpan.FromMilliseconds(2500));
        Assert.Equal(ControlFileFormatTests.Timeval(2, 500_000), parameter.Value.ToArray());
        int fd = NewUnixSocket();
        try
        {
            parameter.ApplyTo(fd);

            long* timeval = stackalloc long[2];
            socklen_t length = 16;
            Assert.Equal(0, getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, timeval, &length));
            Assert.Equal(2L, timeval[0]);
            Assert.Equal(500_000L, timeval[1]);
        }
        finally
        {
            close(fd);
        }
    }

    [Fact]
    public unsafe void Other_options_are_set_as_a_4_byte_int()
    {
        var parameter = SocketParameter.Int32(SOL_SOCKET, SO_PASSCRED, 1);
        Assert.Equal(4, parameter.Value.Length);
        int fd = NewUnixSocket();
        try
        {
            parameter.ApplyTo(fd);

            int value = 0;
            socklen_t length = 4;
            Assert.Equal(0, getsockopt(fd, SOL_SOCKET, SO_PASSCRED, &value, &length));
            Assert.Equal(1, value);
        }
        finally
        {
            close(fd);
        }
    }

    [Fact]
    public void A_refused_option_throws_with_the_errno_and_the_option_named()
    {
        var parameter = SocketParameter.Int32(SOL_SOCKET, 9999, 1);
        int fd = NewUnixSocket();
        try
        {
            Assert.Equal(ENOPROTOOPT, parameter.TryApplyTo(fd));
            var e = Assert.Throws<SocketParameterException>(() => parameter.ApplyTo(fd));

            Assert.Equal(ENOPROTOOPT, e.Errno);
            Assert.Contains("SOL_SOCKET option 9999 = 1", e.Message);
            Assert.Contains($"errno {ENOPROTOOPT}", e.Message);
        }
        finally
        {
            close(fd);
        }
    }

    [Fact]
    public void A_descriptor_that_is_not_a_socket_is_reported_as_ENOTSOCK()
    {
        using var devNull = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.ReadWrite);

        Assert.Equal(ENOTSOCK, SocketParameter.Int32(SOL_SOCKET, SO_PASSCRED, 1).TryApplyTo((int)devNull.DangerousGetHandle()));
    }

    [Theory]
    [InlineData(1, 20, 16)]
    [InlineData(1, 21, 16)]
    [InlineData(271, 135, 16)]
    [InlineData(1, 16, 4)]
    [InlineData(6, 1, 4)]
    [InlineData(271, 20, 4)]
    public void Value_length_follows_the_original(int level, int option, int expected)
    {
        Assert.Equal(expected, SocketParameter.ValueLength(level, option));
    }

    [Fact]
    public void Tipc_group_join_value_is_four_u32()
    {
        var parameter = SocketParameter.TipcGroup(18888, 17, 2, 1);

        Assert.Equal((271, 135), (parameter.Level, parameter.Option));
        Assert.Equal(new byte[] { 0xC8, 0x49, 0, 0, 17, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0 }, parameter.Value.ToArray());
    }

    private static int NewUnixSocket()
    {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        Assert.True(fd >= 0, $"socket(AF_UNIX) failed: errno {errno}");
        return fd;
    }
}
