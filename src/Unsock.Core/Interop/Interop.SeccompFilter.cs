using Unsock.Core;
using System.Runtime.InteropServices;
using Tmds.Linux;
using static Tmds.Linux.LibC;

internal static partial class Interop
{
    /// <summary>The raw prctl()/seccomp() path that installs a BPF filter with flags libseccomp 2.5 does not know.</summary>
    internal static unsafe partial class SeccompFilter
    {
        internal const int SYS_prctl = 157;
        internal const int SYS_seccomp = 317;

        internal const int PR_SET_NO_NEW_PRIVS = 38;

        internal const int SECCOMP_SET_MODE_FILTER = 1;
        internal const uint SECCOMP_FILTER_FLAG_NEW_LISTENER = 1u << 3;   // 5.0
        internal const uint SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1u << 5;   // 5.19

        /// <summary>struct sock_filter.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct SockFilter
        {
            public ushort Code;
            public byte Jt;
            public byte Jf;
            public uint K;
        }

        /// <summary>struct sock_fprog: the length is in instructions, not bytes.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct SockFprog
        {
            public ushort Len;
            public SockFilter* Filter;
        }

        /// <summary>prctl(PR_SET_NO_NEW_PRIVS, 1): needed before an unprivileged filter install. Returns 0 or errno.</summary>
        internal static int SetNoNewPrivs()
        {
            long rc = (ssize_t)syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            return rc < 0 ? errno : 0;
        }

        /// <summary>seccomp(SECCOMP_SET_MODE_FILTER, flags, prog): the listener fd when NEW_LISTENER is set, else 0; -errno on failure.</summary>
        internal static int SetModeFilter(uint flags, SockFprog* program)
        {
            long rc = (ssize_t)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, program);
            return rc < 0 ? -errno : (int)rc;
        }
    }
}
