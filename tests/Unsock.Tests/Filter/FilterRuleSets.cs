using Unsock.Core.Filter;

namespace Unsock.Tests.Filter;

/// <summary>Rule sets shaped like the supervisor's real one.</summary>
internal static class FilterRuleSets
{
    public const int AfInet = 2;
    public const int AfInet6 = 10;
    public const int SolSocket = 1;
    public const int SoDomain = 39;
    public const int EAfNoSupport = 97;
    public const int ENoSys = 38;

    public static SyscallRule[] Typical() =>
    [
        new(Syscalls.Connect, FilterAction.Notify),
        new(Syscalls.Bind, FilterAction.Notify),
        new(Syscalls.GetSockOpt, FilterAction.Notify, new ArgCondition(1, ArgOp.Equal, 0)),
        new(Syscalls.GetSockOpt, FilterAction.Notify, new ArgCondition(1, ArgOp.Equal, 6)),
        new(Syscalls.GetSockOpt, FilterAction.Notify, new ArgCondition(1, ArgOp.Equal, 41)),
        new(Syscalls.GetSockOpt, FilterAction.Notify, new ArgCondition(1, ArgOp.Equal, SolSocket), new ArgCondition(2, ArgOp.Equal, SoDomain)),
        new(Syscalls.Shutdown, FilterAction.Notify, new ArgCondition(1, ArgOp.NotEqual, 1)),
        new(Syscalls.Socket, FilterAction.Errno(EAfNoSupport), new ArgCondition(0, ArgOp.Equal, AfInet6)),
        new(Syscalls.IoUringSetup, FilterAction.Errno(ENoSys)),
    ];
}
