using System.Runtime.InteropServices;
using Unsock.Core.Engine;
using Unsock.Core.Filter;
using Unsock.Core.Policies;

namespace Unsock.Tests.Filter;

/// <summary>What datagram rules add to the filter: address-carrying sends and receives, and the msghdr calls.</summary>
public class DatagramFilterPlanTests
{
    private static uint Decide(string json, SeccompData data) =>
        BpfInterpreter.Run(FilterCompiler.Compile(FilterPlan.For(Policy.Parse(json, "test.json"))), data);

    private const string Datagrams = """{ "rules": [ { "protocol": "udp", "address": "127.0.0.0/8", "directory": "/tmp/x" } ] }""";
    private const string StreamsOnly = """{ "rules": [ { "address": "127.0.0.0/8", "directory": "/tmp/x" } ] }""";

    [Fact]
    public void SendtoAndRecvfromAreTrappedOnlyWithAnAddress()
    {
        // sendto(fd, buf, len, flags, addr, addrlen) and recvfrom(fd, buf, len, flags, addr, addrlenp): the address is arg 4.
        Assert.Equal(SeccompAction.Notify, Decide(Datagrams, SeccompData.X86_64(Syscalls.SendTo, 3, 0x1000, 5, 0, 0x2000, 16)));
        Assert.Equal(SeccompAction.Notify, Decide(Datagrams, SeccompData.X86_64(Syscalls.RecvFrom, 3, 0x1000, 5, 0, 0x2000, 0x3000)));
        Assert.Equal(SeccompAction.Allow, Decide(Datagrams, SeccompData.X86_64(Syscalls.SendTo, 3, 0x1000, 5, 0, 0, 0)));
        Assert.Equal(SeccompAction.Allow, Decide(Datagrams, SeccompData.X86_64(Syscalls.RecvFrom, 3, 0x1000, 5, 0, 0, 0)));
        // A pointer whose low half is zero is still a pointer.
        Assert.Equal(SeccompAction.Notify, Decide(Datagrams, SeccompData.X86_64(Syscalls.RecvFrom, 3, 0x1000, 5, 0, 0x7f0000000000, 0x3000)));
        // MSG_FASTOPEN without an address is still trapped (a TCP connect in disguise).
        Assert.Equal(SeccompAction.Notify, Decide(Datagrams, SeccompData.X86_64(Syscalls.SendTo, 3, 0x1000, 5, 0x20000000, 0, 0)));
    }

    [Fact]
    public void MessageCallsAreTrappedWhenThePolicyHasDatagramRules()
    {
        foreach (int nr in (int[])[Syscalls.SendMsg, Syscalls.RecvMsg, Syscalls.SendMmsg, Syscalls.RecvMmsg])
        {
            Assert.Equal(SeccompAction.Notify, Decide(Datagrams, SeccompData.X86_64(nr, 3, 0x1000, 0, 0)));
            Assert.Equal(SeccompAction.Allow, Decide(StreamsOnly, SeccompData.X86_64(nr, 3, 0x1000, 0, 0)));
        }
    }

    [Fact]
    public void ProtocolAnyRedirectRulesDoNotMakeDatagramRules()
    {
        Assert.False(FilterPlan.HasDatagramRules(Policy.Parse(StreamsOnly, "t")));
        Assert.False(FilterPlan.HasDatagramRules(Policy.Parse("""{ "rules": [ { "protocol": "udp", "reject": "EPERM" } ] }""", "t")));
        Assert.True(FilterPlan.HasDatagramRules(Policy.Parse(Datagrams, "t")));
        Assert.Equal(SeccompAction.Allow, Decide(StreamsOnly, SeccompData.X86_64(Syscalls.SendTo, 3, 0x1000, 5, 0, 0x2000, 16)));
    }

    private const string RejectAny = """{ "rules": [ { "address": "0.0.0.0/0", "reject": "EACCES" } ] }""";
    private const string RejectUdp = """{ "rules": [ { "protocol": "udp", "address": "127.0.0.0/8", "port": 53, "reject": "EPERM" } ] }""";
    private const string RejectTcp = """{ "rules": [ { "protocol": "tcp", "address": "0.0.0.0/0", "reject": "EACCES" } ] }""";

    /// <summary>Whether sendto/recvfrom with an address, and the four msghdr calls, reach the supervisor under <paramref name="json"/>.</summary>
    private static string Trapped(string json)
    {
        var calls = new List<string>();
        if (Decide(json, SeccompData.X86_64(Syscalls.SendTo, 3, 0x1000, 5, 0, 0x2000, 16)) == SeccompAction.Notify) calls.Add("sendto");
        if (Decide(json, SeccompData.X86_64(Syscalls.SendTo, 3, 0x1000, 5, 0, 0, 0)) == SeccompAction.Notify) calls.Add("send");
        if (Decide(json, SeccompData.X86_64(Syscalls.RecvFrom, 3, 0x1000, 5, 0, 0x2000, 0x3000)) == SeccompAction.Notify) calls.Add("recvfrom");
        foreach (var (nr, name) in (ReadOnlySpan<(int, string)>)[(Syscalls.SendMsg, "sendmsg"), (Syscalls.SendMmsg, "sendmmsg"), (Syscalls.RecvMsg, "recvmsg"), (Syscalls.RecvMmsg, "recvmmsg")])
            if (Decide(json, SeccompData.X86_64(nr, 3, 0x1000, 1, 0)) == SeccompAction.Notify) calls.Add(name);
        return string.Join(' ', calls);
    }

    [Fact]
    public void RejectRulesThatReachUdpTrapTheSendsThatCanNameADestination()
    {
        // An unconnected UDP socket names its destination on each send: a reject rule for UDP must see sendto with
        // an address and every sendmsg/sendmmsg (msg_name is in memory). Receives stay untrapped: a reject is about
        // destinations. Plain send and sendto without an address never are.
        Assert.Equal("sendto sendmsg sendmmsg", Trapped(RejectAny));
        Assert.Equal("sendto sendmsg sendmmsg", Trapped(RejectUdp));
        Assert.True(FilterPlan.HasDatagramRejects(Policy.Parse(RejectAny, "t")));
        Assert.True(FilterPlan.HasDatagramRejects(Policy.Parse(RejectUdp, "t")));
        // A TCP-only reject cannot refuse a datagram: TCP's data path (sendmsg included) stays at full speed.
        Assert.Equal("", Trapped(RejectTcp));
        Assert.False(FilterPlan.HasDatagramRejects(Policy.Parse(RejectTcp, "t")));
        // A reject for bind alone says nothing about destinations; one that matches AF_UNIX paths is not about UDP.
        Assert.Equal("", Trapped("""{ "rules": [ { "direction": "bind", "protocol": "udp", "reject": "EACCES" } ] }"""));
        Assert.Equal("", Trapped("""{ "rules": [ { "fromUnix": "/run/*", "reject": "EACCES" } ] }"""));
        // A redirect without rejects: TCP-only traps none of them; a UDP redirect traps both ways.
        Assert.Equal("", Trapped(StreamsOnly));
        Assert.Equal("sendto recvfrom sendmsg sendmmsg recvmsg recvmmsg", Trapped(Datagrams));
        // blockInet refuses socket() itself: there is no UDP socket to send from.
        Assert.Equal("", Trapped("""{ "blockInet": true, "rules": [ { "address": "127.0.0.0/8", "directory": "/tmp/x" } ] }"""));
    }

    [Fact]
    public void FastOpenSendsStayTrappedUnderUdpRejects()
    {
        // MSG_FASTOPEN is a TCP connect: sendto without an address is still trapped for it, sendmsg/sendmmsg already are.
        Assert.Equal(SeccompAction.Notify, Decide(RejectAny, SeccompData.X86_64(Syscalls.SendTo, 3, 0x1000, 5, 0x20000000, 0, 0)));
        Assert.Equal(SeccompAction.Notify, Decide(RejectTcp, SeccompData.X86_64(Syscalls.SendMsg, 3, 0x1000, 0x20000000, 0)));
        Assert.Equal(SeccompAction.Allow, Decide(RejectTcp, SeccompData.X86_64(Syscalls.SendMsg, 3, 0x1000, 0, 0)));
    }

    [Fact]
    public void MsghdrLayoutIsTheKernels()
    {
        // The engine reads and writes the program's msghdr at these offsets, and hands Tmds.Linux's struct to the kernel.
        Assert.Equal(56, Marshal.SizeOf<Tmds.Linux.msghdr>());
        var m = new Tmds.Linux.msghdr { msg_controllen = 0x11223344, msg_flags = 0x55 };
        var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(new Span<Tmds.Linux.msghdr>(ref m));
        Assert.Equal(0x11223344, BitConverter.ToInt32(bytes[40..]));
        Assert.Equal(0x55, BitConverter.ToInt32(bytes[48..]));
    }
}
