using Unsock.Core.Engine;
using Unsock.Core.Filter;
using Unsock.Core.Policies;

namespace Unsock.Tests.Filter;

/// <summary>sendto/sendmsg/sendmmsg are trapped only with MSG_FASTOPEN: the data path stays untrapped.</summary>
public class FastOpenFilterTests
{
    private const ulong MsgFastOpen = 0x20000000, MsgNoSignal = 0x4000, MsgDontWait = 0x40;
    private const int EBadF = 9;

    private const string Redirect = """{ "rules": [ { "address": "127.0.0.0/8", "directory": "/tmp/x" } ] }""";
    // TCP only: a reject that applies to UDP traps every sendmsg and each sendto with an address (DatagramFilterPlanTests).
    private const string RejectOnly = """{ "rules": [ { "protocol": "tcp", "address": "10.0.0.0/8", "reject": "EACCES" } ] }""";
    private const string AllowOnly = """{ "rules": [ { "address": "0.0.0.0/0", "allow": true } ] }""";

    private static SeccompProgram Compile(string json) => FilterCompiler.Compile(FilterPlan.For(Policy.Parse(json, "test.json")));

    private static uint Decide(string json, SeccompData data) => BpfInterpreter.Run(Compile(json), data);

    [Theory]
    [InlineData(Redirect)]
    [InlineData(RejectOnly)]
    public void OnlySendsWithMsgFastOpenAreTrapped(string policy)
    {
        foreach (ulong flags in (ulong[])[0, MsgNoSignal, MsgDontWait | MsgNoSignal, 0xFFFFFFFF00000000, ~MsgFastOpen & 0xFFFFFFFF])
        {
            Assert.Equal(SeccompAction.Allow, Decide(policy, SeccompData.X86_64(Syscalls.SendTo, 3, 0x1000, 10, flags, 0x2000, 16)));
            Assert.Equal(SeccompAction.Allow, Decide(policy, SeccompData.X86_64(Syscalls.SendMsg, 3, 0x1000, flags)));
            Assert.Equal(SeccompAction.Allow, Decide(policy, SeccompData.X86_64(Syscalls.SendMmsg, 3, 0x1000, 2, flags)));
        }
        foreach (ulong flags in (ulong[])[MsgFastOpen, MsgFastOpen | MsgNoSignal, MsgFastOpen | 0xdeadbeef00000000])
        {
            Assert.Equal(SeccompAction.Notify, Decide(policy, SeccompData.X86_64(Syscalls.SendTo, 3, 0x1000, 10, flags, 0x2000, 16)));
            Assert.Equal(SeccompAction.Notify, Decide(policy, SeccompData.X86_64(Syscalls.SendMsg, 3, 0x1000, flags)));
            Assert.Equal(SeccompAction.Notify, Decide(policy, SeccompData.X86_64(Syscalls.SendMmsg, 3, 0x1000, 2, flags)));
        }
        // The flag in another argument register (sendto's length, sendmsg's third) is not the flags.
        Assert.Equal(SeccompAction.Allow, Decide(policy, SeccompData.X86_64(Syscalls.SendTo, 3, 0x1000, MsgFastOpen, 0, 0, 0)));
        Assert.Equal(SeccompAction.Allow, Decide(policy, SeccompData.X86_64(Syscalls.SendMsg, 3, 0x1000, 0, MsgFastOpen)));
    }

    [Fact]
    public void APolicyThatDecidesNothingTrapsNoSend()
    {
        Assert.Equal(SeccompAction.Allow, Decide(AllowOnly, SeccompData.X86_64(Syscalls.SendTo, 3, 0x1000, 10, MsgFastOpen, 0x2000, 16)));
    }

    [Fact]
    public void TheKernelNotifiesFastOpenSendsAndRunsPlainOnes()
    {
        // The probe takes syscall numbers: sendto 44, sendmsg 46, sendmmsg 307.
        string[] numbered =
        [
            $"44:-1:0:0:0x{MsgFastOpen:x}:0:0",
            $"44:-1:0:0:0x{MsgFastOpen | 0xdeadbeef00000000:x}:0:0",
            "44:-1:0:0:0x4000:0:0",
            $"46:-1:0:0x{MsgFastOpen:x}",
            "46:-1:0:0x40",
            $"307:-1:0:0:0x{MsgFastOpen:x}",
            "307:-1:0:0:0",
        ];
        var filtered = FilterProbeRunner.Run(Compile(Redirect), [], numbered);
        var unfiltered = FilterProbeRunner.Run(Compile(Redirect), ["--no-filter"], numbered);
        foreach (var spec in numbered) Assert.Equal((-1L, EBadF), unfiltered[spec]);
        Assert.Equal((-1L, FilterRuleSets.ENoSys), filtered[numbered[0]]);
        Assert.Equal((-1L, FilterRuleSets.ENoSys), filtered[numbered[1]]);
        Assert.Equal((-1L, EBadF), filtered[numbered[2]]);
        Assert.Equal((-1L, FilterRuleSets.ENoSys), filtered[numbered[3]]);
        Assert.Equal((-1L, EBadF), filtered[numbered[4]]);
        Assert.Equal((-1L, FilterRuleSets.ENoSys), filtered[numbered[5]]);
        Assert.Equal((-1L, EBadF), filtered[numbered[6]]);
    }
}
