using Unsock.Core.Policies;

namespace Unsock.Tests.Policies;


/// <summary>Every bad policy file is refused with a message that names the file, the rule and the field.</summary>
public class PolicyErrorTests
{
    private static PolicyException Refuse(string json) =>
        Assert.Throws<PolicyException>(() => Policy.Parse(json, "web.json"));

    /// <summary>A policy whose third rule (rules[2]) has the given members.</summary>
    private static PolicyException RefuseThirdRule(string members) =>
        Refuse($$"""{ "rules": [ { "port": 1, "allow": true }, { "port": 2, "allow": true }, { {{members}} } ] }""");

    private static void AssertNames(PolicyException e, int? ruleIndex, string? field, string message)
    {
        Assert.Equal(message, e.Message);
        Assert.Equal("web.json", e.Source);
        Assert.Equal(ruleIndex, e.RuleIndex);
        Assert.Equal(field, e.Field);
    }

    [Fact]
    public void Syntax_error_gives_line_and_column()
    {
        PolicyException e = Refuse("{\n  \"rules\": [\n    { \"port\": 1, \"allow\": true } }\n  ]\n}");

        Assert.StartsWith("web.json: line 3, column 34: invalid JSON: ", e.Message);
        Assert.DoesNotContain("LineNumber", e.Message);
        Assert.Null(e.RuleIndex);
        Assert.IsAssignableFrom<System.Text.Json.JsonException>(e.InnerException);
    }

    [Fact]
    public void Empty_text_is_invalid_json()
    {
        PolicyException e = Refuse("");

        Assert.StartsWith("web.json: ", e.Message);
        Assert.Contains("invalid JSON", e.Message);
    }

    [Fact]
    public void Top_level_must_be_an_object()
    {
        AssertNames(Refuse("[]"), null, null, "web.json: the top level must be an object with \"rules\" and settings");
    }

    [Fact]
    public void Unknown_top_level_key_is_named()
    {
        AssertNames(Refuse("""{ "fakeAdress": "1.2.3.4" }"""), null, "fakeAdress",
            "web.json: fakeAdress: unknown key; the known keys are version, fakeAddress, acceptConvert, blockInet, blockInet6, rules, allowed");
    }

    [Fact]
    public void Unknown_rule_key_is_named_with_the_rule()
    {
        AssertNames(RefuseThirdRule("\"prot\": \"tcp\", \"allow\": true"), 2, "prot",
            "web.json: rules[2].prot: unknown key; the known keys are direction, protocol, address, port, fromUnix, fromAbstract, unix, directory, abstract, vsock, tipc, firecracker, systemd, blackhole, reject, allow, mode, noremove");
    }

    [Fact]
    public void Duplicate_key_is_refused()
    {
        AssertNames(RefuseThirdRule("\"port\": 1, \"port\": 2, \"allow\": true"), 2, "port", "web.json: rules[2].port: appears twice");
        AssertNames(Refuse("""{ "blockInet": true, "blockInet": false }"""), null, "blockInet", "web.json: blockInet: appears twice");
    }

    [Theory]
    [InlineData("2")]
    [InlineData("\"1\"")]
    [InlineData("1.5")]
    public void Version_other_than_1_is_refused(string version)
    {
        AssertNames(Refuse($$"""{ "version": {{version}} }"""), null, "version",
            $"web.json: version: {version} is not a supported version; this program reads version 1");
    }

    [Theory]
    [InlineData("\"127.175.0.0/32\"")]
    [InlineData("\"localhost\"")]
    [InlineData("\"127.1\"")]
    [InlineData("\"fe80::1%eth0\"")]
    [InlineData("\"[::1]\"")]
    public void Bad_fake_address_is_refused(string value)
    {
        AssertNames(Refuse($$"""{ "fakeAddress": {{value}} }"""), null, "fakeAddress",
            $"web.json: fakeAddress: {value} is not an IPv4 or IPv6 address");
    }

    [Fact]
    public void Wrong_type_names_the_type_and_what_was_expected()
    {
        AssertNames(Refuse("""{ "fakeAddress": 5 }"""), null, "fakeAddress",
            "web.json: fakeAddress: 5 is a number, expected an IPv4 or IPv6 address");
        AssertNames(Refuse("""{ "blockInet6": "yes" }"""), null, "blockInet6",
            "web.json: blockInet6: \"yes\" is a string, expected true or false");
        AssertNames(Refuse("""{ "blockInet": 1 }"""), null, "blockInet",
            "web.json: blockInet: 1 is a number, expected true or false");
        AssertNames(Refuse("""{ "rules": {} }"""), null, "rules",
            "web.json: rules: is an object, expected an array of rules");
        AssertNames(Refuse("""{ "rules": [ { "allow": true }, "x" ] }"""), 1, null,
            "web.json: rules[1]: \"x\" is a string, expected a rule object");
        AssertNames(RefuseThirdRule("\"address\": [\"10.0.0.0/8\"], \"allow\": true"), 2, "address",
            "web.json: rules[2].address: is an array, expected an IPv4 or IPv6 address or CIDR");
        AssertNames(RefuseThirdRule("\"direction\": null, \"allow\": true"), 2, "direction",
            "web.json: rules[2].direction: is null, expected \"bind\", \"connect\" or \"any\"");
        AssertNames(RefuseThirdRule("\"unix\": true"), 2, "unix",
            "web.json: rules[2].unix: true is a boolean, expected a path template such as \"/run/app/%p.sock\"");
    }

    [Fact]
    public void Bad_accept_convert_is_refused()
    {
        AssertNames(Refuse("""{ "acceptConvert": "All" }"""), null, "acceptConvert",
            "web.json: acceptConvert: \"All\" is not one of \"converted\", \"none\", \"all\", \"vsock\"");
    }

    [Fact]
    public void Bad_direction_is_refused()
    {
        AssertNames(RefuseThirdRule("\"direction\": \"listen\", \"allow\": true"), 2, "direction",
            "web.json: rules[2].direction: \"listen\" is not one of \"bind\", \"connect\", \"any\"");
    }

    [Fact]
    public void Bad_protocol_is_refused()
    {
        AssertNames(RefuseThirdRule("\"protocol\": \"sctp\", \"allow\": true"), 2, "protocol",
            "web.json: rules[2].protocol: \"sctp\" is not one of \"tcp\", \"udp\", \"any\"");
    }

    [Theory]
    [InlineData("300.1.1.1/8")]
    [InlineData("10.0.0")]
    [InlineData("10.0.0.0.0")]
    [InlineData("010.0.0.1")]
    [InlineData("10.0.0.1/")]
    [InlineData("10.0.0.1/-1")]
    [InlineData("10.0.0.1/08")]
    [InlineData("10.0.0.1/8/8")]
    [InlineData(" 10.0.0.1")]
    [InlineData("2001:db8::/x")]
    [InlineData("2001:db8:::1")]
    [InlineData("fe80::1%eth0/64")]
    [InlineData("")]
    public void Bad_address_is_refused(string address)
    {
        PolicyException e = RefuseThirdRule($"\"address\": \"{address}\", \"allow\": true");

        Assert.StartsWith($"web.json: rules[2].address: \"{address}\" is not an IPv4 or IPv6 address or CIDR", e.Message);
        Assert.Equal(2, e.RuleIndex);
        Assert.Equal("address", e.Field);
    }

    [Fact]
    public void Prefix_longer_than_the_family_allows_is_refused()
    {
        AssertNames(RefuseThirdRule("\"address\": \"10.0.0.0/33\", \"allow\": true"), 2, "address",
            "web.json: rules[2].address: \"10.0.0.0/33\" has prefix length 33, more than 32, the most for IPv4");
        AssertNames(RefuseThirdRule("\"address\": \"::/129\", \"allow\": true"), 2, "address",
            "web.json: rules[2].address: \"::/129\" has prefix length 129, more than 128, the most for IPv6");
    }

    [Theory]
    [InlineData("65536")]
    [InlineData("-1")]
    [InlineData("80.5")]
    [InlineData("1e3")]
    public void Bad_port_number_is_refused(string port)
    {
        AssertNames(RefuseThirdRule($"\"port\": {port}, \"allow\": true"), 2, "port",
            $"web.json: rules[2].port: {port} is not a port number (0-65535)");
    }

    [Theory]
    [InlineData("\"65536\"")]
    [InlineData("\"http\"")]
    [InlineData("\"\"")]
    [InlineData("\"1-\"")]
    [InlineData("\"-5\"")]
    [InlineData("\"1-2-3\"")]
    [InlineData("\"1 - 2\"")]
    [InlineData("\"+80\"")]
    [InlineData("\"100-70000\"")]
    public void Bad_port_string_is_refused(string port)
    {
        AssertNames(RefuseThirdRule($"\"port\": {port}, \"allow\": true"), 2, "port",
            $"web.json: rules[2].port: {port} is not a port number 0-65535 or a range string \"first-last\"");
    }

    [Fact]
    public void Port_range_backwards_is_refused()
    {
        AssertNames(RefuseThirdRule("\"port\": \"6000-5000\", \"allow\": true"), 2, "port",
            "web.json: rules[2].port: \"6000-5000\" is a range whose first port is greater than its last");
    }

    [Fact]
    public void Rule_without_action_is_refused()
    {
        AssertNames(RefuseThirdRule("\"port\": 80"), 2, null,
            "web.json: rules[2]: has no action; give exactly one of \"unix\", \"directory\", \"abstract\", \"vsock\", \"tipc\", \"firecracker\", \"systemd\", \"blackhole\", \"reject\", \"allow\"");
    }

    [Fact]
    public void Rule_with_two_actions_names_both()
    {
        AssertNames(RefuseThirdRule("\"unix\": \"/a/%p\", \"reject\": \"EPERM\""), 2, "reject",
            "web.json: rules[2]: has both \"unix\" and \"reject\"; a rule takes exactly one action");
    }

    [Theory]
    [InlineData("run/%p.sock", "is not an absolute path (it must start with '/')")]
    [InlineData("%p.sock", "is not an absolute path (it must start with '/')")]
    [InlineData("", "is not an absolute path (it must start with '/')")]
    [InlineData("/run/%x.sock", "has the unknown placeholder \"%x\" (known: %p port, %a address, %t protocol, %% percent sign)")]
    [InlineData("/run/%P", "has the unknown placeholder \"%P\" (known: %p port, %a address, %t protocol, %% percent sign)")]
    [InlineData("/run/100%", "ends with a lone '%' (write %% for a percent sign)")]
    [InlineData("/run/a\\u0000b", "contains a NUL character")]
    public void Bad_unix_template_is_refused(string template, string problem)
    {
        AssertNames(RefuseThirdRule($"\"unix\": \"{template}\""), 2, "unix",
            $"web.json: rules[2].unix: \"{template}\" {problem}");
    }

    [Theory]
    [InlineData("tmp/unsockets", "is not an absolute path (it must start with '/')")]
    [InlineData("", "is not an absolute path (it must start with '/')")]
    [InlineData("/tmp/a\\u0000b", "contains a NUL character")]
    public void Bad_directory_is_refused(string directory, string problem)
    {
        AssertNames(RefuseThirdRule($"\"directory\": \"{directory}\""), 2, "directory",
            $"web.json: rules[2].directory: \"{directory}\" {problem}");
    }

    [Theory]
    [InlineData("\"EFOO\"")]
    [InlineData("\"13\"")]
    [InlineData("\"\"")]
    public void Bad_errno_name_is_refused(string reject)
    {
        AssertNames(RefuseThirdRule($"\"reject\": {reject}"), 2, "reject",
            $"web.json: rules[2].reject: {reject} is not an errno name such as \"EACCES\" or \"ECONNREFUSED\", or a number 1-4095");
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-13")]
    [InlineData("4096")]
    [InlineData("13.5")]
    public void Bad_errno_number_is_refused(string reject)
    {
        AssertNames(RefuseThirdRule($"\"reject\": {reject}"), 2, "reject",
            $"web.json: rules[2].reject: {reject} is not an errno number (1-4095)");
    }

    [Theory]
    [InlineData("false")]
    [InlineData("1")]
    [InlineData("\"yes\"")]
    public void Allow_takes_only_true(string allow)
    {
        AssertNames(RefuseThirdRule($"\"allow\": {allow}"), 2, "allow",
            $"web.json: rules[2].allow: {allow} is not allowed; \"allow\" takes only true (leave it out otherwise)");
    }

    [Theory]
    [InlineData("\"0o660\"")]
    [InlineData("\"0x1b0\"")]
    [InlineData("\"1000\"")]
    [InlineData("\"0800\"")]
    [InlineData("\"rw-rw----\"")]
    [InlineData("\"\"")]
    [InlineData("\"-1\"")]
    public void Bad_mode_string_is_refused(string mode)
    {
        AssertNames(RefuseThirdRule($"\"directory\": \"/d\", \"mode\": {mode}"), 2, "mode",
            $"web.json: rules[2].mode: {mode} is not an octal file mode 0-0777 such as \"0660\"");
    }

    [Fact]
    public void Mode_as_json_number_is_refused_as_ambiguous()
    {
        AssertNames(RefuseThirdRule("\"directory\": \"/d\", \"mode\": 660"), 2, "mode",
            "web.json: rules[2].mode: 660 is a number; write the mode as an octal string such as \"0660\" (JSON has no octal numbers)");
    }

    [Theory]
    [InlineData("\"reject\": \"EPERM\"", "reject")]
    [InlineData("\"allow\": true", "allow")]
    public void Mode_without_socket_file_is_refused(string action, string actionKey)
    {
        AssertNames(RefuseThirdRule($"{action}, \"mode\": \"0600\""), 2, "mode",
            $"web.json: rules[2].mode: applies only to unix and directory rules (it is the permission of the socket file a bind creates), not to \"{actionKey}\"");
    }

    [Theory]
    [InlineData("\"unix\": \"/run/%p.sock\"", "unix")]
    [InlineData("\"directory\": \"/run\"", "directory")]
    public void Udp_redirect_is_not_supported_yet(string action, string actionKey)
    {
        PolicyException e = RefuseThirdRule($"\"protocol\": \"udp\", {action}");

        AssertNames(e, 2, "protocol",
            $"web.json: rules[2].protocol: \"udp\" with \"{actionKey}\": datagram rules are not supported yet (unix and directory rules redirect TCP only)");
    }

    [Fact]
    public void Udp_reject_and_allow_rules_are_accepted()
    {
        Policy policy = Policy.Parse("""
            { "rules": [ { "protocol": "udp", "port": 53, "allow": true }, { "protocol": "udp", "reject": "EPERM" } ] }
            """, "web.json");

        Assert.Equal(2, policy.Rules.Count);
    }

    [Fact]
    public void Message_names_the_full_path_given_as_source()
    {
        PolicyException e = Assert.Throws<PolicyException>(() =>
            Policy.Parse("""{ "rules": [ { "port": "x", "allow": true } ] }""", "/etc/unsock/web.json"));

        Assert.StartsWith("/etc/unsock/web.json: rules[0].port: ", e.Message);
        Assert.Equal("/etc/unsock/web.json", e.Source);
        Assert.Equal("/etc/unsock/web.json", ((Exception)e).Source);
    }
}
