using System.Runtime.InteropServices;
using System.Text;

namespace Unsock.Launcher;

/// <summary>
/// posix_spawn from the thread that holds the seccomp filter: glibc clones that thread alone (CLONE_VFORK),
/// so the command inherits the filter, exactly our environ and our inheritable fds, and nothing runs in
/// the child but libc's exec path.
/// </summary>
internal static unsafe partial class Spawn
{
    private const string Libc = "libc.so.6";
    private const short PosixSpawnSetSigDef = 0x04, PosixSpawnSetSigMask = 0x08;
    private const int AttrSize = 1024, SigSetSize = 128;
    private const int SigPipe = 13;

    [LibraryImport(Libc, EntryPoint = "posix_spawn")]
    private static partial int PosixSpawn(int* pid, byte* path, void* fileActions, void* attr, byte** argv, byte** envp);

    [LibraryImport(Libc, EntryPoint = "posix_spawnattr_init")]
    private static partial int AttrInit(void* attr);

    [LibraryImport(Libc, EntryPoint = "posix_spawnattr_destroy")]
    private static partial int AttrDestroy(void* attr);

    [LibraryImport(Libc, EntryPoint = "posix_spawnattr_setflags")]
    private static partial int AttrSetFlags(void* attr, short flags);

    [LibraryImport(Libc, EntryPoint = "posix_spawnattr_setsigmask")]
    private static partial int AttrSetSigMask(void* attr, void* set);

    [LibraryImport(Libc, EntryPoint = "posix_spawnattr_setsigdefault")]
    private static partial int AttrSetSigDefault(void* attr, void* set);

    [LibraryImport(Libc, EntryPoint = "sigemptyset")]
    private static partial int SigEmptySet(void* set);

    [LibraryImport(Libc, EntryPoint = "sigaddset")]
    private static partial int SigAddSet(void* set, int signo);

    [LibraryImport(Libc, EntryPoint = "waitpid", SetLastError = true)]
    private static partial int WaitPid(int pid, int* status, int options);

    [LibraryImport(Libc, EntryPoint = "kill", SetLastError = true)]
    internal static partial int Kill(int pid, int signal);

    /// <summary>Everything posix_spawn needs, marshalled up front so the filtered thread only makes native calls.</summary>
    internal sealed class Prepared : IDisposable
    {
        private readonly List<nint> _blocks = new();
        public byte* Path;
        public byte** Argv;
        public byte** Envp;
        public void* Attr;

        public Prepared(string path, IReadOnlyList<string> argv)
        {
            Path = Z(path);
            Argv = (byte**)Alloc((argv.Count + 1) * sizeof(nint));
            for (int i = 0; i < argv.Count; i++) Argv[i] = Z(argv[i]);
            Argv[argv.Count] = null;
            // The C environ: .NET's Environment.SetEnvironmentVariable never touches it, so it is exactly what we got.
            Envp = *(byte***)NativeLibrary.GetExport(NativeLibrary.Load(Libc), "environ");
            Attr = Alloc(AttrSize);
            AttrInit(Attr);
            void* empty = Alloc(SigSetSize);
            SigEmptySet(empty);
            AttrSetSigMask(Attr, empty);
            // The .NET runtime ignores SIGPIPE; an ignored signal would survive exec.
            void* defaults = Alloc(SigSetSize);
            SigEmptySet(defaults);
            SigAddSet(defaults, SigPipe);
            AttrSetSigDefault(Attr, defaults);
            AttrSetFlags(Attr, PosixSpawnSetSigMask | PosixSpawnSetSigDef);
        }

        private void* Alloc(int size)
        {
            nint p = Marshal.AllocHGlobal(size);
            new Span<byte>((void*)p, size).Clear();
            _blocks.Add(p);
            return (void*)p;
        }

        private byte* Z(string s)
        {
            int n = Encoding.UTF8.GetByteCount(s);
            byte* p = (byte*)Alloc(n + 1);
            Encoding.UTF8.GetBytes(s, new Span<byte>(p, n));
            return p;
        }

        /// <summary>Returns 0 and the pid, or the errno of the exec (ENOENT, EACCES...).</summary>
        public int Run(out int pid)
        {
            int p = 0;
            int r = PosixSpawn(&p, Path, null, Attr, Argv, Envp);
            pid = p;
            return r;
        }

        public void Dispose()
        {
            AttrDestroy(Attr);
            foreach (var b in _blocks) Marshal.FreeHGlobal(b);
            _blocks.Clear();
        }
    }

    /// <summary>Waits for the child; its exit status, or 128+N when signal N killed it.</summary>
    public static int WaitForExit(int pid)
    {
        int status;
        while (WaitPid(pid, &status, 0) < 0)
        {
            if (Marshal.GetLastPInvokeError() != 4 /* EINTR */) return 125;
        }
        int signal = status & 0x7f;
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal;
    }
}
