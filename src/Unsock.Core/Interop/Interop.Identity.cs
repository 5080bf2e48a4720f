using System.Runtime.InteropServices;

internal static partial class Interop
{
    /// <summary>Per-thread filesystem identity: raw syscalls, because glibc's wrappers of setgroups and
    /// friends broadcast the change to every thread of the process.</summary>
    internal static unsafe partial class Identity
    {
        private const long SysSetgroups = 116, SysSetfsuid = 122, SysSetfsgid = 123;

        [LibraryImport(Libc, EntryPoint = "syscall")]
        private static partial long Syscall2(long number, long a, long b);

        public static void SetFsUid(uint uid) => Syscall2(SysSetfsuid, uid, 0);

        public static void SetFsGid(uint gid) => Syscall2(SysSetfsgid, gid, 0);

        public static void SetThreadGroups(uint[] groups)
        {
            fixed (uint* g = groups) Syscall2(SysSetgroups, groups.Length, (long)g);
        }
    }
}
