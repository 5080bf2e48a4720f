using Native = global::Interop;
using static Interop.SeccompNotify;

namespace Unsock.Core.Engine;

/// <summary>A trapped syscall as the kernel reported it: who, which call, its raw register arguments.</summary>
public readonly record struct SyscallRequest(ulong Id, int Pid, int Nr, uint Arch, ulong A0, ulong A1, ulong A2, ulong A3, ulong A4, ulong A5);

/// <summary>The supervisor's end of a seccomp filter: receive notifications, answer them, inject fds.</summary>
public sealed unsafe class SeccompListener(int fd) : IDisposable
{
    public int Fd { get; } = fd;

    /// <summary>Receives one pending notification; false when it vanished (the target was interrupted).</summary>
    public bool TryReceive(out SyscallRequest request)
    {
        Notif n;
        int err = Receive(Fd, &n);
        if (err != 0)
        {
            request = default;
            if (err is Errors.ENOENT or Errors.EINTR or Errors.EAGAIN) return false;
            throw new Native.ErrnoException(err, "SECCOMP_IOCTL_NOTIF_RECV");
        }
        var a = n.Data.Args;
        request = new(n.Id, (int)n.Pid, n.Data.Nr, n.Data.Arch, a[0], a[1], a[2], a[3], a[4], a[5]);
        return true;
    }

    public bool IsValid(ulong id) => Native.SeccompNotify.IsValid(Fd, id);

    /// <summary>Lets the call proceed in the kernel as the program made it. Only for calls that are not ours.</summary>
    public int Continue(ulong id)
    {
        var r = new NotifResp { Id = id, Flags = RespFlagContinue };
        return Send(Fd, &r);
    }

    public int Fail(ulong id, int errno)
    {
        var r = new NotifResp { Id = id, Error = -errno };
        return Send(Fd, &r);
    }

    public int Succeed(ulong id, long value)
    {
        var r = new NotifResp { Id = id, Val = value };
        return Send(Fd, &r);
    }

    /// <summary>Replaces the target's <paramref name="targetFd"/> with our <paramref name="sourceFd"/> (like dup2). 0 or errno.</summary>
    public int ReplaceFd(ulong id, int sourceFd, int targetFd, bool closeOnExec)
    {
        var a = new NotifAddFd
        {
            Id = id, Flags = AddFdFlagSetFd, SrcFd = (uint)sourceFd, NewFd = (uint)targetFd,
            NewFdFlags = closeOnExec ? (uint)Native.Socket.OCloexec : 0,
        };
        int r = AddFd(Fd, &a);
        return r < 0 ? -r : 0;
    }

    /// <summary>Installs <paramref name="sourceFd"/> as a new fd and answers the call with its number, atomically (5.14).</summary>
    public int InstallAndAnswer(ulong id, int sourceFd, bool closeOnExec, out int targetFd)
    {
        var a = new NotifAddFd
        {
            Id = id, Flags = AddFdFlagSend, SrcFd = (uint)sourceFd,
            NewFdFlags = closeOnExec ? (uint)Native.Socket.OCloexec : 0,
        };
        int r = AddFd(Fd, &a);
        targetFd = r;
        return r < 0 ? -r : 0;
    }

    public bool TrySetSyncWakeUp() => Native.SeccompNotify.TrySetSyncWakeUp(Fd);

    public void Dispose() => Native.Socket.Close(Fd);
}
