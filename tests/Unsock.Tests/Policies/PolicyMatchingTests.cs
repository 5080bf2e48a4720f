using System.Net;
using Unsock.Core.Policies;

namespace Unsock.Tests.Policies;


public class PolicyMatchingTests
{
    private static Policy Rules(string rules) => Policy.Parse($$"""{ "rules": [ {{rules}} ] }""", "m.json");

    private static int? MatchIndex(Policy policy, string address, int port = 80,
        RuleDirection direction = RuleDirection.Connect, RuleProtocol protocol = RuleProtocol.Tcp) =>
        policy.Match(direction, protocol, IPAddress.Parse(address), port)?.Index;

    [Theory]
    [InlineData("127.0.0.1", true)]
    [InlineData("127.255.255.255", true)]
    [InlineData("127.175.0.0", true)]
    [InlineData("128.0.0.1", false)]
    [InlineData("126.255.255.255", false)]
    [InlineData("::ffff:127.0.0.1", true)]
    [InlineData("::ffff:10.0.0.1", false)]
    [InlineData("::1", false)]
    [InlineData("::127.0.0.1", false)]
    public void Ipv4_cidr_with_host_bits_matches_the_masked_network(string address, bool matches)
    {
        Policy policy = Rules("""{ "address": "127.0.0.1/8", "allow": true }""");

        Assert.Equal(matches ? 0 : null, MatchIndex(policy, address));
    }

    [Theory]
    [InlineData("10.1.2.3", true)]
    [InlineData("10.1.2.4", false)]
    [InlineData("::ffff:10.1.2.3", true)]
    public void Single_ipv4_address_means_slash_32(string address, bool matches)
    {
        Policy policy = Rules("""{ "address": "10.1.2.3", "allow": true }""");

        Assert.Equal(matches ? 0 : null, MatchIndex(policy, address));
    }

    [Theory]
    [InlineData("0.0.0.0", true)]
    [InlineData("255.255.255.255", true)]
    [InlineData("::ffff:8.8.8.8", true)]
    [InlineData("::", false)]
    [InlineData("2001:db8::1", false)]
    public void Ipv4_slash_0_matches_every_ipv4_address_and_no_ipv6_address(string address, bool matches)
    {
        Policy policy = Rules("""{ "address": "1.2.3.4/0", "allow": true }""");

        Assert.Equal(matches ? 0 : null, MatchIndex(policy, address));
    }

    [Theory]
    [InlineData("2001:db8::", true)]
    [InlineData("2001:db8:0:0:ffff:ffff:ffff:ffff", true)]
    [InlineData("2001:db8:0:1::", false)]
    [InlineData("fe80::1", false)]
    [InlineData("127.0.0.1", false)]
    public void Ipv6_cidr_with_host_bits_matches_the_masked_network(string address, bool matches)
    {
        Policy policy = Rules("""{ "address": "2001:db8::abcd/64", "allow": true }""");

        Assert.Equal(matches ? 0 : null, MatchIndex(policy, address));
    }

    [Theory]
    [InlineData("::", true)]
    [InlineData("2001:db8::1", true)]
    [InlineData("::ffff:10.0.0.1", true)]
    [InlineData("10.0.0.1", false)]
    public void Ipv6_slash_0_matches_every_ipv6_address_but_no_plain_ipv4_address(string address, bool matches)
    {
        Policy policy = Rules("""{ "address": "::/0", "allow": true }""");

        Assert.Equal(matches ? 0 : null, MatchIndex(policy, address));
    }

    [Theory]
    [InlineData("10.0.0.1", true)]
    [InlineData("10.255.0.1", true)]
    [InlineData("11.0.0.1", false)]
    [InlineData("::ffff:10.0.0.1", true)]
    [InlineData("::10.0.0.1", false)]
    public void Mapped_ipv6_cidr_matches_ipv4_addresses(string address, bool matches)
    {
        Policy policy = Rules("""{ "address": "::ffff:10.0.0.0/104", "allow": true }""");

        Assert.Equal(matches ? 0 : null, MatchIndex(policy, address));
    }

    [Fact]
    public void Mapped_slash_96_matches_all_ipv4()
    {
        Policy policy = Rules("""{ "address": "::ffff:0:0/96", "allow": true }""");

        Assert.Equal(0, MatchIndex(policy, "192.0.2.1"));
        Assert.Null(MatchIndex(policy, "2001:db8::1"));
    }

    [Fact]
    public void Link_local_address_with_zone_matches_its_network()
    {
        Policy policy = Rules("""{ "address": "fe80::/64", "allow": true }""");

        Assert.Equal(0, MatchIndex(policy, "fe80::1%1"));
    }

    [Fact]
    public void Rule_without_address_matches_both_families()
    {
        Policy policy = Rules("""{ "port": 80, "allow": true }""");

        Assert.Equal(0, MatchIndex(policy, "192.0.2.1"));
        Assert.Equal(0, MatchIndex(policy, "2001:db8::1"));
    }

    [Theory]
    [InlineData(4999, false)]
    [InlineData(5000, true)]
    [InlineData(5500, true)]
    [InlineData(5999, true)]
    [InlineData(6000, false)]
    public void Port_range_includes_both_ends(int port, bool matches)
    {
        Policy policy = Rules("""{ "port": "5000-5999", "allow": true }""");

        Assert.Equal(matches ? 0 : null, MatchIndex(policy, "127.0.0.1", port));
    }

    [Fact]
    public void Port_0_written_matches_only_port_0()
    {
        Policy policy = Rules("""{ "direction": "bind", "port": 0, "allow": true }""");

        Assert.Equal(0, MatchIndex(policy, "127.0.0.1", 0, RuleDirection.Bind));
        Assert.Null(MatchIndex(policy, "127.0.0.1", 1, RuleDirection.Bind));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(65535)]
    public void Absent_port_matches_every_port(int port)
    {
        Policy policy = Rules("""{ "address": "127.0.0.1", "allow": true }""");

        Assert.Equal(0, MatchIndex(policy, "127.0.0.1", port));
    }

    [Fact]
    public void Direction_selects_bind_or_connect()
    {
        Policy policy = Rules("""
            { "direction": "bind", "port": 1, "reject": "EPERM" },
            { "direction": "connect", "port": 1, "reject": "EACCES" }
            """);

        Assert.Equal(0, MatchIndex(policy, "127.0.0.1", 1, RuleDirection.Bind));
        Assert.Equal(1, MatchIndex(policy, "127.0.0.1", 1, RuleDirection.Connect));
    }

    [Fact]
    public void Direction_any_matches_bind_and_connect()
    {
        Policy policy = Rules("""{ "direction": "any", "allow": true }""");

        Assert.Equal(0, MatchIndex(policy, "127.0.0.1", 1, RuleDirection.Bind));
        Assert.Equal(0, MatchIndex(policy, "127.0.0.1", 1, RuleDirection.Connect));
    }

    [Fact]
    public void Protocol_selects_tcp_or_udp()
    {
        Policy policy = Rules("""
            { "protocol": "udp", "reject": "EPERM" },
            { "protocol": "tcp", "reject": "EACCES" }
            """);

        Assert.Equal(0, MatchIndex(policy, "127.0.0.1", protocol: RuleProtocol.Udp));
        Assert.Equal(1, MatchIndex(policy, "127.0.0.1", protocol: RuleProtocol.Tcp));
    }

    [Fact]
    public void Redirect_rule_with_any_protocol_skips_udp_sockets()
    {
        Policy policy = Rules("""
            { "address": "127.0.0.0/8", "directory": "/run/s" },
            { "reject": "ENETUNREACH" }
            """);

        Assert.Equal(0, MatchIndex(policy, "127.0.0.1", protocol: RuleProtocol.Tcp));
        Assert.Equal(1, MatchIndex(policy, "127.0.0.1", protocol: RuleProtocol.Udp));
    }

    [Fact]
    public void Redirect_rule_for_udp_matches_udp_sockets_only()
    {
        Policy policy = Rules("""
            { "protocol": "udp", "address": "127.0.0.0/8", "unix": "/run/%t/%p" },
            { "reject": "ENETUNREACH" }
            """);

        Assert.Equal(0, MatchIndex(policy, "127.0.0.1", protocol: RuleProtocol.Udp));
        Assert.Equal(1, MatchIndex(policy, "127.0.0.1", protocol: RuleProtocol.Tcp));
        Assert.Equal("/run/udp/53", policy.Rules[0].ResolvePath(System.Net.IPAddress.Loopback, 53, RuleProtocol.Udp));
    }

    [Fact]
    public void First_matching_rule_wins()
    {
        Policy policy = Rules("""
            { "address": "127.0.0.1", "port": 8080, "unix": "/run/a/%p" },
            { "address": "127.0.0.0/8", "directory": "/run/b" },
            { "reject": "EACCES" }
            """);

        Assert.Equal(0, MatchIndex(policy, "127.0.0.1", 8080));
        Assert.Equal(1, MatchIndex(policy, "127.0.0.1", 8081));
        Assert.Equal(1, MatchIndex(policy, "127.9.9.9", 8080));
        Assert.Equal(2, MatchIndex(policy, "192.0.2.1", 8080));
    }

    [Fact]
    public void Allow_rule_stops_matching_before_a_later_reject()
    {
        Policy policy = Rules("""
            { "address": "10.0.0.0/8", "port": 443, "allow": true },
            { "address": "10.0.0.0/8", "reject": "ECONNREFUSED" }
            """);

        PolicyRule? allowed = policy.Match(RuleDirection.Connect, RuleProtocol.Tcp, IPAddress.Parse("10.1.1.1"), 443);
        PolicyRule? rejected = policy.Match(RuleDirection.Connect, RuleProtocol.Tcp, IPAddress.Parse("10.1.1.1"), 80);

        Assert.IsType<AllowAction>(allowed?.Action);
        Assert.Equal(new RejectAction(111, "ECONNREFUSED"), rejected?.Action);
    }

    [Fact]
    public void No_matching_rule_gives_null()
    {
        Policy policy = Rules("""{ "address": "10.0.0.0/8", "reject": "EACCES" }""");

        Assert.Null(policy.Match(RuleDirection.Connect, RuleProtocol.Tcp, IPAddress.Parse("192.0.2.1"), 80));
    }

    [Fact]
    public void Query_must_name_a_real_direction_and_protocol()
    {
        Policy policy = Rules("""{ "allow": true }""");

        Assert.Throws<ArgumentOutOfRangeException>(() => policy.Match(RuleDirection.Any, RuleProtocol.Tcp, IPAddress.Loopback, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => policy.Match(RuleDirection.Bind, RuleProtocol.Any, IPAddress.Loopback, 1));
    }

    [Fact]
    public void Rules_and_policies_refuse_values_their_enums_do_not_name()
    {
        var allow = new AllowAction();
        Assert.Throws<ArgumentOutOfRangeException>(() => new PolicyRule(0, (RuleDirection)3, RuleProtocol.Tcp, null, null, allow));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PolicyRule(0, (RuleDirection)(-1), RuleProtocol.Tcp, null, null, allow));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PolicyRule(0, RuleDirection.Connect, (RuleProtocol)3, null, null, allow));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Policy([], acceptConvert: (AcceptConvert)4));
        // Every named value is taken.
        foreach (var d in new[] { RuleDirection.Any, RuleDirection.Bind, RuleDirection.Connect })
            foreach (var p in new[] { RuleProtocol.Any, RuleProtocol.Tcp, RuleProtocol.Udp })
                Assert.Equal(d, new PolicyRule(0, d, p, null, null, allow).Direction);
        foreach (var a in new[] { AcceptConvert.None, AcceptConvert.All, AcceptConvert.Vsock, AcceptConvert.Converted })
            Assert.Equal(a, new Policy([], acceptConvert: a).AcceptConvert);
    }

    [Fact]
    public void Has_flags_reflect_the_actions()
    {
        Assert.False(Rules("""{ "allow": true }""").HasRejectRules);
        Assert.False(Rules("""{ "allow": true }""").HasRedirectRules);
        Assert.True(Rules("""{ "unix": "/a" }""").HasRedirectRules);
        Assert.False(Rules("""{ "unix": "/a" }""").HasRejectRules);
        Assert.True(Rules("""{ "reject": 1 }""").HasRejectRules);
    }
}
