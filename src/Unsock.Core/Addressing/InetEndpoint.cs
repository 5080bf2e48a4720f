using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Unsock.Core.Addressing;

/// <summary>An IPv4 or IPv6 address and port as a program sees it, with the kernel's sockaddr encodings.</summary>
public readonly record struct InetEndpoint(IPAddress Address, int Port)
{
    public const int SockAddrInSize = 16;
    public const int SockAddrIn6Size = 28;
    // The kernel accepts an IPv6 sockaddr without the scope id (RFC 2133 size).
    public const int SockAddrIn6MinSize = 24;

    public bool IsIPv6 => Address.AddressFamily == AddressFamily.InterNetworkV6;

    /// <summary>The address used for matching rules: IPv4-mapped IPv6 addresses count as IPv4.</summary>
    public IPAddress MatchAddress => IsIPv6 && Address.IsIPv4MappedToIPv6 ? Address.MapToIPv4() : Address;

    public int SockAddrSize => IsIPv6 ? SockAddrIn6Size : SockAddrInSize;

    /// <summary>Decodes a sockaddr_in or sockaddr_in6; false for any other family or a short buffer.</summary>
    public static bool TryDecode(ReadOnlySpan<byte> sockaddr, out InetEndpoint endpoint)
    {
        endpoint = default;
        if (sockaddr.Length < 2) return false;
        ushort family = BinaryPrimitives.ReadUInt16LittleEndian(sockaddr);
        if (family == 2 && sockaddr.Length >= SockAddrInSize)
        {
            endpoint = new(IPv4(BinaryPrimitives.ReadUInt32LittleEndian(sockaddr[4..])), BinaryPrimitives.ReadUInt16BigEndian(sockaddr[2..]));
            return true;
        }
        if (family == 10 && sockaddr.Length >= SockAddrIn6MinSize)
        {
            long scope = sockaddr.Length >= SockAddrIn6Size ? BinaryPrimitives.ReadUInt32LittleEndian(sockaddr[24..]) : 0;
            endpoint = new(new IPAddress(sockaddr.Slice(8, 16), scope), BinaryPrimitives.ReadUInt16BigEndian(sockaddr[2..]));
            return true;
        }
        return false;
    }

    // This thread's last IPv4 addresses (in network order as the sockaddr has them): a supervisor decodes the same few
    // over and over, one IPAddress object each time otherwise. IPv4 IPAddress objects are never changed by us.
    [ThreadStatic] private static (uint Bits, IPAddress Address)[]? t_ipv4;
    [ThreadStatic] private static int t_nextIPv4;

    private static IPAddress IPv4(uint networkOrder)
    {
        var cache = t_ipv4 ??= new (uint, IPAddress)[8];
        foreach (var (bits, address) in cache)
            if (address is not null && bits == networkOrder) return address;
        var made = new IPAddress(networkOrder);
        cache[t_nextIPv4] = (networkOrder, made);
        t_nextIPv4 = (t_nextIPv4 + 1) % cache.Length;
        return made;
    }

    /// <summary>Writes the sockaddr (16 or 28 bytes) and returns its size.</summary>
    public int Encode(Span<byte> destination)
    {
        int size = SockAddrSize;
        destination[..size].Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(destination, (ushort)(IsIPv6 ? 10 : 2));
        BinaryPrimitives.WriteUInt16BigEndian(destination[2..], (ushort)Port);
        if (IsIPv6)
        {
            Address.TryWriteBytes(destination.Slice(8, 16), out _);
            BinaryPrimitives.WriteUInt32LittleEndian(destination[24..], (uint)Address.ScopeId);
        }
        else
        {
            Address.TryWriteBytes(destination.Slice(4, 4), out _);
        }
        return size;
    }

    /// <summary>The same endpoint in the family of a socket created as <paramref name="ipv6"/>.</summary>
    public InetEndpoint InFamily(bool ipv6) =>
        ipv6 == IsIPv6 ? this : new(ipv6 ? Address.MapToIPv6() : Address.MapToIPv4(), Port);

    public override string ToString() =>
        IsIPv6 ? $"[{Address}]:{Port}" : $"{Address}:{Port}";
}
