using System.Net;
using Unsock.Core.Policies;

namespace Unsock.Tests.Policies;


/// <summary>The original unsock 1.1.0's UNSOCK_* variables turned into a policy.</summary>
public class PolicyEnvironmentTests
{
    private static Policy FromEnvironment(params (string Name, string Value)[] variables) =>
        Policy.FromEnvironment(variables.ToDictionary(v => v.Name, v => v.Value));

    private static PolicyException Refuse(params (string Name, string Value)[] variables) =>
        Assert.Throws<PolicyException>(() => FromEnvironment(variables));

    [Fact]
    public void Only_UNSOCK_DIR_gives_the_original_defaults()
    {
        Policy policy = FromEnvironment(("UNSOCK_DIR", "/tmp/unsockets/"));

        Assert.Equal("environment", policy.Source);
        Assert.Equal(IPAddress.Parse("127.175.0.0"), policy.FakeAddress);
        Assert.Equal(AcceptConvert.Converted, policy.AcceptConvert);
        Assert.False(policy.BlockInet);
        Assert.False(policy.BlockInet6);
        PolicyRule rule = Assert.Single(policy.Rules);
        Assert.Equal(0, rule.Index);
        Assert.Equal(RuleDirection.Any, rule.Direction);
        Assert.Equal(RuleProtocol.Tcp, rule.Protocol);
        Assert.Equal(IPNetwork.Parse("127.175.0.0/32"), rule.Address);
        Assert.Null(rule.Port);
        Assert.Equal(new DirectoryAction("/tmp/unsockets/"), rule.Action);
        Assert.Null(rule.Mode);
        Assert.True(policy.HasRedirectRules);
        Assert.False(policy.HasRejectRules);
    }

    [Fact]
    public void Default_policy_redirects_only_127_175_0_0_over_tcp()
    {
        Policy policy = FromEnvironment(("UNSOCK_DIR", "/tmp/unsockets"));

        PolicyRule? rule = policy.Match(RuleDirection.Connect, RuleProtocol.Tcp, IPAddress.Parse("127.175.0.0"), 7000);
        Assert.Equal("/tmp/unsockets/7000.sock", rule?.ResolvePath(IPAddress.Parse("127.175.0.0"), 7000, RuleProtocol.Tcp));
        Assert.NotNull(policy.Match(RuleDirection.Bind, RuleProtocol.Tcp, IPAddress.Parse("127.175.0.0"), 1));
        Assert.Null(policy.Match(RuleDirection.Connect, RuleProtocol.Tcp, IPAddress.Parse("127.175.0.1"), 7000));
        Assert.Null(policy.Match(RuleDirection.Connect, RuleProtocol.Udp, IPAddress.Parse("127.175.0.0"), 7000));
    }

    [Fact]
    public void Missing_UNSOCK_DIR_is_an_error()
    {
        PolicyException e = Refuse(("UNSOCK_ADDR", "127.0.0.1"));

        Assert.Contains("UNSOCK_DIR is not set", e.Message);
        Assert.Equal("environment", e.Source);
        Assert.Equal("UNSOCK_DIR", e.Field);
        Assert.Null(e.RuleIndex);
    }

    [Fact]
    public void Empty_UNSOCK_DIR_counts_as_unset()
    {
        Assert.Contains("UNSOCK_DIR is not set", Refuse(("UNSOCK_DIR", "")).Message);
    }

    [Fact]
    public void Relative_UNSOCK_DIR_is_an_error()
    {
        PolicyException e = Refuse(("UNSOCK_DIR", "tmp/unsockets"));

        Assert.Equal("environment: UNSOCK_DIR: \"tmp/unsockets\" is not an absolute path (it must start with '/')", e.Message);
        Assert.Equal("UNSOCK_DIR", e.Field);
    }

    [Fact]
    public void Long_UNSOCK_DIR_is_accepted()
    {
        string directory = "/" + new string('d', 300);

        Policy policy = FromEnvironment(("UNSOCK_DIR", directory));

        Assert.Equal(new DirectoryAction(directory), policy.Rules[0].Action);
    }

    [Theory]
    [InlineData("127.0.0.1/8", "127.0.0.1", "127.0.0.0/8")]
    [InlineData("127.175.0.3/0", "127.175.0.3", "0.0.0.0/0")]
    [InlineData("127.1.0.3/24", "127.1.0.3", "127.1.0.0/24")]
    [InlineData("1.2.3.4", "1.2.3.4", "1.2.3.4/32")]
    [InlineData("1.2.3.4/32", "1.2.3.4", "1.2.3.4/32")]
    public void UNSOCK_ADDR_gives_the_network_and_the_fake_address(string value, string fakeAddress, string network)
    {
        Policy policy = FromEnvironment(("UNSOCK_DIR", "/s"), ("UNSOCK_ADDR", value));

        Assert.Equal(IPAddress.Parse(fakeAddress), policy.FakeAddress);
        Assert.Equal(IPNetwork.Parse(network), policy.Rules[0].Address);
    }

    [Fact]
    public void UNSOCK_ADDR_slash_0_redirects_every_ipv4_address()
    {
        Policy policy = FromEnvironment(("UNSOCK_DIR", "/s"), ("UNSOCK_ADDR", "127.175.0.3/0"));

        Assert.NotNull(policy.Match(RuleDirection.Connect, RuleProtocol.Tcp, IPAddress.Parse("8.8.8.8"), 53));
        Assert.NotNull(policy.Match(RuleDirection.Connect, RuleProtocol.Tcp, IPAddress.Parse("::ffff:8.8.8.8"), 53));
        Assert.Null(policy.Match(RuleDirection.Connect, RuleProtocol.Tcp, IPAddress.Parse("2001:db8::1"), 53));
    }

    [Theory]
    [InlineData("localhost")]
    [InlineData("127.0.0.1/33")]
    [InlineData("127.0.0.1/")]
    [InlineData("127.0.0.1/-1")]
    [InlineData("127.1")]
    [InlineData("256.0.0.1")]
    [InlineData("::1")]
    [InlineData("127.0.0.1 ")]
    public void Bad_UNSOCK_ADDR_is_an_error(string value)
    {
        PolicyException e = Refuse(("UNSOCK_DIR", "/s"), ("UNSOCK_ADDR", value));

        Assert.Equal($"environment: UNSOCK_ADDR: \"{value}\" is not an IPv4 address \"a.b.c.d\" or network \"a.b.c.d/N\" (N 0-32)", e.Message);
        Assert.Equal("UNSOCK_ADDR", e.Field);
    }

    [Theory]
    [InlineData("7000", 7000)]
    [InlineData("0", 0)]
    [InlineData("65535", 65535)]
    public void UNSOCK_PORT_redirects_only_that_port(string value, int port)
    {
        Policy policy = FromEnvironment(("UNSOCK_DIR", "/s"), ("UNSOCK_PORT", value));

        Assert.Equal(new PortRange(port, port), policy.Rules[0].Port);
        Assert.NotNull(policy.Match(RuleDirection.Bind, RuleProtocol.Tcp, IPAddress.Parse("127.175.0.0"), port));
        Assert.Null(policy.Match(RuleDirection.Bind, RuleProtocol.Tcp, IPAddress.Parse("127.175.0.0"), port == 0 ? 1 : port - 1));
    }

    [Fact]
    public void UNSOCK_PORT_minus_1_means_any_port()
    {
        Assert.Null(FromEnvironment(("UNSOCK_DIR", "/s"), ("UNSOCK_PORT", "-1")).Rules[0].Port);
        Assert.Null(FromEnvironment(("UNSOCK_DIR", "/s"), ("UNSOCK_PORT", "")).Rules[0].Port);
    }

    [Theory]
    [InlineData("70000")]
    [InlineData("65536")]
    [InlineData("-2")]
    [InlineData("http")]
    [InlineData("80 ")]
    [InlineData("8000-8080")]
    public void Bad_UNSOCK_PORT_is_an_error(string value)
    {
        PolicyException e = Refuse(("UNSOCK_DIR", "/s"), ("UNSOCK_PORT", value));

        Assert.Equal($"environment: UNSOCK_PORT: \"{value}\" is not a port number (0-65535, or -1 for any)", e.Message);
        Assert.Equal("UNSOCK_PORT", e.Field);
    }

    [Theory]
    [InlineData("777", 0x1FF)]
    [InlineData("0700", 0x1C0)]
    [InlineData("660", 0x1B0)]
    [InlineData("0", 0)]
    public void UNSOCK_MODE_is_octal(string value, int mode)
    {
        Assert.Equal(mode, FromEnvironment(("UNSOCK_DIR", "/s"), ("UNSOCK_MODE", value)).Rules[0].Mode);
    }

    [Theory]
    [InlineData("1000")]
    [InlineData("8")]
    [InlineData("rwx")]
    [InlineData("0o777")]
    public void Bad_UNSOCK_MODE_is_an_error(string value)
    {
        PolicyException e = Refuse(("UNSOCK_DIR", "/s"), ("UNSOCK_MODE", value));

        Assert.Equal($"environment: UNSOCK_MODE: \"{value}\" is not an octal file mode 0-0777 such as \"0660\"", e.Message);
        Assert.Equal("UNSOCK_MODE", e.Field);
    }

    [Fact]
    public void UNSOCK_BLOCK_INET6_and_UNSOCK_BLOCK_INET_switch_on_with_1()
    {
        Policy both = FromEnvironment(("UNSOCK_DIR", "/s"), ("UNSOCK_BLOCK_INET6", "1"), ("UNSOCK_BLOCK_INET", "1"));
        Policy off = FromEnvironment(("UNSOCK_DIR", "/s"), ("UNSOCK_BLOCK_INET6", "0"), ("UNSOCK_BLOCK_INET", ""));
        Policy only6 = FromEnvironment(("UNSOCK_DIR", "/s"), ("UNSOCK_BLOCK_INET6", "1"));

        Assert.True(both.BlockInet6);
        Assert.True(both.BlockInet);
        Assert.False(off.BlockInet6);
        Assert.False(off.BlockInet);
        Assert.True(only6.BlockInet6);
        Assert.False(only6.BlockInet);
    }

    [Theory]
    [InlineData("UNSOCK_BLOCK_INET6", "yes")]
    [InlineData("UNSOCK_BLOCK_INET", "true")]
    [InlineData("UNSOCK_ACCEPT_CONVERT_ALL", "2")]
    [InlineData("UNSOCK_ACCEPT_CONVERT_VSOCK", "01")]
    public void Switch_other_than_0_or_1_is_an_error(string name, string value)
    {
        PolicyException e = Refuse(("UNSOCK_DIR", "/s"), (name, value));

        Assert.Equal($"environment: {name}: \"{value}\" must be 1 (on) or 0 (off)", e.Message);
        Assert.Equal(name, e.Field);
    }

    [Theory]
    [InlineData("1", "0", AcceptConvert.All)]
    [InlineData("0", "1", AcceptConvert.Vsock)]
    [InlineData("1", "1", AcceptConvert.All)]
    [InlineData("0", "0", AcceptConvert.Converted)]
    [InlineData("", "", AcceptConvert.Converted)]
    public void Accept_convert_variables_choose_the_conversion(string all, string vsock, AcceptConvert expected)
    {
        Policy policy = FromEnvironment(("UNSOCK_DIR", "/s"),
            ("UNSOCK_ACCEPT_CONVERT_ALL", all), ("UNSOCK_ACCEPT_CONVERT_VSOCK", vsock));

        Assert.Equal(expected, policy.AcceptConvert);
    }

    [Fact]
    public void Control_file_tool_variables_are_ignored()
    {
        Policy policy = FromEnvironment(
            ("UNSOCK_DIR", "/s"),
            ("UNSOCK_FILE", "/s/1234.sock"),
            ("UNSOCK_VSOCK_PORT", "not a number"),
            ("UNSOCK_VSOCK_CID", "-1"),
            ("UNSOCK_FC_SOCK", "relative/fc.sock"),
            ("UNSOCK_TIPC_ADDRTYPE", "2"),
            ("UNSOCK_TIPC_SCOPE", "x"),
            ("UNSOCK_SOMETHING_ELSE", "x"));

        Assert.Equal(FromEnvironment(("UNSOCK_DIR", "/s")), policy);
    }

    [Fact]
    public void Every_variable_together_round_trips_through_json()
    {
        Policy policy = FromEnvironment(
            ("UNSOCK_DIR", "/run/unsock"),
            ("UNSOCK_ADDR", "127.0.0.1/8"),
            ("UNSOCK_PORT", "7000"),
            ("UNSOCK_MODE", "0660"),
            ("UNSOCK_BLOCK_INET6", "1"),
            ("UNSOCK_ACCEPT_CONVERT_VSOCK", "1"));

        string json = policy.ToJson();

        Assert.Equal(policy, Policy.Parse(json, "from-env.json"));
        Assert.Contains("\"fakeAddress\": \"127.0.0.1\"", json);
        Assert.Contains("\"acceptConvert\": \"vsock\"", json);
        Assert.Contains("\"blockInet6\": true", json);
        Assert.Contains("\"protocol\": \"tcp\"", json);
        Assert.Contains("\"address\": \"127.0.0.0/8\"", json);
        Assert.Contains("\"port\": 7000", json);
        Assert.Contains("\"directory\": \"/run/unsock\"", json);
        Assert.Contains("\"mode\": \"0660\"", json);
    }
}
