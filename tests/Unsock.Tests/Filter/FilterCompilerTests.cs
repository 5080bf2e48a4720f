using Unsock.Core.Filter;

namespace Unsock.Tests.Filter;

/// <summary>Rule sets the compiler must refuse with a message naming the problem, and the program's shape.</summary>
public class FilterCompilerTests
{
    [Fact]
    public void GreaterEqualOnAnIntMaskIsRefusedBecauseLibseccompComparesAll64Bits()
    {
        var e = Assert.Throws<ArgumentException>(() => FilterCompiler.Compile(
            [new SyscallRule(Syscalls.Socket, FilterAction.Notify, new ArgCondition(0, ArgOp.GreaterEqual, 10))]));
        Assert.Contains("GreaterEqual on arg0", e.Message);
        Assert.Contains("FullMask", e.Message);
    }

    [Fact]
    public void AnEqualValueWiderThanItsMaskIsRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => FilterCompiler.Compile(
            [new SyscallRule(Syscalls.Connect, FilterAction.Notify, new ArgCondition(1, ArgOp.Equal, 0x1_00000000))]));
        Assert.Contains("value 0x100000000 for arg1 has bits outside mask 0xffffffff", e.Message);
    }

    [Fact]
    public void AMaskedEqualValueOutsideItsMaskIsRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => FilterCompiler.Compile(
            [new SyscallRule(Syscalls.Socket, FilterAction.Notify, new ArgCondition(1, ArgOp.MaskedEqual, 0x102, 0xFF))]));
        Assert.Contains("can never match", e.Message);
    }

    [Fact]
    public void AnArgumentIndexAboveFiveIsRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => FilterCompiler.Compile(
            [new SyscallRule(Syscalls.Connect, FilterAction.Notify, new ArgCondition(6, ArgOp.Equal, 1))]));
        Assert.Contains("argument index 6", e.Message);
    }

    [Fact]
    public void AnUnknownSyscallNumberIsRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => FilterCompiler.Compile([new SyscallRule(99999, FilterAction.Notify)]));
        Assert.Contains("99999 is not an x86_64 system call", e.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(4096)]
    [InlineData(-1)]
    public void AnErrnoOutsideTheKernelsRangeIsRefused(int errno)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => FilterAction.Errno(errno));
        Assert.Contains("1-4095", e.Message);
    }

    [Fact]
    public void AnAllowRuleNextToANotifyRuleForTheSameSyscallIsRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => FilterCompiler.Compile(
        [
            new SyscallRule(Syscalls.Shutdown, FilterAction.Notify),
            new SyscallRule(Syscalls.Shutdown, FilterAction.Allow, new ArgCondition(1, ArgOp.Equal, 1)),
        ]));
        Assert.Contains("syscall 48 has an Allow rule", e.Message);
    }

    [Fact]
    public void AConditionalRuleHiddenByAnUnconditionalOneWithAnotherActionIsRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => FilterCompiler.Compile(
        [
            new SyscallRule(Syscalls.Socket, FilterAction.Notify),
            new SyscallRule(Syscalls.Socket, FilterAction.Errno(97), new ArgCondition(0, ArgOp.Equal, 10)),
        ]));
        Assert.Contains("could never apply", e.Message);
    }

    [Fact]
    public void TwoActionsForTheSameConditionsAreRefusedWithLibseccompsReason()
    {
        var e = Assert.Throws<SeccompException>(() => FilterCompiler.Compile(
        [
            new SyscallRule(Syscalls.Socket, FilterAction.Notify, new ArgCondition(0, ArgOp.Equal, 10)),
            new SyscallRule(Syscalls.Socket, FilterAction.Errno(97), new ArgCondition(0, ArgOp.Equal, 10)),
        ]));
        Assert.Contains("EEXIST", e.Message);
        Assert.Contains("different action", e.Message);
    }

    [Fact]
    public void TwoMaskedNotEqualConditionsInOneRuleAreRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => FilterCompiler.Compile(
            [new SyscallRule(Syscalls.GetSockOpt, FilterAction.Notify, new ArgCondition(1, ArgOp.NotEqual, 1), new ArgCondition(2, ArgOp.NotEqual, 39))]));
        Assert.Contains("at most 1 NotEqual", e.Message);
    }

    [Fact]
    public void AllowOnlyRulesStillRefuseSocketcallOnI386AndAllowEverythingElse()
    {
        SeccompProgram program = FilterCompiler.Compile([new SyscallRule(Syscalls.Connect, FilterAction.Allow)]);
        Assert.Equal(SeccompAction.Allow, BpfInterpreter.Run(program, SeccompData.X86_64(Syscalls.Connect, 3)));
        Assert.Equal(SeccompAction.Allow, BpfInterpreter.Run(program, SeccompData.I386(362, 3)));
        Assert.Equal(SeccompAction.Errno(38), BpfInterpreter.Run(program, SeccompData.I386(102, 3)));
    }

    [Fact]
    public void AProgramIsRebuiltFromItsBytes()
    {
        SeccompProgram compiled = FilterCompiler.Compile(FilterRuleSets.Typical());
        var copy = new SeccompProgram(compiled.Bytes.ToArray());
        Assert.Equal(compiled.InstructionCount, copy.InstructionCount);
        Assert.Equal(compiled.Disassemble(), copy.Disassemble());
    }

    [Theory]
    [InlineData(0, "got 0 bytes")]
    [InlineData(7, "got 7 bytes")]
    [InlineData(12, "got 12 bytes")]
    [InlineData((SeccompProgram.MaxInstructions + 1) * 8, "at most 4096 instructions, got 4097")]
    public void BytesThatAreNotAWholeProgramAreRefused(int length, string expected)
    {
        var e = Assert.Throws<ArgumentException>(() => new SeccompProgram(new byte[length]));
        Assert.Contains(expected, e.Message);
    }
}
