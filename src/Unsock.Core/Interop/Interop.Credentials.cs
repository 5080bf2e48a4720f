using System.Runtime.InteropServices;

internal static partial class Interop
{
    /// <summary>
    /// The calling thread's whole credentials: real/effective/saved ids, and capabilities.
    /// Raw syscalls throughout: glibc's setresuid and friends change every thread of the process.
    /// </summary>
    internal static unsafe partial class Credentials
    {
        private const long SysSetresuid = 117, SysGetresuid = 118, SysSetresgid = 119, SysGetresgid = 120,
            SysCapget = 125, SysCapset = 126;
        // _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set.
        private const uint CapabilityVersion3 = 0x20080522;
        // Leave an id as it is (the kernel's (uid_t)-1).
        public const uint Unchanged = uint.MaxValue;

        [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
        private static partial long Syscall3(long number, long a, long b, long c);

        [StructLayout(LayoutKind.Sequential)]
        private struct CapHeader
        {
            public uint Version;
            public int Pid;
        }

        [StructLayout(LayoutKind.Sequential)]
        private struct CapData
        {
            public uint Effective, Permitted, Inheritable;
        }

        /// <summary>A thread's capability sets as 64-bit masks.</summary>
        public readonly record struct CapabilitySets(ulong Effective, ulong Permitted, ulong Inheritable);

        private static int Err(long r) => r < 0 ? Marshal.GetLastPInvokeError() : 0;

        /// <summary>Sets this thread's real, effective and saved uid (<see cref="Unchanged"/> keeps one); 0 or errno.</summary>
        public static int SetResUid(uint real, uint effective, uint saved) => Err(Syscall3(SysSetresuid, real, effective, saved));

        public static int SetResGid(uint real, uint effective, uint saved) => Err(Syscall3(SysSetresgid, real, effective, saved));

        public static int GetResUid(out uint real, out uint effective, out uint saved)
        {
            uint r, e, s;
            int err = Err(Syscall3(SysGetresuid, (long)&r, (long)&e, (long)&s));
            (real, effective, saved) = (r, e, s);
            return err;
        }

        public static int GetResGid(out uint real, out uint effective, out uint saved)
        {
            uint r, e, s;
            int err = Err(Syscall3(SysGetresgid, (long)&r, (long)&e, (long)&s));
            (real, effective, saved) = (r, e, s);
            return err;
        }

        /// <summary>This thread's capability sets; 0 or errno.</summary>
        public static int GetCapabilities(out CapabilitySets sets)
        {
            var header = new CapHeader { Version = CapabilityVersion3, Pid = 0 };
            var data = stackalloc CapData[2];
            int err = Err(Syscall3(SysCapget, (long)&header, (long)data, 0));
            sets = new(Join(data[0].Effective, data[1].Effective), Join(data[0].Permitted, data[1].Permitted),
                Join(data[0].Inheritable, data[1].Inheritable));
            return err;
        }

        /// <summary>Sets this thread's capability sets (the kernel allows lowering, and raising within the permitted set); 0 or errno.</summary>
        public static int SetCapabilities(CapabilitySets sets)
        {
            var header = new CapHeader { Version = CapabilityVersion3, Pid = 0 };
            var data = stackalloc CapData[2];
            data[0] = new CapData { Effective = (uint)sets.Effective, Permitted = (uint)sets.Permitted, Inheritable = (uint)sets.Inheritable };
            data[1] = new CapData { Effective = (uint)(sets.Effective >> 32), Permitted = (uint)(sets.Permitted >> 32), Inheritable = (uint)(sets.Inheritable >> 32) };
            return Err(Syscall3(SysCapset, (long)&header, (long)data, 0));
        }

        private static ulong Join(uint low, uint high) => low | ((ulong)high << 32);
    }
}
