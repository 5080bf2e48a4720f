using Unsock.Core.ControlFiles;
using static Unsock.Tests.ControlFiles.ControlFileTestSupport;

namespace Unsock.Tests.ControlFiles;

public sealed class ControlFileToolTests : IDisposable
{
    private readonly ControlFileTempDirectory _dir = new();
    private readonly StringWriter _stdout = new();
    private readonly StringWriter _stderr = new();

    public void Dispose() => _dir.Dispose();

    private int Run(params (string Name, string Value)[] variables)
        => ControlFileTool.Run(variables.ToDictionary(v => v.Name, v => v.Value), _stdout, _stderr, _dir.Path);

    private string Target => _dir["1234.sock"];

    [Fact]
    public void Vsock_port_alone_writes_the_golden_cid_any_file()
    {
        int exit = Run(("UNSOCK_FILE", Target), ("UNSOCK_VSOCK_PORT", "5678"));

        Assert.Equal(0, exit);
        Assert.Equal(Fixture(VsockAny5678), File.ReadAllBytes(Target));
        Assert.Equal($"{Target}: VSOCK port 5678, CID any{Environment.NewLine}", _stdout.ToString());
    }

    [Fact]
    public void Vsock_port_and_cid_write_the_golden_cid2_file()
    {
        Assert.Equal(0, Run(("UNSOCK_FILE", Target), ("UNSOCK_VSOCK_PORT", "5000"), ("UNSOCK_VSOCK_CID", "2")));

        Assert.Equal(Fixture(VsockCid2Port5000), File.ReadAllBytes(Target));
        Assert.Contains("VSOCK port 5000, CID 2 (host)", _stdout.ToString());
    }

    [Fact]
    public void Vsock_cid_minus_one_means_any()
    {
        Assert.Equal(0, Run(("UNSOCK_FILE", Target), ("UNSOCK_VSOCK_PORT", "5678"), ("UNSOCK_VSOCK_CID", "-1")));

        Assert.Equal(Fixture(VsockAny5678), File.ReadAllBytes(Target));
    }

    [Fact]
    public void Absolute_missing_firecracker_socket_only_warns_and_writes_the_golden_file()
    {
        int exit = Run(("UNSOCK_FILE", Target), ("UNSOCK_FC_SOCK", "/path/to/firecracker/vsock"), ("UNSOCK_VSOCK_PORT", "5678"));

        Assert.Equal(0, exit);
        Assert.Equal(Fixture(Firecracker5678), File.ReadAllBytes(Target));
        Assert.Contains("WARNING: UNSOCK_FC_SOCK does not exist: /path/to/firecracker/vsock", _stderr.ToString());
        Assert.Equal($"{Target}: Firecracker proxy /path/to/firecracker/vsock, guest port 5678{Environment.NewLine}", _stdout.ToString());
    }

    [Fact]
    public void Relative_firecracker_socket_is_resolved_to_its_real_absolute_path()
    {
        Directory.CreateDirectory(_dir["fc"]);
        using var multiplexer = BindUnixSocket(_dir["fc/v.sock"]);
        File.CreateSymbolicLink(_dir["alias.sock"], "fc/v.sock");

        int exit = Run(("UNSOCK_FILE", Target), ("UNSOCK_FC_SOCK", "fc/../alias.sock"), ("UNSOCK_VSOCK_PORT", "52"));

        Assert.Equal(0, exit);
        Assert.True(ControlFile.TryLoad(Target, out var file));
        Assert.Equal(_dir["fc/v.sock"], file!.ProxyPath);
        Assert.Equal(52u, file.VsockPort);
        Assert.Equal("", _stderr.ToString());
    }

    [Fact]
    public void Relative_missing_firecracker_socket_fails_without_writing()
    {
        int exit = Run(("UNSOCK_FILE", Target), ("UNSOCK_FC_SOCK", "nowhere/vsock"), ("UNSOCK_VSOCK_PORT", "52"));

        Assert.Equal(1, exit);
        Assert.Contains("UNSOCK_FC_SOCK does not exist: nowhere/vsock", _stderr.ToString());
        Assert.False(File.Exists(Target));
    }

    [Fact]
    public void All_five_tipc_variables_write_the_golden_tipc_file()
    {
        int exit = Run(("UNSOCK_FILE", Target), ("UNSOCK_TIPC_ADDRTYPE", "2"), ("UNSOCK_TIPC_SCOPE", "2"),
            ("UNSOCK_TIPC_TYPE", "128"), ("UNSOCK_TIPC_LOWER", "99"), ("UNSOCK_TIPC_UPPER", "0"));

        Assert.Equal(0, exit);
        Assert.Equal(Fixture(Tipc2_2_128_99_0), File.ReadAllBytes(Target));
        Assert.Contains("TIPC service address, cluster scope, type 128, instance 99, upper 0", _stdout.ToString());
    }

    private static readonly (string, string)[] AllTipc =
        [("UNSOCK_TIPC_ADDRTYPE", "2"), ("UNSOCK_TIPC_SCOPE", "2"), ("UNSOCK_TIPC_TYPE", "128"), ("UNSOCK_TIPC_LOWER", "99"), ("UNSOCK_TIPC_UPPER", "0")];

    [Fact]
    public void Firecracker_wins_over_vsock_and_tipc()
    {
        int exit = Run([("UNSOCK_FILE", Target), ("UNSOCK_FC_SOCK", "/path/to/firecracker/vsock"), ("UNSOCK_VSOCK_PORT", "5678"),
            ("UNSOCK_VSOCK_CID", "2"), .. AllTipc]);

        Assert.Equal(0, exit);
        Assert.Equal(Fixture(Firecracker5678), File.ReadAllBytes(Target));
        Assert.Contains("ignoring UNSOCK_VSOCK_CID", _stderr.ToString());
        Assert.Contains("ignoring UNSOCK_TIPC_ADDRTYPE", _stderr.ToString());
    }

    [Fact]
    public void Vsock_wins_over_tipc()
    {
        int exit = Run([("UNSOCK_FILE", Target), ("UNSOCK_VSOCK_PORT", "5678"), .. AllTipc]);

        Assert.Equal(0, exit);
        Assert.Equal(Fixture(VsockAny5678), File.ReadAllBytes(Target));
    }

    [Fact]
    public void Empty_variables_count_as_unset_like_the_original()
    {
        int exit = Run([("UNSOCK_FILE", Target), ("UNSOCK_FC_SOCK", ""), ("UNSOCK_VSOCK_PORT", ""), .. AllTipc]);

        Assert.Equal(0, exit);
        Assert.Equal(Fixture(Tipc2_2_128_99_0), File.ReadAllBytes(Target));
    }

    [Fact]
    public void Existing_file_is_not_overwritten_and_exits_1_with_File_exists()
    {
        File.WriteAllText(Target, "keep me");

        int exit = Run(("UNSOCK_FILE", Target), ("UNSOCK_VSOCK_PORT", "5678"));

        Assert.Equal(1, exit);
        Assert.Contains("File exists", _stderr.ToString());
        Assert.Equal("keep me", File.ReadAllText(Target));
        Assert.Equal("", _stdout.ToString());
    }

    [Fact]
    public void Relative_file_is_created_in_the_working_directory()
    {
        Assert.Equal(0, Run(("UNSOCK_FILE", "80.sock"), ("UNSOCK_VSOCK_PORT", "5678")));

        Assert.Equal(Fixture(VsockAny5678), File.ReadAllBytes(_dir["80.sock"]));
        Assert.StartsWith("80.sock: VSOCK port 5678", _stdout.ToString());
    }

    [Theory]
    [InlineData("UNSOCK_VSOCK_PORT", "abc")]
    [InlineData("UNSOCK_VSOCK_PORT", "12abc")]
    [InlineData("UNSOCK_VSOCK_PORT", " 12")]
    [InlineData("UNSOCK_VSOCK_PORT", "+12")]
    [InlineData("UNSOCK_VSOCK_PORT", "0x10")]
    [InlineData("UNSOCK_VSOCK_PORT", "4294967296")]
    [InlineData("UNSOCK_VSOCK_PORT", "-2")]
    [InlineData("UNSOCK_VSOCK_PORT", "0")]
    [InlineData("UNSOCK_VSOCK_CID", "-2")]
    [InlineData("UNSOCK_VSOCK_CID", "host")]
    [InlineData("UNSOCK_VSOCK_CID", "99999999999")]
    public void Bad_vsock_number_exits_2_naming_variable_and_value(string name, string value)
    {
        var variables = new Dictionary<string, string> { ["UNSOCK_FILE"] = Target, ["UNSOCK_VSOCK_PORT"] = "5678", [name] = value };

        int exit = ControlFileTool.Run(variables, _stdout, _stderr, _dir.Path);

        Assert.Equal(2, exit);
        Assert.Contains($"{name}={value}", _stderr.ToString());
        Assert.False(File.Exists(Target));
    }

    [Fact]
    public void Bad_firecracker_port_exits_2()
    {
        int exit = Run(("UNSOCK_FILE", Target), ("UNSOCK_FC_SOCK", "/path/to/firecracker/vsock"), ("UNSOCK_VSOCK_PORT", "x1"));

        Assert.Equal(2, exit);
        Assert.Contains("UNSOCK_VSOCK_PORT=x1", _stderr.ToString());
        Assert.False(File.Exists(Target));
    }

    [Fact]
    public void Overlong_firecracker_path_exits_2_naming_the_path()
    {
        string path = "/" + new string('p', 120);

        int exit = Run(("UNSOCK_FILE", Target), ("UNSOCK_FC_SOCK", path), ("UNSOCK_VSOCK_PORT", "1"));

        Assert.Equal(2, exit);
        Assert.EndsWith($"unsock: the Firecracker proxy path is 121 bytes, a sockaddr_un holds at most 108: '{path}'{Environment.NewLine}", _stderr.ToString());
        Assert.DoesNotContain("Parameter", _stderr.ToString());
        Assert.False(File.Exists(Target));
    }

    [Theory]
    [InlineData("UNSOCK_TIPC_ADDRTYPE", "0")]
    [InlineData("UNSOCK_TIPC_ADDRTYPE", "4")]
    [InlineData("UNSOCK_TIPC_ADDRTYPE", "name")]
    [InlineData("UNSOCK_TIPC_SCOPE", "128")]
    [InlineData("UNSOCK_TIPC_SCOPE", "-129")]
    [InlineData("UNSOCK_TIPC_SCOPE", "-")]
    [InlineData("UNSOCK_TIPC_TYPE", "-1")]
    [InlineData("UNSOCK_TIPC_LOWER", "4294967296")]
    [InlineData("UNSOCK_TIPC_UPPER", "1.5")]
    public void Bad_tipc_number_exits_2_naming_variable_and_value(string name, string value)
    {
        var variables = AllTipc.ToDictionary(v => v.Item1, v => v.Item2);
        variables["UNSOCK_FILE"] = Target;
        variables[name] = value;

        int exit = ControlFileTool.Run(variables, _stdout, _stderr, _dir.Path);

        Assert.Equal(2, exit);
        Assert.Contains($"{name}={value}", _stderr.ToString());
        Assert.False(File.Exists(Target));
    }

    [Fact]
    public void Negative_tipc_scope_within_range_is_accepted()
    {
        var variables = AllTipc.ToDictionary(v => v.Item1, v => v.Item2);
        variables["UNSOCK_FILE"] = Target;
        variables["UNSOCK_TIPC_SCOPE"] = "-2";

        Assert.Equal(0, ControlFileTool.Run(variables, _stdout, _stderr, _dir.Path));
        Assert.True(ControlFile.TryLoad(Target, out var file));
        Assert.Equal((sbyte)-2, file!.TipcScope);
    }

    [Fact]
    public void Missing_file_variable_exits_2_with_usage_listing_the_three_forms()
    {
        int exit = Run(("UNSOCK_VSOCK_PORT", "5678"));

        Assert.Equal(2, exit);
        string error = _stderr.ToString();
        Assert.Contains("UNSOCK_FILE is not set", error);
        Assert.Contains("UNSOCK_FC_SOCK=", error);
        Assert.Contains("UNSOCK_VSOCK_PORT=5678 [UNSOCK_VSOCK_CID=2]", error);
        Assert.Contains("UNSOCK_TIPC_ADDRTYPE=", error);
        Assert.Equal("", _stdout.ToString());
    }

    [Fact]
    public void No_destination_exits_2_with_usage()
    {
        int exit = Run(("UNSOCK_FILE", Target));

        Assert.Equal(2, exit);
        Assert.Contains("no destination", _stderr.ToString());
        Assert.Contains(ControlFileTool.Usage, _stderr.ToString());
        Assert.False(File.Exists(Target));
    }

    [Fact]
    public void Firecracker_socket_without_port_exits_2()
    {
        int exit = Run(("UNSOCK_FILE", Target), ("UNSOCK_FC_SOCK", "/path/to/firecracker/vsock"));

        Assert.Equal(2, exit);
        Assert.Contains("UNSOCK_FC_SOCK needs UNSOCK_VSOCK_PORT", _stderr.ToString());
    }

    [Fact]
    public void Incomplete_tipc_set_exits_2_naming_the_missing_variables()
    {
        int exit = Run(("UNSOCK_FILE", Target), ("UNSOCK_TIPC_ADDRTYPE", "2"), ("UNSOCK_TIPC_TYPE", "128"));

        Assert.Equal(2, exit);
        Assert.Contains("missing UNSOCK_TIPC_SCOPE, UNSOCK_TIPC_LOWER, UNSOCK_TIPC_UPPER", _stderr.ToString());
        Assert.False(File.Exists(Target));
    }

    [Fact]
    public void Public_entry_point_writes_the_control_file()
    {
        var variables = new Dictionary<string, string> { ["UNSOCK_FILE"] = Target, ["UNSOCK_VSOCK_PORT"] = "7" };

        Assert.Equal(0, ControlFileTool.Run(variables, _stdout, _stderr));
        Assert.True(ControlFile.TryLoad(Target, out var file));
        Assert.Equal(7u, file!.VsockPort);
    }
}
