using System.Buffers.Binary;
using Unsock.Core.ControlFiles;
using static Unsock.Tests.ControlFiles.ControlFileTestSupport;

namespace Unsock.Tests.ControlFiles;

public class ControlFileFormatTests
{
    public static TheoryData<string> Fixtures => new(AllFixtures);

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void Golden_file_is_452_bytes_and_reencodes_byte_identically(string name)
    {
        byte[] golden = Fixture(name);
        Assert.Equal(ControlFile.Size, golden.Length);

        var file = ControlFile.Parse(golden, name);

        Assert.Equal(golden, file.ToBytes());
    }

    [Fact]
    public void Golden_vsock_any_decodes_to_port_5678_cid_any()
    {
        var file = ControlFile.Parse(Fixture(VsockAny5678), VsockAny5678);

        Assert.Equal(ControlFileKind.Vsock, file.Kind);
        Assert.Equal(0UL, file.Options);
        Assert.Null(file.ProxyPath);
        Assert.True(file.Proxy.IsEmpty);
        Assert.Equal((ushort)40, file.DestinationFamily);
        Assert.Equal(5678u, file.VsockPort);
        Assert.Equal(0xFFFFFFFFu, file.VsockCid);
        Assert.Equal(16, file.Destination.Length);
        Assert.Equal(new VsockAddress(5678, VsockAddress.CidAny).ToBytes(), file.Destination.ToArray());
        Assert.Empty(file.Parameters);
        Assert.Equal("VSOCK port 5678, CID any", file.ToString());
    }

    [Fact]
    public void Golden_vsock_cid2_decodes_to_port_5000_host()
    {
        var file = ControlFile.Parse(Fixture(VsockCid2Port5000), VsockCid2Port5000);

        Assert.Equal(ControlFileKind.Vsock, file.Kind);
        Assert.Equal(5000u, file.VsockPort);
        Assert.Equal(2u, file.VsockCid);
        Assert.Empty(file.Parameters);
        Assert.Equal("VSOCK port 5000, CID 2 (host)", file.ToString());
    }

    [Fact]
    public void Golden_firecracker_decodes_to_proxy_path_and_guest_port()
    {
        var file = ControlFile.Parse(Fixture(Firecracker5678), Firecracker5678);

        Assert.Equal(ControlFileKind.FirecrackerProxy, file.Kind);
        Assert.Equal(1UL, file.Options);
        Assert.Equal("/path/to/firecracker/vsock", file.ProxyPath);
        Assert.Equal(110, file.Proxy.Length);
        Assert.Equal((ushort)1, BinaryPrimitives.ReadUInt16LittleEndian(file.Proxy.Span));
        Assert.Equal((ushort)40, file.DestinationFamily);
        Assert.Equal(5678u, file.VsockPort);
        Assert.Equal(0xFFFFFFFFu, file.VsockCid);
        Assert.Equal("Firecracker proxy /path/to/firecracker/vsock, guest port 5678", file.ToString());
    }

    [Fact]
    public void Golden_tipc_decodes_to_service_address_cluster_scope()
    {
        var file = ControlFile.Parse(Fixture(Tipc2_2_128_99_0), Tipc2_2_128_99_0);

        Assert.Equal(ControlFileKind.Tipc, file.Kind);
        Assert.Equal((ushort)30, file.DestinationFamily);
        Assert.Equal(16, file.Destination.Length);
        Assert.Equal((byte)2, file.TipcAddrType);
        Assert.Equal((sbyte)2, file.TipcScope);
        Assert.Equal(128u, file.TipcType);
        Assert.Equal(99u, file.TipcLower);
        Assert.Equal(0u, file.TipcUpper);
        Assert.Equal("TIPC service address, cluster scope, type 128, instance 99, upper 0", file.ToString());
    }

    [Fact]
    public void Factories_produce_the_golden_bytes()
    {
        Assert.Equal(Fixture(VsockAny5678), ControlFile.ForVsock(5678).ToBytes());
        Assert.Equal(Fixture(VsockCid2Port5000), ControlFile.ForVsock(5000, 2).ToBytes());
        Assert.Equal(Fixture(Firecracker5678), ControlFile.ForFirecracker("/path/to/firecracker/vsock", 5678).ToBytes());
        Assert.Equal(Fixture(Tipc2_2_128_99_0), ControlFile.ForTipc(2, 2, 128, 99, 0).ToBytes());
    }

    [Fact]
    public void ToBytes_returns_a_copy_the_caller_cannot_use_to_change_the_file()
    {
        var file = ControlFile.ForVsock(5678);
        byte[] bytes = file.ToBytes();
        bytes[164] = 0xAA;

        Assert.Equal(5678u, file.VsockPort);
        Assert.Equal(Fixture(VsockAny5678), file.ToBytes());
    }

    [Fact]
    public void Parameters_with_level_and_option_set_are_decoded_with_their_option_sized_values()
    {
        byte[] bytes = Fixture(VsockAny5678);
        WriteEntry(bytes, 0, level: 1, option: 20, value: Timeval(5, 500_000));
        WriteEntry(bytes, 1, level: 1, option: 0, value: [1, 0, 0, 0]);       // option 0: skipped
        WriteEntry(bytes, 2, level: 271, option: 135, value: FourU32(18888, 17, 2, 1));
        WriteEntry(bytes, 3, level: 1, option: 16, value: [1, 0, 0, 0, 0xEE]); // 4-byte int; the 0xEE stays in the file only

        var file = ControlFile.Parse(bytes, "with-parameters");

        Assert.Equal(3, file.Parameters.Count);
        Assert.Equal((1, 20), (file.Parameters[0].Level, file.Parameters[0].Option));
        Assert.Equal(Timeval(5, 500_000), file.Parameters[0].Value.ToArray());
        Assert.Equal((271, 135), (file.Parameters[1].Level, file.Parameters[1].Option));
        Assert.Equal(FourU32(18888, 17, 2, 1), file.Parameters[1].Value.ToArray());
        Assert.Equal((1, 16), (file.Parameters[2].Level, file.Parameters[2].Option));
        Assert.Equal(new byte[] { 1, 0, 0, 0 }, file.Parameters[2].Value.ToArray());
        Assert.Equal(bytes, file.ToBytes());
        Assert.Equal("VSOCK port 5678, CID any; setsockopt SOL_SOCKET SO_RCVTIMEO = 5.5s; SOL_TIPC TIPC_GROUP_JOIN = type 18888, instance 17, scope 2, flags 1; SOL_SOCKET option 16 = 1",
            file.ToString());
    }

    [Fact]
    public void Unknown_destination_family_is_kind_other_and_preserved_byte_for_byte()
    {
        byte[] bytes = Fixture(VsockAny5678);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(160), 1); // AF_UNIX destination
        "/run/other.sock"u8.CopyTo(bytes.AsSpan(162));
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(20), 110);
        bytes[24] = 7; // optionsCount: unused by the original, still kept
        bytes[449] = 9; // trailing reserved word

        var file = ControlFile.Parse(bytes, "other-family");

        Assert.Equal(ControlFileKind.Other, file.Kind);
        Assert.Equal((ushort)1, file.DestinationFamily);
        Assert.Equal(bytes.AsSpan(160, 110).ToArray(), file.Destination.ToArray());
        Assert.Equal(bytes, file.ToBytes());
        Assert.Equal("destination address family 1 (110 bytes)", file.ToString());
    }

    [Fact]
    public void Firecracker_proxy_path_may_fill_all_108_bytes_of_sun_path()
    {
        string path = "/" + new string('p', 107);

        var file = ControlFile.ForFirecracker(path, 1);

        Assert.Equal(path, file.ProxyPath);
        Assert.Equal(path, ControlFile.Parse(file.ToBytes(), "long").ProxyPath);
    }

    [Fact]
    public void Firecracker_factory_refuses_relative_and_overlong_paths()
    {
        var relative = Assert.Throws<ArgumentException>(() => ControlFile.ForFirecracker("fc/vsock", 1));
        Assert.Contains("fc/vsock", relative.Message);
        var tooLong = Assert.Throws<ArgumentException>(() => ControlFile.ForFirecracker("/" + new string('p', 108), 1));
        Assert.Contains("109 bytes", tooLong.Message);
    }

    public static TheoryData<string, int, byte[], string> CorruptFields => new()
    {
        { "magic", 0, [0x55, 0x4E, 0x53, 0x4C], "magic" },
        { "unknown option bit", 8, [3], "options is 0x3" },
        { "destLen 0", 20, [0, 0, 0, 0], "destLen is 0" },
        { "destLen beyond the sockaddr", 20, [200, 0, 0, 0], "destLen is 200" },
        { "vsock destLen 20", 20, [20, 0, 0, 0], "destLen is 20" },
        { "proxyLen without the proxy option", 16, [110, 0, 0, 0], "proxyLen is 110" },
    };

    [Theory]
    [MemberData(nameof(CorruptFields))]
    public void Corrupt_field_is_rejected_with_source_and_field_named(string what, int offset, byte[] patch, string expected)
    {
        byte[] bytes = Fixture(VsockAny5678);
        patch.CopyTo(bytes, offset);

        var e = Assert.Throws<ControlFileException>(() => ControlFile.Parse(bytes, $"/sockets/{what}.sock"));

        Assert.StartsWith($"/sockets/{what}.sock: not a usable unsock control file: ", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.Equal(22, e.Errno); // EINVAL, what the original answers for an unusable control file
    }

    public static TheoryData<string, int, byte[], string> CorruptFirecrackerFields => new()
    {
        { "proxy family", 32, [0, 0], "proxy family is 0" },
        { "empty proxy path", 34, [0], "proxy path is empty" },
        { "proxyLen too short", 16, [2, 0, 0, 0], "proxyLen is 2" },
        { "tipc destination", 160, [30, 0], "dest is family 30" },
    };

    [Theory]
    [MemberData(nameof(CorruptFirecrackerFields))]
    public void Corrupt_firecracker_field_is_rejected_with_field_named(string what, int offset, byte[] patch, string expected)
    {
        byte[] bytes = Fixture(Firecracker5678);
        patch.CopyTo(bytes, offset);

        var e = Assert.Throws<ControlFileException>(() => ControlFile.Parse(bytes, what));

        Assert.StartsWith($"{what}: ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(451)]
    [InlineData(453)]
    public void Wrong_size_is_rejected_naming_the_size(int size)
    {
        byte[] bytes = new byte[size];
        Fixture(VsockAny5678).AsSpan(0, Math.Min(size, 452)).CopyTo(bytes);

        var e = Assert.Throws<ControlFileException>(() => ControlFile.Parse(bytes, "x.sock"));

        Assert.Contains($"x.sock: not a usable unsock control file: size is {size} bytes", e.Message);
    }

    private static void WriteEntry(byte[] file, int index, int level, int option, byte[] value)
    {
        int offset = 288 + index * 40;
        BinaryPrimitives.WriteInt32LittleEndian(file.AsSpan(offset), level);
        BinaryPrimitives.WriteInt32LittleEndian(file.AsSpan(offset + 4), option);
        value.CopyTo(file, offset + 8);
    }

    internal static byte[] Timeval(long seconds, long microseconds)
    {
        var bytes = new byte[16];
        BinaryPrimitives.WriteInt64LittleEndian(bytes, seconds);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(8), microseconds);
        return bytes;
    }

    private static byte[] FourU32(uint a, uint b, uint c, uint d)
    {
        var bytes = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, a);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), b);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), c);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(12), d);
        return bytes;
    }
}
