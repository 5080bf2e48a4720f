using System.Runtime.InteropServices;

internal static partial class Interop
{
    /// <summary>Per-thread filesystem identity: raw syscalls, because glibc's wrappers of setgroups and
    /// friends broadcast the change to every thread of the process.</summary>
    internal static unsafe partial class Identity
    {
        private const long SysGetgroups = 115, SysSetgroups = 116, SysSetfsuid = 122, SysSetfsgid = 123;
        // An id that is never valid: setfsuid/setfsgid then change nothing and only report the current one.
        private const long Query = uint.MaxValue;

        [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
        private static partial long Syscall2(long number, long a, long b);

        /// <summary>Sets this thread's fsuid. The kernel reports no failure here: read it back with <see cref="FsUid"/>.</summary>
        public static void SetFsUid(uint uid) => Syscall2(SysSetfsuid, uid, 0);

        public static void SetFsGid(uint gid) => Syscall2(SysSetfsgid, gid, 0);

        public static uint FsUid() => (uint)Syscall2(SysSetfsuid, Query, 0);

        public static uint FsGid() => (uint)Syscall2(SysSetfsgid, Query, 0);

        /// <summary>Sets this thread's supplementary groups; 0 or errno.</summary>
        public static int SetThreadGroups(uint[] groups)
        {
            fixed (uint* g = groups)
                return Syscall2(SysSetgroups, groups.Length, (long)g) < 0 ? Marshal.GetLastPInvokeError() : 0;
        }

        /// <summary>This thread's supplementary groups, sorted; null when they cannot be read.</summary>
        public static uint[]? ThreadGroups()
        {
            long n = Syscall2(SysGetgroups, 0, 0);
            if (n < 0) return null;
            var groups = new uint[n];
            fixed (uint* g = groups) n = Syscall2(SysGetgroups, groups.Length, (long)g);
            if (n < 0 || n > groups.Length) return null;
            Array.Sort(groups, 0, (int)n);
            return groups[..(int)n];
        }
    }
}
