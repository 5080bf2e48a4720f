namespace Unsock.Core.Filter;

/// <summary>
/// Apply <paramref name="Action"/> to the x86_64 system call <paramref name="Syscall"/> when all
/// <paramref name="Conditions"/> hold. Several rules for one syscall are OR-ed.
/// </summary>
public sealed record SyscallRule(int Syscall, FilterAction Action, params ArgCondition[] Conditions)
{
    public override string ToString() =>
        Conditions.Length == 0
            ? $"syscall {Syscall} -> {Action}"
            : $"syscall {Syscall} when {string.Join(" && ", Conditions)} -> {Action}";
}
