using Unsock.Core;
using System.Runtime.InteropServices;

internal static partial class Interop
{
    /// <summary>
    /// libseccomp 2.5 (libseccomp.so.2, installed wherever systemd is), used only to compile rules into
    /// BPF; loading is ours (see <see cref="SeccompFilter"/>). Functions return a negative errno on failure.
    /// </summary>
    internal static partial class Libseccomp
    {
        private const string Library = "libseccomp.so.2";

        // From <seccomp.h> 2.5.4.
        internal const uint SCMP_ACT_KILL_PROCESS = 0x80000000;
        internal const uint SCMP_ACT_NOTIFY = 0x7FC00000;
        internal const uint SCMP_ACT_ALLOW = 0x7FFF0000;
        internal const uint SCMP_ACT_ERRNO_BASE = 0x00050000;

        internal static uint SCMP_ACT_ERRNO(int errno) => SCMP_ACT_ERRNO_BASE | ((uint)errno & 0xFFFF);

        // SCMP_ARCH_* are the AUDIT_ARCH_* values; x32 is EM_X86_64 | __AUDIT_ARCH_LE without the 64-bit flag.
        internal const uint SCMP_ARCH_NATIVE = 0;
        internal const uint SCMP_ARCH_X86 = 0x40000003;
        internal const uint SCMP_ARCH_X86_64 = 0xC000003E;
        internal const uint SCMP_ARCH_X32 = 0x4000003E;

        internal const int SCMP_FLTATR_ACT_BADARCH = 2;

        internal const int SCMP_CMP_NE = 1;
        internal const int SCMP_CMP_GE = 5;
        internal const int SCMP_CMP_EQ = 4;
        internal const int SCMP_CMP_MASKED_EQ = 7;

        /// <summary>struct scmp_arg_cmp: for SCMP_CMP_MASKED_EQ datum_a is the mask, datum_b the value.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct ScmpArgCmp
        {
            public uint Arg;
            public int Op;
            public ulong DatumA;
            public ulong DatumB;
        }

        /// <summary>scmp_filter_ctx; released with seccomp_release unless seccomp_merge consumed it.</summary>
        internal sealed class FilterContextHandle : SafeHandle
        {
            public FilterContextHandle()
                : base(IntPtr.Zero, ownsHandle: true)
            {
            }

            public override bool IsInvalid => handle == IntPtr.Zero;

            protected override bool ReleaseHandle()
            {
                seccomp_release(handle);
                return true;
            }
        }

        [LibraryImport(Library, SetLastError = true)]
        internal static partial FilterContextHandle seccomp_init(uint defaultAction);

        [LibraryImport(Library, SetLastError = true)]
        internal static partial void seccomp_release(IntPtr ctx);

        /// <summary>On success libseccomp frees <paramref name="src"/>: the caller must mark its handle invalid.</summary>
        [LibraryImport(Library, SetLastError = true)]
        internal static partial int seccomp_merge(FilterContextHandle dst, FilterContextHandle src);

        [LibraryImport(Library, SetLastError = true)]
        internal static partial int seccomp_arch_add(FilterContextHandle ctx, uint archToken);

        [LibraryImport(Library, SetLastError = true)]
        internal static partial int seccomp_arch_remove(FilterContextHandle ctx, uint archToken);

        [LibraryImport(Library, SetLastError = true)]
        internal static partial int seccomp_attr_set(FilterContextHandle ctx, int attr, uint value);

        /// <summary><paramref name="syscall"/> is a native (x86_64) or pseudo number; libseccomp maps it by name onto each arch of the context.</summary>
        [LibraryImport(Library, SetLastError = true)]
        internal static unsafe partial int seccomp_rule_add_array(FilterContextHandle ctx, uint action, int syscall, uint argCount, ScmpArgCmp* args);

        [LibraryImport(Library, SetLastError = true)]
        internal static partial int seccomp_export_bpf(FilterContextHandle ctx, int fd);

        /// <summary>Returns a malloc'ed name (free it) or NULL.</summary>
        [LibraryImport(Library, SetLastError = true)]
        internal static unsafe partial byte* seccomp_syscall_resolve_num_arch(uint archToken, int num);

        /// <summary>Returns the arch's number, a negative pseudo number for calls the arch multiplexes or lacks, or __NR_SCMP_ERROR (-1).</summary>
        [LibraryImport(Library, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int seccomp_syscall_resolve_name_arch(uint archToken, string name);

        /// <summary>Resolves for the native arch; a syscall x86_64 lacks (socketcall) gets a negative pseudo number.</summary>
        [LibraryImport(Library, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int seccomp_syscall_resolve_name(string name);

        internal const int NR_SCMP_ERROR = -1;

        /// <summary>The name libseccomp gives syscall <paramref name="num"/> on <paramref name="archToken"/>, or null.</summary>
        internal static unsafe string? ResolveSyscallName(uint archToken, int num)
        {
            byte* name = seccomp_syscall_resolve_num_arch(archToken, num);
            if (name == null)
            {
                return null;
            }

            try
            {
                return Marshal.PtrToStringUTF8((IntPtr)name);
            }
            finally
            {
                NativeMemory.Free(name);
            }
        }
    }
}
