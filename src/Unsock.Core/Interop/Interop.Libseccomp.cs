using Unsock.Core;
using System.Runtime.InteropServices;

internal static partial class Interop
{
    /// <summary>
    /// libseccomp 2.5 (libseccomp.so.2, installed wherever systemd is), used only to compile rules into
    /// BPF; loading is ours (see <see cref="SeccompFilter"/>). Functions return a negative errno on failure.
    /// </summary>
    internal static unsafe partial class Libseccomp
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

        // Bound with dlopen and dlsym (NativeLibrary) at the first call rather than declared as P/Invokes: NativeAOT
        // resolves a P/Invoke through its assembly's DllImportSearchPath, and the first such lookup starts the
        // runtime's reflection, a start-up cost of the launcher that NativeLibrary.Load of a file name does not have.
        // A missing library throws DllNotFoundException from the call, as the P/Invoke did.
        private static nint s_library;
        private static delegate* unmanaged<uint, nint> s_init;
        private static delegate* unmanaged<nint, void> s_release;
        private static delegate* unmanaged<nint, nint, int> s_merge;
        private static delegate* unmanaged<nint, uint, int> s_archAdd;
        private static delegate* unmanaged<nint, uint, int> s_archRemove;
        private static delegate* unmanaged<nint, int, uint, int> s_attrSet;
        private static delegate* unmanaged<nint, uint, int, uint, ScmpArgCmp*, int> s_ruleAddArray;
        private static delegate* unmanaged<nint, int, int> s_exportBpf;
        private static delegate* unmanaged<uint, int, byte*> s_resolveNumArch;
        private static delegate* unmanaged<uint, byte*, int> s_resolveNameArch;
        private static delegate* unmanaged<byte*, int> s_resolveName;

        private static void Bind()
        {
            if (Volatile.Read(ref s_library) != 0) return;
            nint library = NativeLibrary.Load(Library);
            s_init = (delegate* unmanaged<uint, nint>)NativeLibrary.GetExport(library, "seccomp_init");
            s_release = (delegate* unmanaged<nint, void>)NativeLibrary.GetExport(library, "seccomp_release");
            s_merge = (delegate* unmanaged<nint, nint, int>)NativeLibrary.GetExport(library, "seccomp_merge");
            s_archAdd = (delegate* unmanaged<nint, uint, int>)NativeLibrary.GetExport(library, "seccomp_arch_add");
            s_archRemove = (delegate* unmanaged<nint, uint, int>)NativeLibrary.GetExport(library, "seccomp_arch_remove");
            s_attrSet = (delegate* unmanaged<nint, int, uint, int>)NativeLibrary.GetExport(library, "seccomp_attr_set");
            s_ruleAddArray = (delegate* unmanaged<nint, uint, int, uint, ScmpArgCmp*, int>)NativeLibrary.GetExport(library, "seccomp_rule_add_array");
            s_exportBpf = (delegate* unmanaged<nint, int, int>)NativeLibrary.GetExport(library, "seccomp_export_bpf");
            s_resolveNumArch = (delegate* unmanaged<uint, int, byte*>)NativeLibrary.GetExport(library, "seccomp_syscall_resolve_num_arch");
            s_resolveNameArch = (delegate* unmanaged<uint, byte*, int>)NativeLibrary.GetExport(library, "seccomp_syscall_resolve_name_arch");
            s_resolveName = (delegate* unmanaged<byte*, int>)NativeLibrary.GetExport(library, "seccomp_syscall_resolve_name");
            // Published last: a thread that sees the library sees every function (two threads binding at once get the same ones).
            Volatile.Write(ref s_library, library);
        }

        internal static FilterContextHandle seccomp_init(uint defaultAction)
        {
            Bind();
            var ctx = new FilterContextHandle();
            Marshal.InitHandle(ctx, s_init(defaultAction));
            return ctx;
        }

        internal static void seccomp_release(IntPtr ctx)
        {
            Bind();
            s_release(ctx);
        }

        /// <summary>On success libseccomp frees <paramref name="src"/>: the caller must mark its handle invalid.</summary>
        internal static int seccomp_merge(FilterContextHandle dst, FilterContextHandle src)
        {
            Bind();
            bool dstAdded = false, srcAdded = false;
            try
            {
                dst.DangerousAddRef(ref dstAdded);
                src.DangerousAddRef(ref srcAdded);
                return s_merge(dst.DangerousGetHandle(), src.DangerousGetHandle());
            }
            finally
            {
                if (srcAdded) src.DangerousRelease();
                if (dstAdded) dst.DangerousRelease();
            }
        }

        internal static int seccomp_arch_add(FilterContextHandle ctx, uint archToken)
        {
            Bind();
            using var held = new Held(ctx);
            return s_archAdd(held.Handle, archToken);
        }

        internal static int seccomp_arch_remove(FilterContextHandle ctx, uint archToken)
        {
            Bind();
            using var held = new Held(ctx);
            return s_archRemove(held.Handle, archToken);
        }

        internal static int seccomp_attr_set(FilterContextHandle ctx, int attr, uint value)
        {
            Bind();
            using var held = new Held(ctx);
            return s_attrSet(held.Handle, attr, value);
        }

        /// <summary><paramref name="syscall"/> is a native (x86_64) or pseudo number; libseccomp maps it by name onto each arch of the context.</summary>
        internal static int seccomp_rule_add_array(FilterContextHandle ctx, uint action, int syscall, uint argCount, ScmpArgCmp* args)
        {
            Bind();
            using var held = new Held(ctx);
            return s_ruleAddArray(held.Handle, action, syscall, argCount, args);
        }

        internal static int seccomp_export_bpf(FilterContextHandle ctx, int fd)
        {
            Bind();
            using var held = new Held(ctx);
            return s_exportBpf(held.Handle, fd);
        }

        /// <summary>Returns a malloc'ed name (free it) or NULL.</summary>
        internal static byte* seccomp_syscall_resolve_num_arch(uint archToken, int num)
        {
            Bind();
            return s_resolveNumArch(archToken, num);
        }

        /// <summary>Returns the arch's number, a negative pseudo number for calls the arch multiplexes or lacks, or __NR_SCMP_ERROR (-1).</summary>
        internal static int seccomp_syscall_resolve_name_arch(uint archToken, string name)
        {
            Bind();
            nint utf8 = Marshal.StringToCoTaskMemUTF8(name);
            try { return s_resolveNameArch(archToken, (byte*)utf8); }
            finally { Marshal.FreeCoTaskMem(utf8); }
        }

        /// <summary>Resolves for the native arch; a syscall x86_64 lacks (socketcall) gets a negative pseudo number.</summary>
        internal static int seccomp_syscall_resolve_name(string name)
        {
            Bind();
            nint utf8 = Marshal.StringToCoTaskMemUTF8(name);
            try { return s_resolveName((byte*)utf8); }
            finally { Marshal.FreeCoTaskMem(utf8); }
        }

        /// <summary>A context kept alive for one call, as the P/Invoke marshaller does for a SafeHandle argument.</summary>
        private readonly ref struct Held
        {
            private readonly FilterContextHandle _ctx;
            private readonly bool _added;

            public Held(FilterContextHandle ctx)
            {
                _ctx = ctx;
                ctx.DangerousAddRef(ref _added);
                Handle = ctx.DangerousGetHandle();
            }

            public nint Handle { get; }

            public void Dispose()
            {
                if (_added) _ctx.DangerousRelease();
            }
        }

        internal const int NR_SCMP_ERROR = -1;

        /// <summary>The name libseccomp gives syscall <paramref name="num"/> on <paramref name="archToken"/>, or null.</summary>
        internal static string? ResolveSyscallName(uint archToken, int num)
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
