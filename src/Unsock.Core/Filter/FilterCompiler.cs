// Compiles SyscallRules into classic BPF with libseccomp 2.5 (libseccomp.so.2) rather than an emitter of
// our own: libseccomp is present wherever systemd is, it knows the syscall tables of every ABI the
// kernel can enter (x86_64, i386, x32) and maps one syscall across them by name, and it emits the
// 64-bit argument comparisons (high and low word) and the arch checks that are easy to get subtly
// wrong by hand. It can express everything the rules need: masked equality covers int arguments
// whose high half the kernel ignores, and "low 32 bits differ" becomes one masked-equality
// alternative per bit. We only take the program from it (seccomp_export_bpf) and load it ourselves
// (SeccompFilter) because libseccomp 2.5 cannot ask for WAIT_KILLABLE_RECV.
//
// Other ABIs: a separate libseccomp context per arch, merged into one program. On i386 and x32 every
// syscall that an x86_64 rule notifies or fails returns ENOSYS, whatever its arguments (the
// supervisor only understands x86_64 calls), and so does i386 socketcall (it multiplexes every
// socket call); everything else stays allowed so 32-bit programs still run. x32 calls carry
// AUDIT_ARCH_X86_64 with bit 0x40000000 in the number: libseccomp checks x32 numbers inside the
// x86_64 arch block, so an x86_64 rule never matches an x32 call and vice versa.
// Any other arch (impossible on an x86_64 kernel) kills the process: refusing every call with an
// errno would include exit_group and leave the program spinning, and letting it through would be a
// hole.
using System.Runtime.InteropServices;
using static Interop.Libseccomp;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace Unsock.Core.Filter;

/// <summary>Turns <see cref="SyscallRule"/>s into a seccomp BPF program whose default action is allow.</summary>
public static class FilterCompiler
{
    /// <summary>What other ABIs get for a syscall the x86_64 rules notify or fail.</summary>
    public const int OtherAbiErrno = 38; // ENOSYS: libraries fall back as on an old kernel

    /// <summary>A masked NotEqual becomes one alternative per mask bit; two in one rule would multiply.</summary>
    private const int MaxMaskedNotEqualPerRule = 1;

    public static SeccompProgram Compile(IEnumerable<SyscallRule> rules)
    {
        ArgumentNullException.ThrowIfNull(rules);
        if (RuntimeInformation.ProcessArchitecture != Architecture.X64)
        {
            throw new PlatformNotSupportedException($"the seccomp filter rules are written for x86_64 system calls; this process runs on {RuntimeInformation.ProcessArchitecture}");
        }

        try
        {
            return CompileRules(rules.ToList());
        }
        catch (DllNotFoundException e)
        {
            throw new SeccompException($"libseccomp.so.2 could not be loaded (install the libseccomp2 package); it compiles the seccomp filter: {e.Message}");
        }
    }

    private static SeccompProgram CompileRules(List<SyscallRule> ruleList)
    {
        var compiled = new List<(SyscallRule Rule, uint Action, List<ScmpArgCmp[]> Alternatives)>();
        foreach (SyscallRule rule in ruleList)
        {
            Validate(rule);
            if (rule.Action is not FilterAction.AllowAction)
            {
                compiled.Add((rule, ToLibseccompAction(rule.Action), Alternatives(rule)));
            }
        }

        CheckActionsPerSyscall(ruleList);
        return CompileWithLibseccomp(compiled);
    }

    private static SeccompProgram CompileWithLibseccomp(List<(SyscallRule Rule, uint Action, List<ScmpArgCmp[]> Alternatives)> compiled)
    {
        using FilterContextHandle x86_64 = NewContext(SCMP_ARCH_X86_64);
        using FilterContextHandle i386 = NewContext(SCMP_ARCH_X86);
        using FilterContextHandle x32 = NewContext(SCMP_ARCH_X32);

        foreach (var (rule, action, alternatives) in compiled)
        {
            foreach (ScmpArgCmp[] conditions in alternatives)
            {
                AddRule(x86_64, "x86_64", action, rule.Syscall, conditions, rule);
            }
        }

        uint refuse = SCMP_ACT_ERRNO(OtherAbiErrno);
        foreach (int syscall in compiled.Select(c => c.Rule.Syscall).Distinct())
        {
            string name = ResolveSyscallName(SCMP_ARCH_X86_64, syscall)!;
            if (seccomp_syscall_resolve_name_arch(SCMP_ARCH_X86, name) != NR_SCMP_ERROR)
            {
                AddRule(i386, "i386", refuse, syscall, [], null);
            }

            if (seccomp_syscall_resolve_name_arch(SCMP_ARCH_X32, name) != NR_SCMP_ERROR)
            {
                AddRule(x32, "x32", refuse, syscall, [], null);
            }
        }

        // socketcall has no x86_64 number: libseccomp hands out a pseudo number and maps it to i386's 102.
        AddRule(i386, "i386", refuse, seccomp_syscall_resolve_name("socketcall"), [], null);

        Merge(x86_64, i386, "i386");
        Merge(x86_64, x32, "x32");
        return Export(x86_64);
    }

    private static void Validate(SyscallRule rule)
    {
        ArgumentNullException.ThrowIfNull(rule);
        if (rule.Action is null)
        {
            throw new ArgumentException($"rule for syscall {rule.Syscall} has no action");
        }

        if (rule.Syscall < 0 || ResolveSyscallName(SCMP_ARCH_X86_64, rule.Syscall) is null)
        {
            throw new ArgumentException($"rule '{rule}': {rule.Syscall} is not an x86_64 system call number known to libseccomp");
        }

        if (rule.Conditions is null)
        {
            throw new ArgumentException($"rule for syscall {rule.Syscall}: Conditions is null (use no conditions instead)");
        }

        foreach (ArgCondition c in rule.Conditions)
        {
            if (c.Arg is < 0 or > 5)
            {
                throw new ArgumentException($"rule '{rule}': argument index {c.Arg} is outside 0-5");
            }

            if (c.Mask == 0)
            {
                throw new ArgumentException($"rule '{rule}': condition on arg{c.Arg} has mask 0, which compares nothing");
            }

            switch (c.Op)
            {
                case ArgOp.Equal or ArgOp.NotEqual:
                    _ = MaskedValue(rule, c);
                    break;
                case ArgOp.MaskedEqual:
                    if ((c.Value & ~c.Mask) != 0)
                    {
                        throw new ArgumentException($"rule '{rule}': MaskedEqual value 0x{c.Value:x} has bits outside mask 0x{c.Mask:x}, so it can never match");
                    }

                    break;
                case ArgOp.GreaterEqual:
                    if (c.Mask != ArgCondition.FullMask)
                    {
                        throw new ArgumentException($"rule '{rule}': GreaterEqual on arg{c.Arg} compares all 64 bits; libseccomp cannot compare only the bits of mask 0x{c.Mask:x}: pass Mask = ArgCondition.FullMask");
                    }

                    break;
                default:
                    throw new ArgumentException($"rule '{rule}': unknown comparison {(int)c.Op} on arg{c.Arg}");
            }
        }

        if (rule.Conditions.Count(c => c.Op == ArgOp.NotEqual && c.Mask != ArgCondition.FullMask) > MaxMaskedNotEqualPerRule)
        {
            throw new ArgumentException($"rule '{rule}': at most {MaxMaskedNotEqualPerRule} NotEqual condition on an int (masked) argument per rule; each one becomes one alternative per mask bit");
        }
    }

    /// <summary>The value to compare under the mask; an int value given sign-extended (e.g. (ulong)(long)-100) is accepted.</summary>
    private static ulong MaskedValue(SyscallRule rule, ArgCondition c)
    {
        if (c.Mask == ArgCondition.IntMask && (c.Value >> 32) == 0xFFFFFFFF && (c.Value & 0x80000000) != 0)
        {
            return c.Value & ArgCondition.IntMask;
        }

        if ((c.Value & ~c.Mask) != 0)
        {
            throw new ArgumentException($"rule '{rule}': value 0x{c.Value:x} for arg{c.Arg} has bits outside mask 0x{c.Mask:x} (use Mask = ArgCondition.FullMask for pointer and size arguments)");
        }

        return c.Value;
    }

    /// <summary>libseccomp silently drops conditional rules next to an unconditional one, and an Allow rule cannot exempt anything.</summary>
    private static void CheckActionsPerSyscall(List<SyscallRule> rules)
    {
        foreach (IGrouping<int, SyscallRule> group in rules.GroupBy(r => r.Syscall))
        {
            SyscallRule? allow = group.FirstOrDefault(r => r.Action is FilterAction.AllowAction);
            SyscallRule? other = group.FirstOrDefault(r => r.Action is not FilterAction.AllowAction);
            if (allow is not null && other is not null)
            {
                throw new ArgumentException($"syscall {group.Key} has an Allow rule ('{allow}') next to '{other}': rules are OR-ed, an Allow rule does not exempt calls from another rule; narrow the other rule's conditions instead");
            }

            SyscallRule? unconditional = group.FirstOrDefault(r => r.Conditions.Length == 0);
            SyscallRule? conflicting = unconditional is null ? null : group.FirstOrDefault(r => r.Action != unconditional.Action);
            if (unconditional is not null && conflicting is not null)
            {
                throw new ArgumentException($"syscall {group.Key}: '{unconditional}' matches every call, so '{conflicting}' with a different action could never apply");
            }
        }
    }

    private static uint ToLibseccompAction(FilterAction action) => action switch
    {
        FilterAction.NotifyAction => SCMP_ACT_NOTIFY,
        FilterAction.ErrnoAction e => SCMP_ACT_ERRNO(e.Code),
        _ => throw new ArgumentException($"unknown filter action {action}"),
    };

    /// <summary>The rule as OR-ed lists of AND-ed libseccomp comparisons.</summary>
    private static List<ScmpArgCmp[]> Alternatives(SyscallRule rule)
    {
        var common = new List<ScmpArgCmp>();
        ArgCondition? maskedNotEqual = null;
        foreach (ArgCondition c in rule.Conditions)
        {
            switch (c.Op)
            {
                case ArgOp.Equal when c.Mask == ArgCondition.FullMask:
                    common.Add(Compare(c.Arg, SCMP_CMP_EQ, c.Value, 0));
                    break;
                case ArgOp.Equal or ArgOp.MaskedEqual:
                    // The kernel reads only the low half of an int argument: a 64-bit compare could be dodged with garbage above.
                    common.Add(Compare(c.Arg, SCMP_CMP_MASKED_EQ, c.Mask, c.Op == ArgOp.Equal ? MaskedValue(rule, c) : c.Value));
                    break;
                case ArgOp.NotEqual when c.Mask == ArgCondition.FullMask:
                    common.Add(Compare(c.Arg, SCMP_CMP_NE, c.Value, 0));
                    break;
                case ArgOp.NotEqual:
                    maskedNotEqual = c;
                    break;
                case ArgOp.GreaterEqual:
                    common.Add(Compare(c.Arg, SCMP_CMP_GE, c.Value, 0));
                    break;
            }
        }

        if (maskedNotEqual is not ArgCondition ne)
        {
            return [common.ToArray()];
        }

        // (arg & mask) != value  <=>  some mask bit differs: one masked-equality alternative per bit, exact whatever the high half holds.
        ulong value = MaskedValue(rule, ne);
        var alternatives = new List<ScmpArgCmp[]>();
        for (int bit = 0; bit < 64; bit++)
        {
            ulong b = 1UL << bit;
            if ((ne.Mask & b) != 0)
            {
                alternatives.Add([.. common, Compare(ne.Arg, SCMP_CMP_MASKED_EQ, b, ~value & b)]);
            }
        }

        return alternatives;
    }

    private static ScmpArgCmp Compare(int arg, int op, ulong a, ulong b) =>
        new() { Arg = (uint)arg, Op = op, DatumA = a, DatumB = b };

    private static FilterContextHandle NewContext(uint arch)
    {
        FilterContextHandle ctx = seccomp_init(SCMP_ACT_ALLOW);
        if (ctx.IsInvalid)
        {
            throw new SeccompException("libseccomp could not create a filter context (seccomp_init failed)");
        }

        Check(seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS), "set the bad-arch action to KILL_PROCESS");
        if (arch != SCMP_ARCH_X86_64)
        {
            Check(seccomp_arch_remove(ctx, SCMP_ARCH_NATIVE), "remove the native arch from a context");
            Check(seccomp_arch_add(ctx, arch), $"add arch 0x{arch:x8} to a context");
        }

        return ctx;
    }

    private static unsafe void AddRule(FilterContextHandle ctx, string abi, uint action, int syscall, ScmpArgCmp[] conditions, SyscallRule? rule)
    {
        int rc;
        fixed (ScmpArgCmp* args = conditions)
        {
            rc = seccomp_rule_add_array(ctx, action, syscall, (uint)conditions.Length, args);
        }

        if (rc < 0)
        {
            string what = rule is not null
                ? $"rule '{rule}'"
                : $"{SeccompProgram.DescribeAction(action)} for syscall {ResolveSyscallName(SCMP_ARCH_X86_64, syscall) ?? syscall.ToString()}";
            string hint = rc == -17 ? " (another rule for this syscall has the same conditions and a different action)" : string.Empty;
            throw new SeccompException($"libseccomp refused {what} on {abi}: {SeccompException.DescribeErrno(-rc)}{hint}", -rc);
        }
    }

    private static void Merge(FilterContextHandle destination, FilterContextHandle source, string abi)
    {
        Check(seccomp_merge(destination, source), $"merge the {abi} filter into the x86_64 one");
        source.SetHandleAsInvalid(); // libseccomp freed it
    }

    private static unsafe SeccompProgram Export(FilterContextHandle ctx)
    {
        byte* name = stackalloc byte[] { (byte)'u', (byte)'n', (byte)'s', (byte)'o', (byte)'c', (byte)'k', (byte)'-', (byte)'b', (byte)'p', (byte)'f', 0 };
        int fd = memfd_create(name, (uint)MFD_CLOEXEC);
        if (fd < 0)
        {
            throw new SeccompException($"memfd_create for the compiled filter failed: {SeccompException.DescribeErrno(errno)}", errno);
        }

        try
        {
            Check(seccomp_export_bpf(ctx, fd), "export the filter as BPF");
            long size = lseek(fd, 0, SEEK_END);
            if (size < 0 || size > SeccompProgram.MaxInstructions * SeccompProgram.InstructionSize)
            {
                throw new SeccompException($"the compiled filter has an unusable size ({size} bytes; the kernel takes at most {SeccompProgram.MaxInstructions} instructions)");
            }

            byte[] bytes = new byte[size];
            fixed (byte* buffer = bytes)
            {
                long done = 0;
                while (done < size)
                {
                    long n = pread(fd, buffer + done, (size_t)(ulong)(size - done), done);
                    if (n <= 0)
                    {
                        throw new SeccompException($"reading back the compiled filter failed: {(n < 0 ? SeccompException.DescribeErrno(errno) : "unexpected end of file")}", n < 0 ? errno : 0);
                    }

                    done += n;
                }
            }

            return new SeccompProgram(bytes);
        }
        finally
        {
            close(fd);
        }
    }

    private static void Check(int rc, string what)
    {
        if (rc < 0)
        {
            throw new SeccompException($"libseccomp could not {what}: {SeccompException.DescribeErrno(-rc)}", -rc);
        }
    }
}
