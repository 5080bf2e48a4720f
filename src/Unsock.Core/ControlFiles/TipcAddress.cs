using System.Buffers.Binary;
using System.Globalization;

namespace Unsock.Core.ControlFiles;

/// <summary>
/// A <c>struct sockaddr_tipc</c>: u16 family 30, u8 addrtype, i8 scope, then three u32 whose meaning
/// depends on addrtype (service range: type, lower, upper; service address: type, instance, domain;
/// socket address: ref, node, unused). 16 bytes.
/// </summary>
public readonly record struct TipcAddress(byte AddrType, sbyte Scope, uint Type, uint Lower, uint Upper)
{
    public const int Size = 16;
    public const ushort Family = 30; // AF_TIPC
    public const byte ServiceRange = 1;   // TIPC_SERVICE_RANGE (TIPC_ADDR_NAMESEQ)
    public const byte ServiceAddress = 2; // TIPC_SERVICE_ADDR (TIPC_ADDR_NAME)
    public const byte SocketAddress = 3;  // TIPC_SOCKET_ADDR (TIPC_ADDR_ID)
    public const sbyte ZoneScope = 1, ClusterScope = 2, NodeScope = 3;

    public void Encode(Span<byte> destination)
    {
        if (destination.Length < Size)
        {
            throw new ArgumentException($"a sockaddr_tipc needs {Size} bytes, the buffer has {destination.Length}", nameof(destination));
        }
        BinaryPrimitives.WriteUInt16LittleEndian(destination, Family);
        destination[2] = AddrType;
        destination[3] = unchecked((byte)Scope);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], Type);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[8..], Lower);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[12..], Upper);
    }

    public byte[] ToBytes()
    {
        var bytes = new byte[Size];
        Encode(bytes);
        return bytes;
    }

    public static TipcAddress Decode(ReadOnlySpan<byte> source)
    {
        if (source.Length < Size)
        {
            throw new ArgumentException($"a sockaddr_tipc is {Size} bytes, got {source.Length}", nameof(source));
        }
        ushort family = BinaryPrimitives.ReadUInt16LittleEndian(source);
        if (family != Family)
        {
            throw new ArgumentException($"sockaddr_tipc family is {family}, expected {Family} (AF_TIPC)", nameof(source));
        }
        return new TipcAddress(source[2], unchecked((sbyte)source[3]),
            BinaryPrimitives.ReadUInt32LittleEndian(source[4..]),
            BinaryPrimitives.ReadUInt32LittleEndian(source[8..]),
            BinaryPrimitives.ReadUInt32LittleEndian(source[12..]));
    }

    public override string ToString()
    {
        string scope = Scope switch
        {
            ZoneScope => "zone scope",
            ClusterScope => "cluster scope",
            NodeScope => "node scope",
            _ => $"scope {Scope}",
        };
        string U(uint v) => v.ToString(CultureInfo.InvariantCulture);
        return AddrType switch
        {
            ServiceRange => $"TIPC service range, {scope}, type {U(Type)}, lower {U(Lower)}, upper {U(Upper)}",
            ServiceAddress => $"TIPC service address, {scope}, type {U(Type)}, instance {U(Lower)}, upper {U(Upper)}",
            SocketAddress => $"TIPC socket address, {scope}, ref {U(Type)}, node {U(Lower)}",
            _ => $"TIPC address type {AddrType}, {scope}, words {U(Type)} {U(Lower)} {U(Upper)}",
        };
    }
}
