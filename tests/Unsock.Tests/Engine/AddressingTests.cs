using System.Net;
using Unsock.Core.Addressing;

namespace Unsock.Tests.Engine;

/// <summary>sockaddr_in, sockaddr_in6 and sockaddr_un as the kernel lays them out.</summary>
public class AddressingTests
{
    [Fact]
    public void Ipv4EndpointRoundTripsThroughSockaddrIn()
    {
        var ep = new InetEndpoint(IPAddress.Parse("127.1.2.3"), 8080);
        Span<byte> buf = stackalloc byte[28];
        Assert.Equal(16, ep.Encode(buf));
        Assert.Equal(new byte[] { 2, 0, 0x1F, 0x90, 127, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0 }, buf[..16].ToArray());
        Assert.True(InetEndpoint.TryDecode(buf[..16], out var back));
        Assert.Equal(ep, back);
    }

    [Fact]
    public void Ipv6EndpointKeepsScopeAndAcceptsTheShortRfc2133Size()
    {
        var ep = new InetEndpoint(IPAddress.Parse("fe80::1%7"), 443);
        Span<byte> buf = stackalloc byte[28];
        Assert.Equal(28, ep.Encode(buf));
        Assert.Equal(10, buf[0]);
        Assert.Equal(7, buf[24]);
        Assert.True(InetEndpoint.TryDecode(buf, out var back));
        Assert.Equal(7, back.Address.ScopeId);
        Assert.True(InetEndpoint.TryDecode(buf[..24], out var shortForm));
        Assert.Equal(443, shortForm.Port);
    }

    [Fact]
    public void ShortOrForeignSockaddrsAreNotInetEndpoints()
    {
        Assert.False(InetEndpoint.TryDecode(new byte[] { 2, 0, 0, 80, 127, 0, 0 }, out _));      // 7 bytes of AF_INET
        Assert.False(InetEndpoint.TryDecode(new byte[23] { 10, 0, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, out _));
        Assert.False(InetEndpoint.TryDecode(new byte[] { 1, 0, (byte)'/', 0 }, out _));         // AF_UNIX
    }

    [Fact]
    public void MappedIpv6AddressesMatchAsIpv4AndFamiliesConvert()
    {
        var mapped = new InetEndpoint(IPAddress.Parse("::ffff:127.0.0.1"), 1);
        Assert.Equal(IPAddress.Parse("127.0.0.1"), mapped.MatchAddress);
        var v4 = new InetEndpoint(IPAddress.Parse("127.0.0.1"), 5);
        Assert.True(v4.InFamily(ipv6: true).IsIPv6);
        Assert.Equal(v4, v4.InFamily(ipv6: true).InFamily(ipv6: false));
    }

    [Fact]
    public void UnixPathsUpTo107BytesFitSunPath()
    {
        Span<byte> buf = stackalloc byte[UnixAddress.MaxSize];
        string longest = "/" + new string('x', 106);
        Assert.True(UnixAddress.TryEncode(longest, buf, out int size));
        Assert.Equal(110, size);
        Assert.Equal(longest, UnixAddress.DecodePath(buf[..size]));
        Assert.False(UnixAddress.TryEncode(longest + "y", buf, out _));
        Assert.Null(UnixAddress.DecodePath(new byte[] { 1, 0 }));              // unnamed
        Assert.Null(UnixAddress.DecodePath(new byte[] { 1, 0, 0, (byte)'a' })); // abstract
    }
}
