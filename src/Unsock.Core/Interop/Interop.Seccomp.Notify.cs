using Unsock.Core;
using System.Runtime.InteropServices;


internal static partial class Interop
{
    /// <summary>The user-notification half of seccomp (kernel 5.0+; ADDFD 5.9; SYNC_WAKE_UP 6.6).</summary>
    internal static unsafe partial class SeccompNotify
    {
        // x86_64 ioctl numbers, checked against <linux/seccomp.h> with gcc.
        public const uint IoctlRecv = 0xc0502100;
        public const uint IoctlSend = 0xc0182101;
        public const uint IoctlIdValid = 0x40082102;
        public const uint IoctlAddFd = 0x40182103;
        public const uint IoctlSetFlags = 0x40082104;

        public const uint RespFlagContinue = 1;
        public const uint AddFdFlagSetFd = 1;
        public const uint AddFdFlagSend = 2;
        public const ulong FdSyncWakeUp = 1;

        [StructLayout(LayoutKind.Sequential)]
        public struct SeccompData
        {
            public int Nr;
            public uint Arch;
            public ulong InstructionPointer;
            public fixed ulong Args[6];
        }

        [StructLayout(LayoutKind.Sequential)]
        public struct Notif
        {
            public ulong Id;
            public uint Pid;
            public uint Flags;
            public SeccompData Data;
        }

        [StructLayout(LayoutKind.Sequential)]
        public struct NotifResp
        {
            public ulong Id;
            public long Val;
            public int Error;
            public uint Flags;
        }

        [StructLayout(LayoutKind.Sequential)]
        public struct NotifAddFd
        {
            public ulong Id;
            public uint Flags;
            public uint SrcFd;
            public uint NewFd;
            public uint NewFdFlags;
        }

        [LibraryImport(Libc, EntryPoint = "ioctl", SetLastError = true)]
        private static partial int Ioctl(int fd, nuint request, void* arg);

        /// <summary>Returns 0 or an errno. ENOENT means the target was interrupted: not an error.</summary>
        public static int Receive(int listener, Notif* notif)
        {
            *notif = default; // the kernel insists on a zeroed buffer
            return Ioctl(listener, IoctlRecv, notif) < 0 ? Marshal.GetLastPInvokeError() : 0;
        }

        public static int Send(int listener, NotifResp* resp) =>
            Ioctl(listener, IoctlSend, resp) < 0 ? Marshal.GetLastPInvokeError() : 0;

        /// <summary>True while the target still waits for this notification (it has not been interrupted or killed).</summary>
        public static bool IsValid(int listener, ulong id) => Ioctl(listener, IoctlIdValid, &id) == 0;

        /// <summary>Installs <paramref name="srcFd"/> in the target; returns the target's fd number or -errno.</summary>
        public static int AddFd(int listener, NotifAddFd* addFd)
        {
            int r = Ioctl(listener, IoctlAddFd, addFd);
            return r < 0 ? -Marshal.GetLastPInvokeError() : r;
        }

        /// <summary>Hands the CPU straight to the woken side (6.6+). False on older kernels.</summary>
        public static bool TrySetSyncWakeUp(int listener)
        {
            ulong flags = FdSyncWakeUp;
            return Ioctl(listener, IoctlSetFlags, (void*)flags) == 0;
        }
    }
}
