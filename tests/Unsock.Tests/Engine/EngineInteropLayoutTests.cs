using System.Runtime.InteropServices;

namespace Unsock.Tests.Engine;

/// <summary>The kernel structs of the notification path, at the sizes and offsets of the x86_64 headers.</summary>
public unsafe class EngineInteropLayoutTests
{
    [Fact]
    public void SeccompNotificationStructsHaveTheKernelsLayout()
    {
        Assert.Equal(64, sizeof(Interop.SeccompNotify.SeccompData));
        Assert.Equal(80, sizeof(Interop.SeccompNotify.Notif));
        Assert.Equal(24, sizeof(Interop.SeccompNotify.NotifResp));
        Assert.Equal(24, sizeof(Interop.SeccompNotify.NotifAddFd));
        Assert.Equal(16, (int)Marshal.OffsetOf<Interop.SeccompNotify.Notif>(nameof(Interop.SeccompNotify.Notif.Data)));
        Assert.Equal(16, (int)Marshal.OffsetOf<Interop.SeccompNotify.SeccompData>("Args"));
        Assert.Equal(16, (int)Marshal.OffsetOf<Interop.SeccompNotify.NotifResp>(nameof(Interop.SeccompNotify.NotifResp.Error)));
        Assert.Equal(12, (int)Marshal.OffsetOf<Interop.SeccompNotify.NotifAddFd>(nameof(Interop.SeccompNotify.NotifAddFd.SrcFd)));
        Assert.Equal(20, (int)Marshal.OffsetOf<Interop.SeccompNotify.NotifAddFd>(nameof(Interop.SeccompNotify.NotifAddFd.NewFdFlags)));
    }

    [Fact]
    public void IoctlNumbersEncodeTheStructSizes()
    {
        // _IOWR('!', 0, struct seccomp_notif) and friends: size in bits 16-29, direction in 30-31.
        Assert.Equal((Interop.SeccompNotify.IoctlRecv >> 16) & 0x3FFF, (uint)sizeof(Interop.SeccompNotify.Notif));
        Assert.Equal((Interop.SeccompNotify.IoctlSend >> 16) & 0x3FFF, (uint)sizeof(Interop.SeccompNotify.NotifResp));
        Assert.Equal((Interop.SeccompNotify.IoctlAddFd >> 16) & 0x3FFF, (uint)sizeof(Interop.SeccompNotify.NotifAddFd));
        Assert.Equal(8u, (Interop.SeccompNotify.IoctlIdValid >> 16) & 0x3FFF);
    }

    [Fact]
    public void PidfdInfoIsTheFirst64ByteVersion()
    {
        Assert.Equal(64, sizeof(Interop.Pidfd.PidfdInfo));
        // mask, cgroupid, then pid tgid ppid ruid rgid euid egid suid sgid fsuid: fsuid at 16 + 9 * 4.
        Assert.Equal(52, (int)Marshal.OffsetOf<Interop.Pidfd.PidfdInfo>(nameof(Interop.Pidfd.PidfdInfo.FsUid)));
    }
}
