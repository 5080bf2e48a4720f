namespace Unsock.Core.Filter;

/// <summary>x86_64 system call numbers the filter rules name (arch/x86/entry/syscalls/syscall_64.tbl).</summary>
public static class Syscalls
{
    public const int GetPid = 39;
    public const int PivotRoot = 155;
    public const int Chroot = 161;
    public const int Unshare = 272;
    public const int SetNs = 308;
    public const int Socket = 41;
    public const int Connect = 42;
    public const int Accept = 43;
    public const int SendTo = 44;
    public const int RecvFrom = 45;
    public const int SendMsg = 46;
    public const int RecvMsg = 47;
    public const int Shutdown = 48;
    public const int Bind = 49;
    public const int Listen = 50;
    public const int GetSockName = 51;
    public const int GetPeerName = 52;
    public const int SocketPair = 53;
    public const int SetSockOpt = 54;
    public const int GetSockOpt = 55;
    public const int Accept4 = 288;
    public const int RecvMmsg = 299;
    public const int SendMmsg = 307;
    public const int Seccomp = 317;
    public const int IoUringSetup = 425;

    /// <summary>The call's name for messages.</summary>
    public static string Name(int nr) => nr switch
    {
        Socket => "socket", Connect => "connect", Accept => "accept", Shutdown => "shutdown", Bind => "bind",
        GetSockName => "getsockname", GetPeerName => "getpeername", SetSockOpt => "setsockopt",
        GetSockOpt => "getsockopt", Accept4 => "accept4", IoUringSetup => "io_uring_setup", SendTo => "sendto",
        SendMsg => "sendmsg", SendMmsg => "sendmmsg", RecvFrom => "recvfrom", RecvMsg => "recvmsg",
        RecvMmsg => "recvmmsg", PivotRoot => "pivot_root", Chroot => "chroot", Unshare => "unshare", SetNs => "setns",
        _ => $"syscall {nr}",
    };
}

/// <summary>AUDIT_ARCH_* values that appear in seccomp_data.arch on an x86_64 kernel.</summary>
public static class AuditArch
{
    public const uint X86_64 = 0xC000003E;
    public const uint I386 = 0x40000003;

    /// <summary>x32 calls report <see cref="X86_64"/> and set this bit in the syscall number.</summary>
    public const int X32SyscallBit = 0x40000000;
}
