using System.Net;
using Unsock.Core.Policies;

namespace Unsock.Tests.Policies;


public class PolicyPathTests
{
    private static string Expand(string template, string address, int port, RuleProtocol protocol = RuleProtocol.Tcp) =>
        new UnixAction(template).ResolvePath(IPAddress.Parse(address), port, protocol);

    [Fact]
    public void Directory_action_uses_the_original_port_dot_sock_layout()
    {
        var action = new DirectoryAction("/tmp/unsockets");

        Assert.Equal("/tmp/unsockets/7000.sock", action.ResolvePath(IPAddress.Parse("127.175.0.0"), 7000, RuleProtocol.Tcp));
        Assert.Equal("/tmp/unsockets/0.sock", action.ResolvePath(IPAddress.Parse("10.0.0.1"), 0, RuleProtocol.Tcp));
    }

    [Fact]
    public void Directory_with_trailing_slash_gives_one_slash()
    {
        Assert.Equal("/tmp/unsockets/80.sock",
            new DirectoryAction("/tmp/unsockets/").ResolvePath(IPAddress.Loopback, 80, RuleProtocol.Tcp));
    }

    [Theory]
    [InlineData("/run/web/%p.sock", "127.0.0.1", 8000, "/run/web/8000.sock")]
    [InlineData("/run/%a/%p", "192.0.2.7", 80, "/run/192.0.2.7/80")]
    [InlineData("/run/%t-%p", "127.0.0.1", 53, "/run/tcp-53")]
    [InlineData("/run/100%%/%p%%", "127.0.0.1", 1, "/run/100%/1%")]
    [InlineData("/run/%%p", "127.0.0.1", 1, "/run/%p")]
    [InlineData("/run/static", "127.0.0.1", 1, "/run/static")]
    [InlineData("/%p/%p", "127.0.0.1", 65535, "/65535/65535")]
    public void Template_placeholders_expand(string template, string address, int port, string expected)
    {
        Assert.Equal(expected, Expand(template, address, port));
    }

    [Fact]
    public void Template_protocol_placeholder_says_udp_for_datagram_sockets()
    {
        Assert.Equal("/run/udp/53", Expand("/run/%t/%p", "127.0.0.1", 53, RuleProtocol.Udp));
    }

    [Theory]
    [InlineData("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1")]
    [InlineData("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1")]
    [InlineData("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1")]
    [InlineData("::1", "::1")]
    [InlineData("::", "::")]
    [InlineData("fe80::1%1", "fe80::1")]
    [InlineData("2001:DB8::A", "2001:db8::a")]
    [InlineData("1:0:0:2:0:0:0:3", "1:0:0:2::3")]
    [InlineData("1:0:0:0:0:0:0:0", "1::")]
    [InlineData("::127.0.0.1", "::7f00:1")]
    public void Template_address_of_ipv6_is_rfc5952(string address, string expected)
    {
        Assert.Equal($"/run/{expected}.sock", Expand("/run/%a.sock", address, 1));
    }

    [Fact]
    public void Template_address_of_mapped_ipv6_is_plain_ipv4()
    {
        Assert.Equal("/run/127.0.0.1/80", Expand("/run/%a/%p", "::ffff:127.0.0.1", 80));
    }

    [Fact]
    public void Rule_resolves_the_path_of_its_redirect()
    {
        Policy policy = Policy.Parse("""
            { "rules": [ { "port": 8000, "unix": "/run/web/%p.sock" }, { "reject": "EACCES" } ] }
            """, "p.json");
        IPAddress loopback = IPAddress.Loopback;

        PolicyRule? rule = policy.Match(RuleDirection.Bind, RuleProtocol.Tcp, loopback, 8000);

        Assert.Equal("/run/web/8000.sock", rule?.ResolvePath(loopback, 8000, RuleProtocol.Tcp));
        Assert.Throws<InvalidOperationException>(() => policy.Rules[1].ResolvePath(loopback, 1, RuleProtocol.Tcp));
    }

    [Fact]
    public void Resolving_needs_a_real_port_and_protocol()
    {
        var action = new UnixAction("/run/%p");

        Assert.Throws<ArgumentOutOfRangeException>(() => action.ResolvePath(IPAddress.Loopback, 65536, RuleProtocol.Tcp));
        Assert.Throws<ArgumentOutOfRangeException>(() => action.ResolvePath(IPAddress.Loopback, -1, RuleProtocol.Tcp));
        Assert.Throws<ArgumentOutOfRangeException>(() => action.ResolvePath(IPAddress.Loopback, 1, RuleProtocol.Any));
    }

    [Fact]
    public void Actions_built_in_code_are_checked_like_parsed_ones()
    {
        Assert.Throws<ArgumentException>(() => new UnixAction("relative/%p"));
        Assert.Throws<ArgumentException>(() => new UnixAction("/run/%q"));
        Assert.Throws<ArgumentException>(() => new DirectoryAction("relative"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new RejectAction(0, "X"));
        Assert.Throws<ArgumentException>(() => new PolicyRule(0, RuleDirection.Any, RuleProtocol.Tcp, null, null, new AllowAction(), mode: 0x180));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PolicyRule(0, RuleDirection.Any, RuleProtocol.Tcp, null, null, new DirectoryAction("/d"), mode: 0x200));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PortRange(5, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PortRange(0, 65536));
    }
}
