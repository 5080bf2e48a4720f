using System.Net;
using Unsock.Core.Policies;
using static Tmds.Linux.LibC;

namespace Unsock.Tests.Policies;


public class PolicyParsingTests
{
    internal const string Example = """
        {
          "fakeAddress": "127.175.0.0",
          "acceptConvert": "none",
          "blockInet6": false,
          "rules": [
            { "direction": "bind", "address": "127.0.0.1/8", "port": 8000, "unix": "/run/web/%p.sock", "mode": "0660" },
            { "direction": "connect", "address": "127.175.0.0/32", "port": "5000-5999", "directory": "/tmp/unsockets" },
            { "address": "0.0.0.0/0", "reject": "EACCES" }
          ]
        }
        """;

    [Fact]
    public void Example_policy_is_read_field_by_field()
    {
        Policy policy = Policy.Parse(Example, "web.json");

        Assert.Equal("web.json", policy.Source);
        Assert.Equal(IPAddress.Parse("127.175.0.0"), policy.FakeAddress);
        Assert.Equal(AcceptConvert.None, policy.AcceptConvert);
        Assert.False(policy.BlockInet6);
        Assert.False(policy.BlockInet);
        Assert.True(policy.HasRejectRules);
        Assert.True(policy.HasRedirectRules);
        Assert.Equal(3, policy.Rules.Count);

        PolicyRule web = policy.Rules[0];
        Assert.Equal(0, web.Index);
        Assert.Equal(RuleDirection.Bind, web.Direction);
        Assert.Equal(RuleProtocol.Any, web.Protocol);
        Assert.Equal(IPNetwork.Parse("127.0.0.0/8"), web.Address);
        Assert.Equal(new PortRange(8000, 8000), web.Port);
        Assert.Equal(new UnixAction("/run/web/%p.sock"), web.Action);
        Assert.Equal(0x1B0, web.Mode); // 0660

        PolicyRule backends = policy.Rules[1];
        Assert.Equal(1, backends.Index);
        Assert.Equal(RuleDirection.Connect, backends.Direction);
        Assert.Equal(RuleProtocol.Any, backends.Protocol);
        Assert.Equal(IPNetwork.Parse("127.175.0.0/32"), backends.Address);
        Assert.Equal(new PortRange(5000, 5999), backends.Port);
        Assert.Equal(new DirectoryAction("/tmp/unsockets"), backends.Action);
        Assert.Null(backends.Mode);

        PolicyRule rest = policy.Rules[2];
        Assert.Equal(2, rest.Index);
        Assert.Equal(RuleDirection.Any, rest.Direction);
        Assert.Equal(IPNetwork.Parse("0.0.0.0/0"), rest.Address);
        Assert.Null(rest.Port);
        Assert.Equal(new RejectAction(13, "EACCES"), rest.Action);
        Assert.Null(rest.Mode);
    }

    [Fact]
    public void Empty_object_gives_the_defaults_and_no_rules()
    {
        Policy policy = Policy.Parse("{}", "empty.json");

        Assert.Equal(IPAddress.Parse("127.175.0.0"), policy.FakeAddress);
        Assert.Equal(AcceptConvert.Converted, policy.AcceptConvert);
        Assert.False(policy.BlockInet);
        Assert.False(policy.BlockInet6);
        Assert.Empty(policy.Rules);
        Assert.False(policy.HasRejectRules);
        Assert.False(policy.HasRedirectRules);
        Assert.Null(policy.Match(RuleDirection.Connect, RuleProtocol.Tcp, IPAddress.Loopback, 80));
    }

    [Fact]
    public void Top_level_settings_are_read()
    {
        Policy policy = Policy.Parse("""
            { "version": 1, "fakeAddress": "fd00::1", "acceptConvert": "vsock", "blockInet": true, "blockInet6": true, "rules": [] }
            """, "p.json");

        Assert.Equal(IPAddress.Parse("fd00::1"), policy.FakeAddress);
        Assert.Equal(AcceptConvert.Vsock, policy.AcceptConvert);
        Assert.True(policy.BlockInet);
        Assert.True(policy.BlockInet6);
        Assert.Equal(AcceptConvert.All, Policy.Parse("""{ "acceptConvert": "all" }""", "p.json").AcceptConvert);
        Assert.Equal(AcceptConvert.Converted, Policy.Parse("""{ "acceptConvert": "converted" }""", "p.json").AcceptConvert);
        Assert.Equal(AcceptConvert.None, Policy.Parse("""{ "acceptConvert": "none" }""", "p.json").AcceptConvert);
    }

    [Fact]
    public void Comments_and_trailing_commas_are_accepted()
    {
        Policy policy = Policy.Parse("""
            {
              // redirect the API
              "rules": [ { "port": 80, "directory": "/run/api", }, ],
            }
            """, "p.json");

        Assert.Single(policy.Rules);
    }

    [Theory]
    [InlineData("\"0660\"", 0x1B0)]
    [InlineData("\"660\"", 0x1B0)]
    [InlineData("\"0777\"", 0x1FF)]
    [InlineData("\"0\"", 0)]
    [InlineData("\"00600\"", 0x180)]
    public void Mode_is_an_octal_string(string mode, int expected)
    {
        Policy policy = Policy.Parse($$"""{ "rules": [ { "directory": "/d", "mode": {{mode}} } ] }""", "p.json");

        Assert.Equal(expected, policy.Rules[0].Mode);
    }

    [Theory]
    [InlineData("\"5000\"", 5000, 5000)]
    [InlineData("\"5000-5999\"", 5000, 5999)]
    [InlineData("\"0-65535\"", 0, 65535)]
    [InlineData("\"7-7\"", 7, 7)]
    [InlineData("0", 0, 0)]
    [InlineData("65535", 65535, 65535)]
    public void Port_is_a_number_or_a_range_string(string port, int first, int last)
    {
        Policy policy = Policy.Parse($$"""{ "rules": [ { "port": {{port}}, "allow": true } ] }""", "p.json");

        Assert.Equal(new PortRange(first, last), policy.Rules[0].Port);
    }

    [Theory]
    [InlineData("\"EACCES\"", 13, "EACCES")]
    [InlineData("\"econnrefused\"", 111, "ECONNREFUSED")]
    [InlineData("\"EWOULDBLOCK\"", 11, "EWOULDBLOCK")]
    [InlineData("\"ENOTSUP\"", 95, "ENOTSUP")]
    [InlineData("1", 1, "EPERM")]
    [InlineData("111", 111, "ECONNREFUSED")]
    [InlineData("4095", 4095, "4095")]
    public void Reject_takes_an_errno_name_or_number(string reject, int errno, string name)
    {
        Policy policy = Policy.Parse($$"""{ "rules": [ { "reject": {{reject}} } ] }""", "p.json");

        Assert.Equal(new RejectAction(errno, name), policy.Rules[0].Action);
    }

    // The errno table is checked against Tmds.LibC's constants, an independent source of the same numbers.
    [Fact]
    public void Errno_names_have_the_linux_numbers()
    {
        (string Name, int Number)[] expected =
        [
            ("EPERM", EPERM), ("ENOENT", ENOENT), ("EINTR", EINTR), ("EAGAIN", EAGAIN), ("EACCES", EACCES),
            ("EINVAL", EINVAL), ("EMFILE", EMFILE), ("ERANGE", ERANGE), ("ENOSYS", ENOSYS),
            ("ENOTSOCK", ENOTSOCK), ("EPROTONOSUPPORT", EPROTONOSUPPORT), ("EOPNOTSUPP", EOPNOTSUPP),
            ("EAFNOSUPPORT", EAFNOSUPPORT), ("EADDRINUSE", EADDRINUSE), ("EADDRNOTAVAIL", EADDRNOTAVAIL),
            ("ENETDOWN", ENETDOWN), ("ENETUNREACH", ENETUNREACH), ("ECONNABORTED", ECONNABORTED),
            ("ECONNRESET", ECONNRESET), ("ENOBUFS", ENOBUFS), ("EISCONN", EISCONN), ("ENOTCONN", ENOTCONN),
            ("ETIMEDOUT", ETIMEDOUT), ("ECONNREFUSED", ECONNREFUSED), ("EHOSTUNREACH", EHOSTUNREACH),
            ("EALREADY", EALREADY), ("EINPROGRESS", EINPROGRESS),
        ];
        foreach ((string name, int number) in expected)
        {
            Policy policy = Policy.Parse($$"""{ "rules": [ { "reject": "{{name}}" } ] }""", "p.json");
            Assert.Equal(new RejectAction(number, name), policy.Rules[0].Action);
        }
    }

    [Fact]
    public void Mapped_and_ipv6_addresses_are_read_as_networks()
    {
        Policy policy = Policy.Parse("""
            { "rules": [
                { "address": "fd00::1:2/64", "allow": true },
                { "address": "::1", "allow": true },
                { "address": "::ffff:10.0.0.0/104", "allow": true },
                { "address": "10.1.2.3", "allow": true }
            ] }
            """, "p.json");

        Assert.Equal(IPNetwork.Parse("fd00::/64"), policy.Rules[0].Address);
        Assert.Equal(IPNetwork.Parse("::1/128"), policy.Rules[1].Address);
        Assert.Equal(IPNetwork.Parse("::ffff:10.0.0.0/104"), policy.Rules[2].Address);
        Assert.Equal(IPNetwork.Parse("10.1.2.3/32"), policy.Rules[3].Address);
    }

    [Fact]
    public void ToJson_writes_every_default()
    {
        string json = Policy.Parse("""{ "rules": [ { "port": 80, "directory": "/run/api" } ] }""", "p.json").ToJson();

        Assert.Equal("""
            {
              "version": 1,
              "fakeAddress": "127.175.0.0",
              "acceptConvert": "converted",
              "blockInet": false,
              "blockInet6": false,
              "rules": [
                {
                  "direction": "any",
                  "protocol": "any",
                  "port": 80,
                  "directory": "/run/api"
                }
              ]
            }
            """.ReplaceLineEndings("\n"), json.ReplaceLineEndings("\n"));
    }

    [Fact]
    public void ToJson_of_the_example_parses_to_an_equal_policy()
    {
        Policy original = Policy.Parse(Example, "web.json");

        string json = original.ToJson();
        Policy again = Policy.Parse(json, "again.json");

        Assert.Equal(original, again);
        Assert.Equal(json, again.ToJson());
        Assert.Contains("\"address\": \"127.0.0.0/8\"", json);
        Assert.Contains("\"port\": \"5000-5999\"", json);
        Assert.Contains("\"mode\": \"0660\"", json);
        Assert.Contains("\"reject\": \"EACCES\"", json);
    }

    [Fact]
    public void ToJson_round_trips_every_kind_of_rule()
    {
        Policy original = Policy.Parse("""
            {
              "fakeAddress": "::ffff:127.175.0.1",
              "acceptConvert": "all",
              "blockInet": true,
              "blockInet6": true,
              "rules": [
                { "direction": "connect", "protocol": "tcp", "address": "2001:db8::/32", "port": "1-1024", "unix": "/run/%t/%a/%p%%.sock", "mode": "7" },
                { "protocol": "udp", "address": "::ffff:0:0/96", "reject": 200 },
                { "protocol": "udp", "reject": "EWOULDBLOCK" },
                { "direction": "bind", "port": 0, "allow": true },
                { "directory": "/srv/sockets with spaces/ünïcode+&" }
              ]
            }
            """, "all.json");

        string json = original.ToJson();
        Policy again = Policy.Parse(json, "again.json");

        Assert.Equal(original, again);
        Assert.Contains("\"mode\": \"0007\"", json);
        Assert.Contains("\"reject\": 200", json);
        Assert.Contains("\"reject\": \"EWOULDBLOCK\"", json);
        Assert.Contains("/srv/sockets with spaces/ünïcode+&", json);
    }

    [Fact]
    public void Policies_that_differ_in_one_setting_are_not_equal()
    {
        Policy basis = Policy.Parse(Example, "a.json");

        Assert.Equal(basis, Policy.Parse(Example, "other-name.json"));
        Assert.NotEqual(basis, Policy.Parse(Example.Replace("\"blockInet6\": false", "\"blockInet6\": true"), "a.json"));
        Assert.NotEqual(basis, Policy.Parse(Example.Replace("\"0660\"", "\"0600\""), "a.json"));
        Assert.NotEqual(basis, Policy.Parse(Example.Replace("5000-5999", "5000-5998"), "a.json"));
        Assert.NotEqual(basis, Policy.Parse(Example.Replace("EACCES", "EPERM"), "a.json"));
    }

    [Fact]
    public void Load_reads_a_file_and_names_it_as_the_source()
    {
        string path = Path.Combine(Path.GetTempPath(), $"unsock-policy-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, Example);
        try
        {
            Policy policy = Policy.Load(path);

            Assert.Equal(path, policy.Source);
            Assert.Equal(Policy.Parse(Example, "x"), policy);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Load_of_a_missing_file_names_the_file()
    {
        string path = Path.Combine(Path.GetTempPath(), $"unsock-missing-{Guid.NewGuid():N}.json");

        PolicyException e = Assert.Throws<PolicyException>(() => Policy.Load(path));

        Assert.StartsWith($"{path}: cannot read the policy file", e.Message);
        Assert.Equal(path, e.Source);
        Assert.Null(e.RuleIndex);
    }
}
