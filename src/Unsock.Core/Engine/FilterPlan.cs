using System.Runtime.CompilerServices;
using Unsock.Core.Filter;
using Unsock.Core.Policies;

namespace Unsock.Core.Engine;

/// <summary>
/// Which syscalls a policy needs trapped, and with which register conditions. Everything else runs at
/// full speed: read/write/send/recv are never trapped; neither is anything when the policy has no rules.
/// </summary>
public static class FilterPlan
{
    private const int SolSocket = 1, SolIp = 0, SolTcp = 6, SolIpv6 = 41, SoProtocol = 38, SoDomain = 39;
    private const int ShutWr = 1, AfInet = 2, AfInet6 = 10;
    private const ulong CloneNewNs = 0x20000;

    /// <summary>
    /// SOL_SOCKET options that are trapped so that the socket is marked as having them set
    /// (<see cref="Redirector"/> copies only those to the socket it swaps in): buffer sizes, SO_OOBINLINE,
    /// SO_PRIORITY, SO_RCVLOWAT. Timeouts, SO_LINGER and SO_KEEPALIVE are not: programs set them on every
    /// connection, accepted ones too (redis turns keep-alive on for each client), often after connect, where
    /// a trap would cost a round trip per connection; those are read at the swap instead.
    /// </summary>
    internal static ReadOnlySpan<int> MarkedSocketOptions => [7 /* SO_SNDBUF */, 8 /* SO_RCVBUF */, 10 /* SO_OOBINLINE */,
        12 /* SO_PRIORITY */, 18 /* SO_RCVLOWAT */, 32 /* SO_SNDBUFFORCE */, 33 /* SO_RCVBUFFORCE */];

    private const ulong MsgFastOpen = 0x20000000;

    private static ArgCondition FastOpenFlag(int arg) => new(arg, ArgOp.MaskedEqual, MsgFastOpen, MsgFastOpen);

    private static readonly ConditionalWeakTable<Policy, object> DatagramPolicies = new();
    private static readonly ConditionalWeakTable<Policy, object> GuardedSendPolicies = new();

    /// <summary>True when a unix/directory rule redirects UDP sockets ("protocol": "udp"): datagram calls are then trapped.</summary>
    public static bool HasDatagramRules(Policy policy) =>
        (bool)DatagramPolicies.GetValue(policy, p => p.Rules.Any(r => r.Action is RedirectAction && r.Protocol == RuleProtocol.Udp));

    /// <summary>
    /// True when a reject rule can refuse a UDP destination (protocol "udp" or "any", for connect: a send is
    /// decided as a connect). An unconnected UDP socket names its destination on every send, so such a policy
    /// must see the sends that can carry an address, or a sendto would go past the rule. blockInet needs
    /// nothing here: it refuses socket() itself.
    /// </summary>
    public static bool HasDatagramRejects(Policy policy) =>
        (bool)GuardedSendPolicies.GetValue(policy, p => p.Rules.Any(r => r.Action is RejectAction && !r.MatchesUnixSockets
            && r.Protocol is RuleProtocol.Udp or RuleProtocol.Any && r.Direction is RuleDirection.Any or RuleDirection.Connect));

    /// <summary>True when sends that can name an address are trapped and decided by the datagram code (<see cref="HasDatagramRules"/> or <see cref="HasDatagramRejects"/>).</summary>
    public static bool TrapsDatagramSends(Policy policy) => HasDatagramRules(policy) || HasDatagramRejects(policy);

    public static IReadOnlyList<SyscallRule> For(Policy policy)
    {
        var rules = new List<SyscallRule>();
        bool decides = policy.Rules.Any(r => r.Action is not AllowAction);
        bool datagrams = HasDatagramRules(policy);
        bool sends = datagrams || HasDatagramRejects(policy);
        if (decides)
        {
            rules.Add(new(Syscalls.Connect, FilterAction.Notify));
            rules.Add(new(Syscalls.Bind, FilterAction.Notify));
            // MSG_FASTOPEN makes a send connect (TCP Fast Open): trapped with that flag only, so the data path
            // (every other send) stays at full speed. The flags are arg 3 of sendto/sendmmsg, arg 2 of sendmsg.
            rules.Add(new(Syscalls.SendTo, FilterAction.Notify, FastOpenFlag(3)));
            if (!sends)
            {
                rules.Add(new(Syscalls.SendMsg, FilterAction.Notify, FastOpenFlag(2)));
                rules.Add(new(Syscalls.SendMmsg, FilterAction.Notify, FastOpenFlag(3)));
            }
            // io_uring's connect/accept/socket never pass through seccomp: without it libraries fall back.
            rules.Add(new(Syscalls.IoUringSetup, FilterAction.Errno(Errors.ENOSYS)));
            // A target's root and mount namespace decide where its socket paths lead. The engine remembers that a
            // task sees our tree and looks again only after one of the calls that change them, each seen before it
            // runs: chroot, pivot_root, setns, unshare of the mount namespace. No later filter can take them from us
            // (the kernel refuses a second listener in a task's filter chain, EBUSY; a filter's TRACE ranks below
            // our notification); on i386 and x32 they answer ENOSYS, as every call we trap does.
            rules.Add(new(Syscalls.Chroot, FilterAction.Notify));
            rules.Add(new(Syscalls.PivotRoot, FilterAction.Notify));
            rules.Add(new(Syscalls.SetNs, FilterAction.Notify));
            rules.Add(new(Syscalls.Unshare, FilterAction.Notify, new ArgCondition(0, ArgOp.MaskedEqual, CloneNewNs, CloneNewNs)));
        }
        if (policy.HasRedirectRules)
        {
            rules.Add(new(Syscalls.GetSockName, FilterAction.Notify));
            rules.Add(new(Syscalls.GetPeerName, FilterAction.Notify));
            foreach (int level in (int[])[SolIp, SolTcp, SolIpv6])
            {
                rules.Add(new(Syscalls.GetSockOpt, FilterAction.Notify, new ArgCondition(1, ArgOp.Equal, (ulong)level)));
                rules.Add(new(Syscalls.SetSockOpt, FilterAction.Notify, new ArgCondition(1, ArgOp.Equal, (ulong)level)));
            }
            foreach (int option in (int[])[SoDomain, SoProtocol])
                rules.Add(new(Syscalls.GetSockOpt, FilterAction.Notify,
                    new ArgCondition(1, ArgOp.Equal, SolSocket), new ArgCondition(2, ArgOp.Equal, (ulong)option)));
            foreach (int option in MarkedSocketOptions)
                rules.Add(new(Syscalls.SetSockOpt, FilterAction.Notify,
                    new ArgCondition(1, ArgOp.Equal, SolSocket), new ArgCondition(2, ArgOp.Equal, (ulong)option)));
            // SHUT_WR is the per-connection half-close; only SHUT_RD/SHUT_RDWR can end a listener.
            rules.Add(new(Syscalls.Shutdown, FilterAction.Notify, new ArgCondition(1, ArgOp.NotEqual, ShutWr)));
            if (policy.AcceptConvert != AcceptConvert.None)
            {
                // Only an accept that asks for the peer's address has one to rewrite (all 64 bits: a pointer).
                var wantsAddress = new ArgCondition(1, ArgOp.NotEqual, 0, ArgCondition.FullMask);
                rules.Add(new(Syscalls.Accept, FilterAction.Notify, wantsAddress));
                rules.Add(new(Syscalls.Accept4, FilterAction.Notify, wantsAddress));
            }
        }
        if (sends)
        {
            // A datagram's address is arg 4 of sendto/recvfrom, a register: only calls that name one are trapped,
            // so the data path of connected sockets (TCP's included) stays untrapped.
            var namesAddress = new ArgCondition(4, ArgOp.NotEqual, 0, ArgCondition.FullMask);
            rules.Add(new(Syscalls.SendTo, FilterAction.Notify, namesAddress));
            // msg_name lies inside the msghdr, in the program's memory, out of BPF's sight: every call is trapped.
            rules.Add(new(Syscalls.SendMsg, FilterAction.Notify));
            rules.Add(new(Syscalls.SendMmsg, FilterAction.Notify));
        }
        if (datagrams)
        {
            // Receives report senders of redirected sockets; a reject rule is about destinations, so a policy
            // that only rejects leaves them alone.
            rules.Add(new(Syscalls.RecvFrom, FilterAction.Notify, new ArgCondition(4, ArgOp.NotEqual, 0, ArgCondition.FullMask)));
            rules.Add(new(Syscalls.RecvMsg, FilterAction.Notify));
            rules.Add(new(Syscalls.RecvMmsg, FilterAction.Notify));
        }
        if (policy.BlockInet6)
            rules.Add(new(Syscalls.Socket, FilterAction.Errno(Errors.EAFNOSUPPORT), new ArgCondition(0, ArgOp.Equal, AfInet6)));
        if (policy.BlockInet)
            rules.Add(new(Syscalls.Socket, FilterAction.Errno(Errors.EAFNOSUPPORT), new ArgCondition(0, ArgOp.Equal, AfInet)));
        return rules;
    }
}
