using System.Buffers.Binary;
using System.Text;

namespace Unsock.Core.Filter;

/// <summary>A classic BPF seccomp program: an array of 8-byte <c>struct sock_filter</c> in host (little-endian) order.</summary>
public sealed class SeccompProgram
{
    /// <summary>BPF_MAXINSNS: the kernel refuses longer programs.</summary>
    public const int MaxInstructions = 4096;

    /// <summary>Size of one <c>struct sock_filter</c>.</summary>
    public const int InstructionSize = 8;

    /// <summary>Wraps an already compiled program, e.g. one read back from a file.</summary>
    public SeccompProgram(ReadOnlyMemory<byte> bytes)
    {
        if (bytes.Length == 0 || bytes.Length % InstructionSize != 0)
        {
            throw new ArgumentException($"a seccomp program is a non-empty array of {InstructionSize}-byte instructions, got {bytes.Length} bytes", nameof(bytes));
        }

        if (bytes.Length / InstructionSize > MaxInstructions)
        {
            throw new ArgumentException($"a seccomp program has at most {MaxInstructions} instructions, got {bytes.Length / InstructionSize}", nameof(bytes));
        }

        Bytes = bytes.ToArray();
    }

    public ReadOnlyMemory<byte> Bytes { get; }

    public int InstructionCount => Bytes.Length / InstructionSize;

    /// <summary>Reads instruction <paramref name="index"/> as (code, jt, jf, k).</summary>
    public (ushort Code, byte Jt, byte Jf, uint K) Instruction(int index)
    {
        ReadOnlySpan<byte> insn = Bytes.Span.Slice(index * InstructionSize, InstructionSize);
        return (BinaryPrimitives.ReadUInt16LittleEndian(insn), insn[2], insn[3], BinaryPrimitives.ReadUInt32LittleEndian(insn[4..]));
    }

    /// <summary>One line per instruction, jump targets as absolute line numbers, seccomp_data offsets and return actions named.</summary>
    public string Disassemble()
    {
        var text = new StringBuilder();
        for (int pc = 0; pc < InstructionCount; pc++)
        {
            var (code, jt, jf, k) = Instruction(pc);
            text.Append($"{pc:D4}: ");
            text.Append(code switch
            {
                0x20 => $"ld  [{k}]{DescribeOffset(k)}",
                0x00 => $"ld  #0x{k:x}",
                0x01 => $"ldx #0x{k:x}",
                0x60 => $"ld  M[{k}]",
                0x61 => $"ldx M[{k}]",
                0x02 => $"st  M[{k}]",
                0x03 => $"stx M[{k}]",
                0x05 => $"ja  {pc + 1 + k:D4}",
                0x15 => $"jeq #0x{k:x} {pc + 1 + jt:D4} {pc + 1 + jf:D4}",
                0x25 => $"jgt #0x{k:x} {pc + 1 + jt:D4} {pc + 1 + jf:D4}",
                0x35 => $"jge #0x{k:x} {pc + 1 + jt:D4} {pc + 1 + jf:D4}",
                0x45 => $"jset #0x{k:x} {pc + 1 + jt:D4} {pc + 1 + jf:D4}",
                0x54 => $"and #0x{k:x}",
                0x44 => $"or  #0x{k:x}",
                0x04 => $"add #0x{k:x}",
                0x14 => $"sub #0x{k:x}",
                0x06 => $"ret {DescribeAction(k)}",
                0x16 => "ret A",
                0x07 => "tax",
                0x87 => "txa",
                _ => $"??? code=0x{code:x4} jt={jt} jf={jf} k=0x{k:x}",
            });
            text.Append('\n');
        }

        return text.ToString();
    }

    private static string DescribeOffset(uint offset) => offset switch
    {
        0 => " ; nr",
        4 => " ; arch",
        8 => " ; ip lo",
        12 => " ; ip hi",
        >= 16 and < 64 => $" ; arg{(offset - 16) / 8} {((offset % 8) == 0 ? "lo" : "hi")}",
        _ => string.Empty,
    };

    internal static string DescribeAction(uint action) => (action & 0xFFFF0000) switch
    {
        0x80000000 => "KILL_PROCESS",
        0x00000000 => "KILL_THREAD",
        0x00030000 => "TRAP",
        0x00050000 => $"ERRNO({action & 0xFFFF})",
        0x7FC00000 => "USER_NOTIF",
        0x7FF00000 => $"TRACE({action & 0xFFFF})",
        0x7FFC0000 => "LOG",
        0x7FFF0000 => "ALLOW",
        _ => $"0x{action:x8}",
    };
}
