using Unsock.Core.Filter;
using static Unsock.Tests.Filter.FilterRuleSets;

namespace Unsock.Tests.Filter;

/// <summary>What the compiled program decides, run through a BPF interpreter on hand-made seccomp_data.</summary>
public class FilterDecisionTests
{
    private const ulong HighGarbage = 0xDEADBEEF_00000000;

    private static readonly SeccompProgram Program = FilterCompiler.Compile(FilterRuleSets.Typical());

    private static uint Decide(SeccompData data) => BpfInterpreter.Run(Program, data);

    [Fact]
    public void ConnectAndBindAreNotifiedWhateverTheArguments()
    {
        Assert.Equal(SeccompAction.Notify, Decide(SeccompData.X86_64(Syscalls.Connect, 3, 0x7ffc0000, 16)));
        Assert.Equal(SeccompAction.Notify, Decide(SeccompData.X86_64(Syscalls.Connect, ulong.MaxValue, 0, 0)));
        Assert.Equal(SeccompAction.Notify, Decide(SeccompData.X86_64(Syscalls.Bind, 5, 0x1000, 28)));
    }

    [Theory]
    [InlineData(0UL, 1UL, true)]          // SOL_IP
    [InlineData(6UL, 4UL, true)]          // SOL_TCP
    [InlineData(41UL, 26UL, true)]        // SOL_IPV6
    [InlineData(1UL, 39UL, true)]         // SOL_SOCKET, SO_DOMAIN
    [InlineData(1UL, 7UL, false)]         // SOL_SOCKET, SO_SNDBUF
    [InlineData(1UL, 3UL, false)]         // SOL_SOCKET, SO_TYPE
    [InlineData(17UL, 0UL, false)]        // SOL_UDP
    [InlineData(0x106UL, 0UL, false)]     // only the exact level counts
    [InlineData(HighGarbage | 6, 4UL, true)]
    [InlineData(HighGarbage | 0, 4UL, true)]
    [InlineData(HighGarbage | 1, HighGarbage | 39, true)]
    [InlineData(HighGarbage | 1, HighGarbage | 7, false)]
    public void GetSockOptIsNotifiedOnlyForIpLevelsAndSoDomainLookingAtTheLow32Bits(ulong level, ulong optname, bool notified)
    {
        uint action = Decide(SeccompData.X86_64(Syscalls.GetSockOpt, 3, level, optname, 0x7ffc0000, 0x7ffc0010));
        Assert.Equal(notified ? SeccompAction.Notify : SeccompAction.Allow, action);
    }

    [Theory]
    [InlineData(0UL, true)]                     // SHUT_RD
    [InlineData(1UL, false)]                    // SHUT_WR
    [InlineData(2UL, true)]                     // SHUT_RDWR
    [InlineData(HighGarbage | 1, false)]        // the kernel sees SHUT_WR
    [InlineData(HighGarbage | 2, true)]
    [InlineData(0x1_00000001UL, false)]
    [InlineData(0xFFFFFFFF_FFFFFFFFUL, true)]   // int -1, sign-extended
    [InlineData(0x00000000_FFFFFFFFUL, true)]   // int -1, zero-extended
    [InlineData(0x80000001UL, true)]
    public void ShutdownIsNotifiedUnlessTheLow32BitsSayShutWr(ulong how, bool notified)
    {
        Assert.Equal(notified ? SeccompAction.Notify : SeccompAction.Allow, Decide(SeccompData.X86_64(Syscalls.Shutdown, 4, how)));
    }

    [Theory]
    [InlineData(10UL, true)]
    [InlineData(HighGarbage | 10, true)]
    [InlineData(0xFFFFFFFF_0000000AUL, true)]
    [InlineData(2UL, false)]
    [InlineData(1UL, false)]
    [InlineData(HighGarbage | 2, false)]
    [InlineData(0x10AUL, false)]           // only the exact family counts
    public void SocketFailsWithEafnosupportOnlyForAfInet6(ulong domain, bool refused)
    {
        uint action = Decide(SeccompData.X86_64(Syscalls.Socket, domain, 1, 0));
        Assert.Equal(refused ? SeccompAction.Errno(EAfNoSupport) : SeccompAction.Allow, action);
    }

    [Fact]
    public void IoUringSetupFailsWithEnosys()
    {
        Assert.Equal(SeccompAction.Errno(ENoSys), Decide(SeccompData.X86_64(Syscalls.IoUringSetup, 8, 0x7ffc0000)));
    }

    [Theory]
    [InlineData(Syscalls.GetPid)]
    [InlineData(0)]                     // read
    [InlineData(1)]                     // write
    [InlineData(Syscalls.Accept)]
    [InlineData(Syscalls.Accept4)]
    [InlineData(Syscalls.SendTo)]
    [InlineData(Syscalls.Listen)]
    [InlineData(59)]                    // execve
    [InlineData(231)]                   // exit_group
    [InlineData(Syscalls.Seccomp)]
    public void SyscallsWithoutRulesAreAllowed(int nr)
    {
        Assert.Equal(SeccompAction.Allow, Decide(SeccompData.X86_64(nr, 3, 0x7ffc0000, 16)));
    }

    [Theory]
    [InlineData(102)]   // socketcall: multiplexes every socket call
    [InlineData(362)]   // connect
    [InlineData(361)]   // bind
    [InlineData(365)]   // getsockopt
    [InlineData(373)]   // shutdown
    [InlineData(359)]   // socket
    [InlineData(425)]   // io_uring_setup
    public void I386CallsThatX86_64RulesCatchFailWithEnosysWhateverTheArguments(int nr)
    {
        Assert.Equal(SeccompAction.Errno(ENoSys), Decide(SeccompData.I386(nr, 3, 2, 1)));
        Assert.Equal(SeccompAction.Errno(ENoSys), Decide(SeccompData.I386(nr, 1, 1, 7)));
    }

    [Theory]
    [InlineData(20)]    // getpid
    [InlineData(3)]     // read
    [InlineData(4)]     // write
    [InlineData(11)]    // execve
    [InlineData(252)]   // exit_group
    [InlineData(364)]   // accept4
    [InlineData(363)]   // listen
    [InlineData(41)]    // i386 dup: the x86_64 number of socket means something else here
    [InlineData(42)]    // i386 pipe: the x86_64 number of connect
    public void OtherI386CallsAreAllowed(int nr)
    {
        Assert.Equal(SeccompAction.Allow, Decide(SeccompData.I386(nr, 3, 0, 0)));
    }

    [Theory]
    [InlineData(Syscalls.Connect)]
    [InlineData(Syscalls.Bind)]
    [InlineData(Syscalls.Shutdown)]
    [InlineData(Syscalls.Socket)]
    [InlineData(Syscalls.IoUringSetup)]
    [InlineData(542)]   // x32 getsockopt has its own number
    public void X32CallsThatX86_64RulesCatchFailWithEnosys(int nr)
    {
        Assert.Equal(SeccompAction.Errno(ENoSys), Decide(SeccompData.X32(nr, 1, 1, 0)));
    }

    [Theory]
    [InlineData(0)]                     // read
    [InlineData(Syscalls.GetPid)]
    [InlineData(Syscalls.Accept)]
    [InlineData(231)]                   // exit_group
    public void OtherX32CallsAreAllowed(int nr)
    {
        Assert.Equal(SeccompAction.Allow, Decide(SeccompData.X32(nr, 3, 0, 0)));
    }

    [Theory]
    [InlineData(0xC00000B7u)]   // AUDIT_ARCH_AARCH64
    [InlineData(0x40000028u)]   // AUDIT_ARCH_ARM
    [InlineData(0x4000003Eu)]   // x32 as libseccomp names it; the kernel never reports it
    [InlineData(0u)]
    public void UnknownArchitecturesKillTheProcess(uint arch)
    {
        Assert.Equal(SeccompAction.KillProcess, Decide(new SeccompData(Syscalls.GetPid, arch, 0, new ulong[6])));
        Assert.Equal(SeccompAction.KillProcess, Decide(new SeccompData(Syscalls.Connect, arch, 0, new ulong[6])));
    }

    [Fact]
    public void FullWidthNotEqualComparesAll64Bits()
    {
        // sendto with a destination address: a pointer, so every bit counts.
        SeccompProgram program = FilterCompiler.Compile(
            [new SyscallRule(Syscalls.SendTo, FilterAction.Notify, new ArgCondition(4, ArgOp.NotEqual, 0, ArgCondition.FullMask))]);
        Assert.Equal(SeccompAction.Allow, BpfInterpreter.Run(program, SeccompData.X86_64(Syscalls.SendTo, 3, 0x1000, 5, 0, 0, 0)));
        Assert.Equal(SeccompAction.Notify, BpfInterpreter.Run(program, SeccompData.X86_64(Syscalls.SendTo, 3, 0x1000, 5, 0, 0x7ffc0000, 16)));
        Assert.Equal(SeccompAction.Notify, BpfInterpreter.Run(program, SeccompData.X86_64(Syscalls.SendTo, 3, 0x1000, 5, 0, 0x1_00000000, 16)));
    }

    [Fact]
    public void GreaterEqualIsAnUnsigned64BitComparison()
    {
        SeccompProgram program = FilterCompiler.Compile(
            [new SyscallRule(Syscalls.SendTo, FilterAction.Errno(90), new ArgCondition(2, ArgOp.GreaterEqual, 65536, ArgCondition.FullMask))]);
        Assert.Equal(SeccompAction.Allow, BpfInterpreter.Run(program, SeccompData.X86_64(Syscalls.SendTo, 3, 0x1000, 65535)));
        Assert.Equal(SeccompAction.Errno(90), BpfInterpreter.Run(program, SeccompData.X86_64(Syscalls.SendTo, 3, 0x1000, 65536)));
        Assert.Equal(SeccompAction.Errno(90), BpfInterpreter.Run(program, SeccompData.X86_64(Syscalls.SendTo, 3, 0x1000, 0x1_00000000)));
    }

    [Fact]
    public void MaskedEqualLooksOnlyAtTheMaskBits()
    {
        // socket(..., SOCK_DGRAM | SOCK_NONBLOCK): the type's low byte.
        SeccompProgram program = FilterCompiler.Compile(
            [new SyscallRule(Syscalls.Socket, FilterAction.Notify, new ArgCondition(1, ArgOp.MaskedEqual, 2, 0xFF))]);
        Assert.Equal(SeccompAction.Notify, BpfInterpreter.Run(program, SeccompData.X86_64(Syscalls.Socket, 2, 2 | 0x800)));
        Assert.Equal(SeccompAction.Notify, BpfInterpreter.Run(program, SeccompData.X86_64(Syscalls.Socket, 2, HighGarbage | 2)));
        Assert.Equal(SeccompAction.Allow, BpfInterpreter.Run(program, SeccompData.X86_64(Syscalls.Socket, 2, 1 | 0x800)));
    }

    [Fact]
    public void AnIntValueGivenSignExtendedMatchesTheKernelsInt()
    {
        SeccompProgram program = FilterCompiler.Compile(
            [new SyscallRule(Syscalls.Connect, FilterAction.Notify, new ArgCondition(0, ArgOp.Equal, unchecked((ulong)-100L)))]);
        Assert.Equal(SeccompAction.Notify, BpfInterpreter.Run(program, SeccompData.X86_64(Syscalls.Connect, 0xFFFFFF9C)));
        Assert.Equal(SeccompAction.Notify, BpfInterpreter.Run(program, SeccompData.X86_64(Syscalls.Connect, unchecked((ulong)-100L))));
        Assert.Equal(SeccompAction.Allow, BpfInterpreter.Run(program, SeccompData.X86_64(Syscalls.Connect, 100)));
    }

    [Fact]
    public void DisassemblyHasOneLinePerInstructionAndNamesTheActions()
    {
        string[] lines = Program.Disassemble().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(Program.InstructionCount, lines.Length);
        Assert.Contains(lines, l => l.Contains("ret USER_NOTIF"));
        Assert.Contains(lines, l => l.Contains("ret ERRNO(97)"));
        Assert.Contains(lines, l => l.Contains("ret ERRNO(38)"));
        Assert.Contains(lines, l => l.Contains("ret KILL_PROCESS"));
        Assert.Contains(lines, l => l.Contains("; arch"));
        Assert.DoesNotContain(lines, l => l.Contains("???"));
    }
}
