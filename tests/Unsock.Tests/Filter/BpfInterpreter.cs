using Unsock.Core.Filter;

namespace Unsock.Tests.Filter;

/// <summary>The struct seccomp_data a filter sees: nr, arch, instruction pointer, six argument registers.</summary>
internal readonly record struct SeccompData(int Nr, uint Arch, ulong Ip, ulong[] Args)
{
    public static SeccompData X86_64(int nr, params ulong[] args) => new(nr, AuditArch.X86_64, 0x401000, Pad(args));

    public static SeccompData I386(int nr, params ulong[] args) => new(nr, AuditArch.I386, 0x8048000, Pad(args));

    public static SeccompData X32(int nr, params ulong[] args) => new(nr | AuditArch.X32SyscallBit, AuditArch.X86_64, 0x401000, Pad(args));

    private static ulong[] Pad(ulong[] args)
    {
        var six = new ulong[6];
        args.CopyTo(six, 0);
        return six;
    }

    /// <summary>32-bit little-endian word at <paramref name="offset"/> of the 64-byte struct.</summary>
    public uint Word(uint offset) => offset switch
    {
        0 => (uint)Nr,
        4 => Arch,
        8 => (uint)Ip,
        12 => (uint)(Ip >> 32),
        >= 16 and < 64 when offset % 4 == 0 => (offset % 8) == 0 ? (uint)Args[(offset - 16) / 8] : (uint)(Args[(offset - 16) / 8] >> 32),
        _ => throw new InvalidOperationException($"load from offset {offset} outside or misaligned in seccomp_data"),
    };
}

/// <summary>
/// Runs a classic BPF seccomp program the way the kernel does (net/core/filter.c and seccomp's checker):
/// the instructions libseccomp emits, with strict checks so that a malformed program fails the test.
/// </summary>
internal static class BpfInterpreter
{
    public static uint Run(SeccompProgram program, SeccompData data)
    {
        uint a = 0, x = 0;
        var scratch = new uint[16];
        int pc = 0;
        for (int steps = 0; steps <= program.InstructionCount; steps++)
        {
            if (pc < 0 || pc >= program.InstructionCount)
            {
                throw new InvalidOperationException($"program ran off its end at {pc}");
            }

            var (code, jt, jf, k) = program.Instruction(pc);
            pc++;
            switch (code)
            {
                case 0x20: a = data.Word(k); break;                 // BPF_LD | BPF_W | BPF_ABS
                case 0x00: a = k; break;                            // BPF_LD | BPF_IMM
                case 0x01: x = k; break;                            // BPF_LDX | BPF_IMM
                case 0x60: a = scratch[k]; break;                   // BPF_LD | BPF_MEM
                case 0x61: x = scratch[k]; break;                   // BPF_LDX | BPF_MEM
                case 0x02: scratch[k] = a; break;                   // BPF_ST
                case 0x03: scratch[k] = x; break;                   // BPF_STX
                case 0x07: x = a; break;                            // BPF_MISC | BPF_TAX
                case 0x87: a = x; break;                            // BPF_MISC | BPF_TXA
                case 0x54: a &= k; break;                           // BPF_ALU | BPF_AND | BPF_K
                case 0x44: a |= k; break;                           // BPF_ALU | BPF_OR | BPF_K
                case 0x04: a += k; break;                           // BPF_ALU | BPF_ADD | BPF_K
                case 0x14: a -= k; break;                           // BPF_ALU | BPF_SUB | BPF_K
                case 0x05: pc += (int)k; break;                     // BPF_JMP | BPF_JA
                case 0x15: pc += a == k ? jt : jf; break;           // BPF_JMP | BPF_JEQ | BPF_K
                case 0x25: pc += a > k ? jt : jf; break;            // BPF_JMP | BPF_JGT | BPF_K
                case 0x35: pc += a >= k ? jt : jf; break;           // BPF_JMP | BPF_JGE | BPF_K
                case 0x45: pc += (a & k) != 0 ? jt : jf; break;     // BPF_JMP | BPF_JSET | BPF_K
                case 0x06: return k;                                // BPF_RET | BPF_K
                case 0x16: return a;                                // BPF_RET | BPF_A
                default:
                    throw new InvalidOperationException($"instruction {pc - 1}: opcode 0x{code:x4} is not handled by the test interpreter");
            }
        }

        throw new InvalidOperationException("program did not return (classic BPF only jumps forward, so this is a broken program)");
    }
}

/// <summary>seccomp return values the tests expect.</summary>
internal static class SeccompAction
{
    public const uint Allow = 0x7FFF0000;
    public const uint Notify = 0x7FC00000;
    public const uint KillProcess = 0x80000000;

    public static uint Errno(int errno) => 0x00050000u | (uint)errno;
}
