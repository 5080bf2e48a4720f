using System.Buffers.Binary;

namespace Unsock.Core.ControlFiles;

/// <summary>A <c>struct sockaddr_vm</c>: u16 family 40, u16 reserved, u32 port, u32 CID, 4 zero bytes (16 bytes).</summary>
public readonly record struct VsockAddress(uint Port, uint Cid)
{
    public const int Size = 16;
    public const ushort Family = 40; // AF_VSOCK
    public const uint CidAny = 0xFFFFFFFF;
    public const uint CidHypervisor = 0;
    public const uint CidLocal = 1;
    public const uint CidHost = 2;
    public const uint PortAny = 0xFFFFFFFF;

    public void Encode(Span<byte> destination)
    {
        if (destination.Length < Size)
        {
            throw new ArgumentException($"a sockaddr_vm needs {Size} bytes, the buffer has {destination.Length}", nameof(destination));
        }
        destination[..Size].Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(destination, Family);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], Port);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[8..], Cid);
    }

    public byte[] ToBytes()
    {
        var bytes = new byte[Size];
        Encode(bytes);
        return bytes;
    }

    public static VsockAddress Decode(ReadOnlySpan<byte> source)
    {
        if (source.Length < Size)
        {
            throw new ArgumentException($"a sockaddr_vm is {Size} bytes, got {source.Length}", nameof(source));
        }
        ushort family = BinaryPrimitives.ReadUInt16LittleEndian(source);
        if (family != Family)
        {
            throw new ArgumentException($"sockaddr_vm family is {family}, expected {Family} (AF_VSOCK)", nameof(source));
        }
        return new VsockAddress(BinaryPrimitives.ReadUInt32LittleEndian(source[4..]), BinaryPrimitives.ReadUInt32LittleEndian(source[8..]));
    }

    /// <summary>"CID any", "CID 2 (host)", "CID 42".</summary>
    public static string DescribeCid(uint cid) => cid switch
    {
        CidAny => "CID any",
        CidHypervisor => "CID 0 (hypervisor)",
        CidLocal => "CID 1 (local)",
        CidHost => "CID 2 (host)",
        _ => $"CID {cid}",
    };

    public override string ToString() => $"VSOCK port {(Port == PortAny ? "any" : Port.ToString(System.Globalization.CultureInfo.InvariantCulture))}, {DescribeCid(Cid)}";
}
