using System.Runtime.InteropServices;

internal static partial class Interop
{
    /// <summary>Resource limits of this process.</summary>
    internal static unsafe partial class Limits
    {
        private const int RlimitNofile = 7;

        [StructLayout(LayoutKind.Sequential)]
        private struct RLimit
        {
            public ulong Current;
            public ulong Maximum;
        }

        [LibraryImport(Libc, EntryPoint = "getrlimit", SetLastError = true)]
        private static partial int GetRLimit(int resource, RLimit* limit);

        [LibraryImport(Libc, EntryPoint = "setrlimit", SetLastError = true)]
        private static partial int SetRLimit(int resource, RLimit* limit);

        /// <summary>Raises the soft RLIMIT_NOFILE to the hard one (as systemd does for services); the new soft limit.</summary>
        public static ulong RaiseFileLimit()
        {
            RLimit l;
            if (GetRLimit(RlimitNofile, &l) != 0) return 0;
            if (l.Current >= l.Maximum) return l.Current;
            l.Current = l.Maximum;
            return SetRLimit(RlimitNofile, &l) == 0 ? l.Current : 0;
        }

        /// <summary>The soft RLIMIT_NOFILE now.</summary>
        public static ulong FileLimit()
        {
            RLimit l;
            return GetRLimit(RlimitNofile, &l) == 0 ? l.Current : 0;
        }
    }
}
