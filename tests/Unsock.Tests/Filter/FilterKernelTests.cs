using Unsock.Core.Filter;
using static Unsock.Tests.Filter.FilterRuleSets;

namespace Unsock.Tests.Filter;

/// <summary>
/// The compiled program loaded into the kernel by the probe process. Its listener is closed at once, so a
/// notified call fails with ENOSYS; each call is also made without a filter, so no check passes by accident.
/// </summary>
public class FilterKernelTests
{
    private const int EBadF = 9;

    private static readonly string[] Specs =
    [
        "connect:-1:0:0",
        "bind:-1:0:0",
        "getsockopt:-1:6:1:0:0",
        "getsockopt:-1:0xdeadbeef00000006:1:0:0",
        "getsockopt:-1:1:39:0:0",
        "getsockopt:-1:1:7:0:0",
        "shutdown:-1:0",
        "shutdown:-1:1",
        "shutdown:-1:0xdeadbeef00000001",
        "shutdown:-1:0xdeadbeef00000002",
        "socket:10:1:0",
        "socket:0xdeadbeef0000000a:1:0",
        "socket:2:1:0",
        "io_uring_setup:1:0",
        "getpid",
    ];

    private static readonly Lazy<(Dictionary<string, (long Result, int Errno)> Filtered, Dictionary<string, (long Result, int Errno)> Unfiltered)> Runs = new(() =>
    {
        SeccompProgram program = FilterCompiler.Compile(FilterRuleSets.Typical());
        return (FilterProbeRunner.Run(program, [], Specs), FilterProbeRunner.Run(program, ["--no-filter"], Specs));
    });

    [Theory]
    [InlineData("connect:-1:0:0")]
    [InlineData("bind:-1:0:0")]
    [InlineData("getsockopt:-1:6:1:0:0")]
    [InlineData("getsockopt:-1:0xdeadbeef00000006:1:0:0")]
    [InlineData("getsockopt:-1:1:39:0:0")]
    [InlineData("shutdown:-1:0")]
    [InlineData("shutdown:-1:0xdeadbeef00000002")]
    public void NotifiedCallsFailWithEnosysOnceTheListenerIsClosed(string spec)
    {
        Assert.Equal((-1L, EBadF), Runs.Value.Unfiltered[spec]);
        Assert.Equal((-1L, ENoSys), Runs.Value.Filtered[spec]);
    }

    [Theory]
    [InlineData("getsockopt:-1:1:7:0:0")]
    [InlineData("shutdown:-1:1")]
    [InlineData("shutdown:-1:0xdeadbeef00000001")]
    public void CallsNoRuleMatchesRunNormally(string spec)
    {
        Assert.Equal((-1L, EBadF), Runs.Value.Filtered[spec]);
    }

    [Theory]
    [InlineData("socket:10:1:0")]
    [InlineData("socket:0xdeadbeef0000000a:1:0")]
    public void Ipv6SocketsFailWithEafnosupport(string spec)
    {
        Assert.True(Runs.Value.Unfiltered[spec].Result >= 0, $"without a filter {spec} should succeed: {Runs.Value.Unfiltered[spec]}");
        Assert.Equal((-1L, EAfNoSupport), Runs.Value.Filtered[spec]);
    }

    [Fact]
    public void IoUringSetupFailsWithEnosys()
    {
        Assert.NotEqual(ENoSys, Runs.Value.Unfiltered["io_uring_setup:1:0"].Errno);
        Assert.Equal((-1L, ENoSys), Runs.Value.Filtered["io_uring_setup:1:0"]);
    }

    [Fact]
    public void AllowedCallsSucceed()
    {
        Assert.True(Runs.Value.Filtered["getpid"].Result > 0);
        Assert.True(Runs.Value.Filtered["socket:2:1:0"].Result >= 0, $"socket(AF_INET) under the filter: {Runs.Value.Filtered["socket:2:1:0"]}");
    }

    [Fact]
    public void ASecondListenerOnTheSameThreadIsReportedAsANestedSupervisor()
    {
        string output = FilterProbeRunner.RunRaw(FilterCompiler.Compile(FilterRuleSets.Typical()), "--second-install");
        Assert.Equal("second-install already running under a seccomp supervisor (a seccomp listener exists in this process's filter chain)", output.Trim());
    }

    [Fact]
    public void WaitKillableRecvIsAcceptedByThisKernel()
    {
        Assert.True(SeccompFilter.SupportsWaitKillableRecv, "kernel 5.19+ has SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV");
        var results = FilterProbeRunner.Run(FilterCompiler.Compile(FilterRuleSets.Typical()), ["--wait-killable"], ["connect:-1:0:0", "getpid"]);
        Assert.Equal((-1L, ENoSys), results["connect:-1:0:0"]);
        Assert.True(results["getpid"].Result > 0);
    }
}
