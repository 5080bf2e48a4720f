namespace Unsock.Core.Filter;

/// <summary>How an <see cref="ArgCondition"/> compares a syscall argument register.</summary>
public enum ArgOp
{
    /// <summary><c>(arg &amp; Mask) == (Value &amp; Mask)</c>. With the default mask only the low 32 bits count (int arguments).</summary>
    Equal,

    /// <summary>The negation of <see cref="Equal"/> under the same mask.</summary>
    NotEqual,

    /// <summary>Unsigned 64-bit <c>arg &gt;= Value</c>; needs <c>Mask = ulong.MaxValue</c> (libseccomp cannot compare only the low half).</summary>
    GreaterEqual,

    /// <summary><c>(arg &amp; Mask) == Value</c>; Value must not have bits outside Mask.</summary>
    MaskedEqual,
}

/// <summary>
/// A condition on argument <paramref name="Arg"/> (0-5) of a system call.
/// The default mask compares only the low 32 bits because the kernel ignores the high half of
/// <c>int</c> arguments: a program must not slip past a rule by putting garbage there.
/// Use <c>Mask = ulong.MaxValue</c> for pointer and size arguments.
/// </summary>
public readonly record struct ArgCondition(int Arg, ArgOp Op, ulong Value, ulong Mask = ArgCondition.IntMask)
{
    /// <summary>The mask for an <c>int</c> argument: the kernel reads only the low 32 bits.</summary>
    public const ulong IntMask = 0xFFFFFFFF;

    /// <summary>The mask for a pointer or size argument: all 64 bits count.</summary>
    public const ulong FullMask = ulong.MaxValue;

    public override string ToString()
    {
        string arg = Mask == FullMask ? $"arg{Arg}" : Mask == IntMask ? $"(int)arg{Arg}" : $"arg{Arg} & 0x{Mask:x}";
        return Op switch
        {
            ArgOp.Equal or ArgOp.MaskedEqual => $"{arg} == 0x{Value:x}",
            ArgOp.NotEqual => $"{arg} != 0x{Value:x}",
            ArgOp.GreaterEqual => $"{arg} >= 0x{Value:x}",
            _ => $"{arg} ?{(int)Op} 0x{Value:x}",
        };
    }
}
