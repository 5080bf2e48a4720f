namespace Unsock.Core.Engine;

/// <summary>x86_64 system call numbers the engine handles.</summary>
internal static class Syscalls
{
    public const int Socket = 41, Connect = 42, Accept = 43, Shutdown = 48, Bind = 49,
        GetSockName = 51, GetPeerName = 52, SetSockOpt = 54, GetSockOpt = 55, Accept4 = 288, IoUringSetup = 425;

    public static string Name(int nr) => nr switch
    {
        Socket => "socket", Connect => "connect", Accept => "accept", Shutdown => "shutdown", Bind => "bind",
        GetSockName => "getsockname", GetPeerName => "getpeername", SetSockOpt => "setsockopt",
        GetSockOpt => "getsockopt", Accept4 => "accept4", _ => $"syscall {nr}",
    };
}
