using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace Unsock.Core.ControlFiles;

/// <summary>
/// A control file of unsock 1.1.0: a 452-byte regular file standing where a socket file would be,
/// saying where the connection really goes (VSOCK, TIPC, or a Firecracker vsock proxy). The bytes
/// read are kept as they are, so <see cref="ToBytes"/> gives back exactly what was parsed.
/// </summary>
public sealed partial class ControlFile
{
    public const int Size = 452;
    public const ulong Magic = 0x4b534e55; // "UNSK" in little endian
    public const ulong FirecrackerProxyOption = 1;

    // Offsets of struct unsock_socket_info (packed, aligned(4)); host byte order, i.e. little endian on x86_64/arm64.
    internal const int MagicOffset = 0;
    internal const int OptionsOffset = 8;
    internal const int ProxyLenOffset = 16;
    internal const int DestLenOffset = 20;
    internal const int ProxyOffset = 32;
    internal const int DestOffset = 160;
    internal const int SockaddrCapacity = 128;
    internal const int ParametersOffset = 288;
    internal const int ParameterCount = 4;

    private const ushort AfUnix = 1;
    private const int SunPathOffset = 2;
    private const int SunPathCapacity = 108;
    private const int SockaddrUnSize = SunPathOffset + SunPathCapacity; // 110, the original's proxyLen

    private readonly byte[] _bytes;

    private ControlFile(byte[] bytes, ControlFileKind kind, ReadOnlyMemory<byte> proxy, string? proxyPath, IReadOnlyList<SocketParameter> parameters)
    {
        _bytes = bytes;
        Kind = kind;
        Proxy = proxy;
        ProxyPath = proxyPath;
        Parameters = parameters;
        Destination = new ReadOnlyMemory<byte>(bytes, DestOffset, (int)BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(DestLenOffset)));
        if (DestinationFamily == VsockAddress.Family && Destination.Length >= VsockAddress.Size)
        {
            var vsock = VsockAddress.Decode(Destination.Span);
            VsockPort = vsock.Port;
            VsockCid = vsock.Cid;
        }
        else if (kind == ControlFileKind.Tipc)
        {
            var tipc = TipcAddress.Decode(Destination.Span);
            TipcAddrType = tipc.AddrType;
            TipcScope = tipc.Scope;
            TipcType = tipc.Type;
            TipcLower = tipc.Lower;
            TipcUpper = tipc.Upper;
        }
    }

    public ControlFileKind Kind { get; }

    /// <summary>Option bits; <see cref="FirecrackerProxyOption"/> is the only one defined.</summary>
    public ulong Options => BinaryPrimitives.ReadUInt64LittleEndian(_bytes.AsSpan(OptionsOffset));

    /// <summary>Firecracker: the sockaddr_un of the multiplexer, proxyLen bytes, ready for connect. Empty otherwise.</summary>
    public ReadOnlyMemory<byte> Proxy { get; }

    /// <summary>Firecracker: the multiplexer's AF_UNIX path. Null otherwise.</summary>
    public string? ProxyPath { get; }

    /// <summary>40 for AF_VSOCK, 30 for AF_TIPC.</summary>
    public ushort DestinationFamily => BinaryPrimitives.ReadUInt16LittleEndian(_bytes.AsSpan(DestOffset));

    /// <summary>The destination sockaddr, destLen bytes, ready to pass to bind/connect.</summary>
    public ReadOnlyMemory<byte> Destination { get; }

    public uint VsockPort { get; }
    public uint VsockCid { get; }
    public byte TipcAddrType { get; }
    public sbyte TipcScope { get; }
    public uint TipcType { get; }
    public uint TipcLower { get; }
    public uint TipcUpper { get; }

    /// <summary>The setsockopt entries that apply: those with level and option both non-zero.</summary>
    public IReadOnlyList<SocketParameter> Parameters { get; }

    public static ControlFile ForVsock(uint port, uint cid = VsockAddress.CidAny)
    {
        var bytes = NewHeader(options: 0, proxyLen: 0, destLen: VsockAddress.Size);
        new VsockAddress(port, cid).Encode(bytes.AsSpan(DestOffset));
        return Parse(bytes, "VSOCK control file");
    }

    /// <summary>A control file for a Firecracker vsock multiplexer at <paramref name="proxyPath"/> (absolute) and a guest port.</summary>
    public static ControlFile ForFirecracker(string proxyPath, uint port)
    {
        ArgumentNullException.ThrowIfNull(proxyPath);
        // Plain messages (no "(Parameter ...)"): the control-file tool shows them to users as they are.
        if (!proxyPath.StartsWith('/'))
        {
            throw new ArgumentException($"the Firecracker proxy path must be absolute: '{proxyPath}'");
        }
        if (proxyPath.Contains('\0'))
        {
            throw new ArgumentException("the Firecracker proxy path contains a NUL character");
        }
        byte[] path = Encoding.UTF8.GetBytes(proxyPath);
        if (path.Length > SunPathCapacity)
        {
            throw new ArgumentException($"the Firecracker proxy path is {path.Length} bytes, a sockaddr_un holds at most {SunPathCapacity}: '{proxyPath}'");
        }
        var bytes = NewHeader(FirecrackerProxyOption, SockaddrUnSize, VsockAddress.Size);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(ProxyOffset), AfUnix);
        path.CopyTo(bytes.AsSpan(ProxyOffset + SunPathOffset));
        // The original leaves the CID at "any": the multiplexer only needs the port.
        new VsockAddress(port, VsockAddress.CidAny).Encode(bytes.AsSpan(DestOffset));
        return Parse(bytes, "Firecracker control file");
    }

    public static ControlFile ForTipc(byte addrType, sbyte scope, uint type, uint lower, uint upper)
    {
        var bytes = NewHeader(options: 0, proxyLen: 0, destLen: TipcAddress.Size);
        new TipcAddress(addrType, scope, type, lower, upper).Encode(bytes.AsSpan(DestOffset));
        return Parse(bytes, "TIPC control file");
    }

    private static byte[] NewHeader(ulong options, uint proxyLen, uint destLen)
    {
        var bytes = new byte[Size];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(MagicOffset), Magic);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(OptionsOffset), options);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(ProxyLenOffset), proxyLen);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(DestLenOffset), destLen);
        return bytes;
    }

    /// <summary>
    /// Decodes a control file. <paramref name="source"/> names it in error messages (usually the path).
    /// Throws <see cref="ControlFileException"/> naming the source and the field when the bytes are not
    /// a usable control file.
    /// </summary>
    public static ControlFile Parse(ReadOnlySpan<byte> bytes, string source)
    {
        if (bytes.Length != Size)
        {
            throw Invalid(source, "size", $"{bytes.Length} bytes, a control file has exactly {Size}");
        }
        ulong magic = BinaryPrimitives.ReadUInt64LittleEndian(bytes[MagicOffset..]);
        if (magic != Magic)
        {
            throw Invalid(source, "magic", $"0x{magic:x16}, expected 0x{Magic:x16} (\"UNSK\")");
        }
        ulong options = BinaryPrimitives.ReadUInt64LittleEndian(bytes[OptionsOffset..]);
        if ((options & ~FirecrackerProxyOption) != 0)
        {
            throw Invalid(source, "options", $"0x{options:x}: only bit 0x1 (Firecracker proxy) is defined");
        }
        uint proxyLen = BinaryPrimitives.ReadUInt32LittleEndian(bytes[ProxyLenOffset..]);
        uint destLen = BinaryPrimitives.ReadUInt32LittleEndian(bytes[DestLenOffset..]);
        if (destLen < 2 || destLen > SockaddrCapacity)
        {
            throw Invalid(source, "destLen", $"{destLen}, must be 2..{SockaddrCapacity} (a sockaddr)");
        }
        ushort destFamily = BinaryPrimitives.ReadUInt16LittleEndian(bytes[DestOffset..]);

        ControlFileKind kind;
        ReadOnlyMemory<byte> proxy = ReadOnlyMemory<byte>.Empty;
        string? proxyPath = null;
        var copy = bytes.ToArray();
        if (options == FirecrackerProxyOption)
        {
            if (proxyLen <= SunPathOffset || proxyLen > SockaddrCapacity)
            {
                throw Invalid(source, "proxyLen", $"{proxyLen}, a Firecracker proxy needs a sockaddr_un of 3..{SockaddrCapacity} bytes (normally {SockaddrUnSize})");
            }
            ushort proxyFamily = BinaryPrimitives.ReadUInt16LittleEndian(bytes[ProxyOffset..]);
            if (proxyFamily != AfUnix)
            {
                throw Invalid(source, "proxy family", $"{proxyFamily}, a Firecracker proxy is AF_UNIX ({AfUnix})");
            }
            var pathBytes = bytes.Slice(ProxyOffset + SunPathOffset, (int)proxyLen - SunPathOffset);
            int nul = pathBytes.IndexOf((byte)0);
            if (nul >= 0)
            {
                pathBytes = pathBytes[..nul];
            }
            if (pathBytes.IsEmpty)
            {
                throw Invalid(source, "proxy path", "empty");
            }
            if (destFamily != VsockAddress.Family || destLen != VsockAddress.Size)
            {
                throw Invalid(source, "dest", $"family {destFamily} with destLen {destLen}, a Firecracker proxy needs a sockaddr_vm (family {VsockAddress.Family}, {VsockAddress.Size} bytes)");
            }
            kind = ControlFileKind.FirecrackerProxy;
            proxy = new ReadOnlyMemory<byte>(copy, ProxyOffset, (int)proxyLen);
            proxyPath = Encoding.UTF8.GetString(pathBytes);
        }
        else
        {
            if (proxyLen != 0)
            {
                throw Invalid(source, "proxyLen", $"{proxyLen} without the Firecracker proxy option, must be 0");
            }
            kind = destFamily switch
            {
                VsockAddress.Family => ControlFileKind.Vsock,
                TipcAddress.Family => ControlFileKind.Tipc,
                _ => ControlFileKind.Other,
            };
            if (kind != ControlFileKind.Other && destLen != 16)
            {
                throw Invalid(source, "destLen", $"{destLen} for a {(kind == ControlFileKind.Vsock ? "sockaddr_vm" : "sockaddr_tipc")}, must be 16");
            }
        }

        var parameters = new List<SocketParameter>(ParameterCount);
        for (int i = 0; i < ParameterCount; i++)
        {
            if (SocketParameter.Decode(bytes.Slice(ParametersOffset + i * SocketParameter.EntrySize, SocketParameter.EntrySize)) is { } parameter)
            {
                parameters.Add(parameter);
            }
        }
        return new ControlFile(copy, kind, proxy, proxyPath, parameters.AsReadOnly());
    }

    private static ControlFileException Invalid(string source, string field, string problem)
        => new($"{source}: not a usable unsock control file: {field} is {problem}");

    /// <summary>The 452 bytes, exactly as parsed or built.</summary>
    public byte[] ToBytes() => (byte[])_bytes.Clone();

    /// <summary>What the file says, e.g. "VSOCK port 5678, CID any".</summary>
    public override string ToString()
    {
        string destination = Kind switch
        {
            ControlFileKind.Vsock => new VsockAddress(VsockPort, VsockCid).ToString(),
            ControlFileKind.FirecrackerProxy => string.Create(CultureInfo.InvariantCulture, $"Firecracker proxy {ProxyPath}, guest port {VsockPort}"),
            ControlFileKind.Tipc => new TipcAddress(TipcAddrType, TipcScope, TipcType, TipcLower, TipcUpper).ToString(),
            _ => string.Create(CultureInfo.InvariantCulture, $"destination address family {DestinationFamily} ({Destination.Length} bytes)"),
        };
        return Parameters.Count == 0
            ? destination
            : destination + "; setsockopt " + string.Join("; ", Parameters.Select(p => p.Describe()));
    }
}
