using Microsoft.Win32.SafeHandles;
using Native = global::Interop;
using static Interop.SeccompNotify;

namespace Unsock.Core.Engine;

/// <summary>A trapped syscall as the kernel reported it: who, which call, its raw register arguments.</summary>
public readonly record struct SyscallRequest(ulong Id, int Pid, int Nr, uint Arch, ulong A0, ulong A1, ulong A2, ulong A3, ulong A4, ulong A5);

/// <summary>
/// The supervisor's end of a seccomp filter: receive notifications, answer them, inject fds. The fd is a
/// SafeHandle: a listener detached while another thread answers one of its calls is closed only after that
/// answer, so its number can never be reused under a thread that still holds it.
/// </summary>
public sealed unsafe class SeccompListener : IDisposable
{
    private readonly SafeFileHandle _handle;

    /// <param name="fd">The listener; this object owns and closes it.</param>
    public SeccompListener(int fd) => _handle = new SafeFileHandle(fd, ownsHandle: true);

    /// <summary>The fd number, for poll sets; only valid while the listener is attached.</summary>
    internal int RawFd => (int)_handle.DangerousGetHandle();

    public bool IsClosed => _handle.IsClosed;

    /// <summary>Holds the fd open for one operation; Fd is -1 once the listener is closed.</summary>
    private readonly ref struct Lease
    {
        private readonly SafeFileHandle? _held;
        public readonly int Fd;

        public Lease(SafeFileHandle handle)
        {
            bool added = false;
            try { handle.DangerousAddRef(ref added); }
            catch (ObjectDisposedException) { }
            _held = added ? handle : null;
            Fd = added ? (int)handle.DangerousGetHandle() : -1;
        }

        public void Dispose() => _held?.DangerousRelease();
    }

    /// <summary>Receives one pending notification; false when it vanished (the target was interrupted).</summary>
    public bool TryReceive(out SyscallRequest request)
    {
        request = default;
        using var lease = new Lease(_handle);
        if (lease.Fd < 0) return false;
        Notif n;
        int err = Receive(lease.Fd, &n);
        if (err != 0)
        {
            if (err is Errors.ENOENT or Errors.EINTR or Errors.EAGAIN) return false;
            throw new Native.ErrnoException(err, "SECCOMP_IOCTL_NOTIF_RECV");
        }
        var a = n.Data.Args;
        request = new(n.Id, (int)n.Pid, n.Data.Nr, n.Data.Arch, a[0], a[1], a[2], a[3], a[4], a[5]);
        return true;
    }

    public bool IsValid(ulong id)
    {
        using var lease = new Lease(_handle);
        return lease.Fd >= 0 && Native.SeccompNotify.IsValid(lease.Fd, id);
    }

    /// <summary>Lets the call proceed in the kernel as the program made it. Only for calls that are not ours.</summary>
    public int Continue(ulong id)
    {
        var r = new NotifResp { Id = id, Flags = RespFlagContinue };
        return Answer(&r);
    }

    public int Fail(ulong id, int errno)
    {
        var r = new NotifResp { Id = id, Error = -errno };
        return Answer(&r);
    }

    public int Succeed(ulong id, long value)
    {
        var r = new NotifResp { Id = id, Val = value };
        return Answer(&r);
    }

    private int Answer(NotifResp* r)
    {
        using var lease = new Lease(_handle);
        return lease.Fd < 0 ? Errors.EBADF : Send(lease.Fd, r);
    }

    /// <summary>Replaces the target's <paramref name="targetFd"/> with our <paramref name="sourceFd"/> (like dup2). 0 or errno.</summary>
    public int ReplaceFd(ulong id, int sourceFd, int targetFd, bool closeOnExec)
    {
        var a = new NotifAddFd
        {
            Id = id, Flags = AddFdFlagSetFd, SrcFd = (uint)sourceFd, NewFd = (uint)targetFd,
            NewFdFlags = closeOnExec ? (uint)Native.Socket.OCloexec : 0,
        };
        int r = InjectFd(&a);
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
        int r = InjectFd(&a);
        targetFd = r;
        return r < 0 ? -r : 0;
    }

    private int InjectFd(NotifAddFd* a)
    {
        using var lease = new Lease(_handle);
        return lease.Fd < 0 ? -Errors.ENOENT : AddFd(lease.Fd, a);
    }

    public bool TrySetSyncWakeUp()
    {
        using var lease = new Lease(_handle);
        return lease.Fd >= 0 && Native.SeccompNotify.TrySetSyncWakeUp(lease.Fd);
    }

    public void Dispose() => _handle.Dispose();
}
