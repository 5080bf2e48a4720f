using Unsock.Core.Engine;
using Unsock.Core.Filter;
using Unsock.Core.Policies;

namespace Unsock.Tests.Filter;

/// <summary>The filter a policy compiles to: only the calls it needs are trapped.</summary>
public class FilterPlanTests
{
    private static uint Decide(string json, SeccompData data) =>
        BpfInterpreter.Run(FilterCompiler.Compile(FilterPlan.For(Policy.Parse(json, "test.json"))), data);

    private const string Redirect = """{ "rules": [ { "address": "127.0.0.0/8", "directory": "/tmp/x" } ] }""";
    private const string RejectOnly = """{ "rules": [ { "address": "10.0.0.0/8", "reject": "EACCES" } ] }""";
    private const string AllowOnly = """{ "rules": [ { "address": "0.0.0.0/0", "allow": true } ] }""";

    [Fact]
    public void DataPathCallsAreNeverTrapped()
    {
        const string RejectTcp = """{ "rules": [ { "protocol": "tcp", "address": "10.0.0.0/8", "reject": "EACCES" } ] }""";
        foreach (var policy in (string[])[Redirect, RejectTcp, AllowOnly, """{ "acceptConvert": "all", "rules": [ { "directory": "/tmp/x" } ] }"""])
            foreach (int nr in (int[])[0 /* read */, 1 /* write */, Syscalls.SendTo, Syscalls.RecvFrom, Syscalls.SendMsg, Syscalls.RecvMsg, Syscalls.Listen, Syscalls.Socket])
                Assert.Equal(SeccompAction.Allow, Decide(policy, SeccompData.X86_64(nr, 3, 0x1000, 1, 0, 0)));
        // A reject that applies to UDP must see sendmsg (msg_name may name a rejected destination): DatagramFilterPlanTests.
        foreach (int nr in (int[])[0 /* read */, 1 /* write */, Syscalls.SendTo, Syscalls.RecvFrom, Syscalls.RecvMsg, Syscalls.Listen, Syscalls.Socket])
            Assert.Equal(SeccompAction.Allow, Decide(RejectOnly, SeccompData.X86_64(nr, 3, 0x1000, 1, 0, 0)));
    }

    [Fact]
    public void APolicyThatOnlyAllowsTrapsNothing()
    {
        Assert.Empty(FilterPlan.For(Policy.Parse(AllowOnly, "t")));
        Assert.Empty(FilterPlan.For(Policy.Parse("""{ "rules": [] }""", "t")));
    }

    [Fact]
    public void RejectOnlyPoliciesTrapBindAndConnectButNotTheNameCalls()
    {
        Assert.Equal(SeccompAction.Notify, Decide(RejectOnly, SeccompData.X86_64(Syscalls.Connect, 3, 0x1000, 16)));
        Assert.Equal(SeccompAction.Notify, Decide(RejectOnly, SeccompData.X86_64(Syscalls.Bind, 3, 0x1000, 16)));
        Assert.Equal(SeccompAction.Allow, Decide(RejectOnly, SeccompData.X86_64(Syscalls.GetSockName, 3, 0x1000, 0x2000)));
        Assert.Equal(SeccompAction.Allow, Decide(RejectOnly, SeccompData.X86_64(Syscalls.SetSockOpt, 3, 6, 1, 0x1000, 4)));
        Assert.Equal(SeccompAction.Errno(38), Decide(RejectOnly, SeccompData.X86_64(Syscalls.IoUringSetup, 8, 0x1000)));
    }

    [Fact]
    public void RedirectPoliciesTrapTheCallsThatWouldGiveTheSwapAway()
    {
        Assert.Equal(SeccompAction.Notify, Decide(Redirect, SeccompData.X86_64(Syscalls.GetPeerName, 3, 0x1000, 0x2000)));
        Assert.Equal(SeccompAction.Notify, Decide(Redirect, SeccompData.X86_64(Syscalls.SetSockOpt, 3, 6, 1, 0x1000, 4)));
        Assert.Equal(SeccompAction.Notify, Decide(Redirect, SeccompData.X86_64(Syscalls.GetSockOpt, 3, 1, 39, 0x1000, 0x2000)));
        Assert.Equal(SeccompAction.Allow, Decide(Redirect, SeccompData.X86_64(Syscalls.SetSockOpt, 3, 1, 2, 0x1000, 4)));  // SOL_SOCKET SO_REUSEADDR
        Assert.Equal(SeccompAction.Allow, Decide(Redirect, SeccompData.X86_64(Syscalls.Shutdown, 3, 1)));  // SHUT_WR: a half-close
        Assert.Equal(SeccompAction.Notify, Decide(Redirect, SeccompData.X86_64(Syscalls.Shutdown, 3, 2)));
        // accept is trapped by default (acceptConvert "converted"), but not with "none", and only with an address to rewrite.
        Assert.Equal(SeccompAction.Notify, Decide(Redirect, SeccompData.X86_64(Syscalls.Accept4, 3, 0x1000, 0x2000, 0)));
        Assert.Equal(SeccompAction.Notify, Decide(Redirect, SeccompData.X86_64(Syscalls.Accept, 3, 0x1000, 0x2000)));
        Assert.Equal(SeccompAction.Allow, Decide(Redirect, SeccompData.X86_64(Syscalls.Accept4, 3, 0, 0, 0)));
        Assert.Equal(SeccompAction.Allow, Decide(Redirect, SeccompData.X86_64(Syscalls.Accept, 3, 0, 0)));
        // A pointer whose low half is zero is still a pointer.
        Assert.Equal(SeccompAction.Notify, Decide(Redirect, SeccompData.X86_64(Syscalls.Accept4, 3, 0x7f0000000000, 0x2000, 0)));
        Assert.Equal(SeccompAction.Allow, Decide("""{ "acceptConvert": "none", "rules": [ { "directory": "/tmp/x" } ] }""",
            SeccompData.X86_64(Syscalls.Accept4, 3, 0x1000, 0x2000, 0)));
        Assert.Equal(SeccompAction.Notify, Decide("""{ "acceptConvert": "all", "rules": [ { "directory": "/tmp/x" } ] }""",
            SeccompData.X86_64(Syscalls.Accept4, 3, 0x1000, 0x2000, 0)));
    }

    [Fact]
    public void SolSocketOptionsThatAreRarelySetAreTrappedToMarkTheSocketAndTheCommonOnesAreNot()
    {
        // SO_SNDBUF, SO_RCVBUF, SO_OOBINLINE, SO_PRIORITY, SO_RCVLOWAT, SO_SNDBUFFORCE, SO_RCVBUFFORCE: marked, then copied at a swap.
        foreach (ulong option in (ulong[])[7, 8, 10, 12, 18, 32, 33])
            Assert.Equal(SeccompAction.Notify, Decide(Redirect, SeccompData.X86_64(Syscalls.SetSockOpt, 3, 1, option, 0x1000, 4)));
        // SO_KEEPALIVE, SO_LINGER, SO_RCVTIMEO, SO_SNDTIMEO (old and new), SO_REUSEADDR: set on every connection, never trapped.
        foreach (ulong option in (ulong[])[9, 13, 20, 21, 66, 67, 2])
            Assert.Equal(SeccompAction.Allow, Decide(Redirect, SeccompData.X86_64(Syscalls.SetSockOpt, 3, 1, option, 0x1000, 4)));
        // Reading them is never trapped; only a policy that redirects marks anything.
        Assert.Equal(SeccompAction.Allow, Decide(Redirect, SeccompData.X86_64(Syscalls.GetSockOpt, 3, 1, 7, 0x1000, 0x2000)));
        Assert.Equal(SeccompAction.Allow, Decide(RejectOnly, SeccompData.X86_64(Syscalls.SetSockOpt, 3, 1, 7, 0x1000, 4)));
    }

    [Fact]
    public void CallsThatChangeARootOrMountNamespaceAreSeenBeforeTheyRun()
    {
        const ulong CloneNewNs = 0x20000, CloneNewUser = 0x10000000, CloneFs = 0x200;
        foreach (var policy in new[] { Redirect, RejectOnly })
        {
            Assert.Equal(SeccompAction.Notify, Decide(policy, SeccompData.X86_64(Syscalls.Chroot, 0x1000)));
            Assert.Equal(SeccompAction.Notify, Decide(policy, SeccompData.X86_64(Syscalls.PivotRoot, 0x1000, 0x2000)));
            Assert.Equal(SeccompAction.Notify, Decide(policy, SeccompData.X86_64(Syscalls.SetNs, 5, 0)));
            Assert.Equal(SeccompAction.Notify, Decide(policy, SeccompData.X86_64(Syscalls.Unshare, CloneNewNs)));
            Assert.Equal(SeccompAction.Notify, Decide(policy, SeccompData.X86_64(Syscalls.Unshare, CloneNewNs | CloneNewUser)));
            Assert.Equal(SeccompAction.Allow, Decide(policy, SeccompData.X86_64(Syscalls.Unshare, CloneNewUser | CloneFs)));
            // Other ABIs cannot go round it: the 32-bit calls answer ENOSYS.
            Assert.Equal(SeccompAction.Errno(38), Decide(policy, SeccompData.I386(61 /* chroot */, 0x1000)));
            Assert.Equal(SeccompAction.Errno(38), Decide(policy, SeccompData.X32(Syscalls.Chroot, 0x1000)));
        }
        Assert.Equal(SeccompAction.Allow, Decide(AllowOnly, SeccompData.X86_64(Syscalls.Chroot, 0x1000)));
    }

    [Fact]
    public void BlockInet6RefusesSocketInTheFilterItself()
    {
        const string json = """{ "blockInet6": true, "rules": [] }""";
        Assert.Equal(SeccompAction.Errno(97), Decide(json, SeccompData.X86_64(Syscalls.Socket, 10, 1, 0)));
        Assert.Equal(SeccompAction.Allow, Decide(json, SeccompData.X86_64(Syscalls.Socket, 2, 1, 0)));
        Assert.Equal(SeccompAction.Allow, Decide(json, SeccompData.X86_64(Syscalls.Connect, 3, 0x1000, 16)));
    }
}
