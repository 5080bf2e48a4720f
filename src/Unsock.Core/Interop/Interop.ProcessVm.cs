using Unsock.Core;
using System.Runtime.InteropServices;


internal static partial class Interop
{
    /// <summary>process_vm_readv/writev: copy to and from a target's memory without ptrace-stopping it.</summary>
    internal static unsafe partial class ProcessVm
    {
        [StructLayout(LayoutKind.Sequential)]
        private struct IoVec
        {
            public void* Base;
            public nuint Length;
        }

        [LibraryImport(Libc, EntryPoint = "process_vm_readv", SetLastError = true)]
        private static partial nint ReadV(int pid, IoVec* local, nuint localCount, IoVec* remote, nuint remoteCount, nuint flags);

        [LibraryImport(Libc, EntryPoint = "process_vm_writev", SetLastError = true)]
        private static partial nint WriteV(int pid, IoVec* local, nuint localCount, IoVec* remote, nuint remoteCount, nuint flags);

        /// <summary>Reads exactly <paramref name="buffer"/>.Length bytes; 0 or errno (a short read is EFAULT).</summary>
        public static int Read(int pid, ulong address, Span<byte> buffer)
        {
            if (buffer.IsEmpty) return 0;
            if (address == 0) return Errors.EFAULT;
            fixed (byte* p = buffer)
            {
                var local = new IoVec { Base = p, Length = (nuint)buffer.Length };
                var remote = new IoVec { Base = (void*)address, Length = (nuint)buffer.Length };
                nint n = ReadV(pid, &local, 1, &remote, 1, 0);
                if (n < 0) return Marshal.GetLastPInvokeError();
                return n == buffer.Length ? 0 : Errors.EFAULT;
            }
        }

        public static int Write(int pid, ulong address, ReadOnlySpan<byte> data)
        {
            if (data.IsEmpty) return 0;
            if (address == 0) return Errors.EFAULT;
            fixed (byte* p = data)
            {
                var local = new IoVec { Base = p, Length = (nuint)data.Length };
                var remote = new IoVec { Base = (void*)address, Length = (nuint)data.Length };
                nint n = WriteV(pid, &local, 1, &remote, 1, 0);
                if (n < 0) return Marshal.GetLastPInvokeError();
                return n == data.Length ? 0 : Errors.EFAULT;
            }
        }
    }
}
