using System.Runtime.InteropServices;
using System.Text;
using Unsock.Core.Filter;

namespace Unsock.Bench;

/// <summary>
/// Starts a command that carries a seccomp filter of its own: the filter goes onto a fresh thread, which
/// posix_spawns the command (glibc clones only that thread) and ends, so no thread of this process keeps it.
/// </summary>
internal static unsafe partial class FilteredSpawn
{
    private const string Libc = "libc.so.6";
    private const short PosixSpawnSetSigDef = 0x04, PosixSpawnSetSigMask = 0x08;
    private const int AttrSize = 1024, SigSetSize = 128, SigPipe = 13;
    public const int WNoHang = 1;

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

    private static readonly byte** Environ = *(byte***)NativeLibrary.GetExport(NativeLibrary.Load(Libc), "environ");

    /// <summary>
    /// Spawns <paramref name="argv"/> (argv[0] is the absolute path) under <paramref name="program"/>; its listener fd and pid.
    /// Without a program the command starts unfiltered (listener -1): a launcher that gets its filter elsewhere.
    /// </summary>
    public static (int ListenerFd, int Pid) Start(SeccompProgram? program, IReadOnlyList<string> argv)
    {
        var blocks = new List<nint>();
        void* Alloc(int size)
        {
            nint p = Marshal.AllocHGlobal(size);
            new Span<byte>((void*)p, size).Clear();
            blocks.Add(p);
            return (void*)p;
        }
        byte* Z(string s)
        {
            int n = Encoding.UTF8.GetByteCount(s);
            byte* p = (byte*)Alloc(n + 1);
            Encoding.UTF8.GetBytes(s, new Span<byte>(p, n));
            return p;
        }

        // Everything is marshalled here, so the filtered thread only makes native calls.
        var args = (byte**)Alloc((argv.Count + 1) * sizeof(nint));
        for (int i = 0; i < argv.Count; i++) args[i] = Z(argv[i]);
        void* attr = Alloc(AttrSize);
        AttrInit(attr);
        void* empty = Alloc(SigSetSize);
        SigEmptySet(empty);
        AttrSetSigMask(attr, empty);
        // The .NET runtime ignores SIGPIPE; an ignored signal would survive exec.
        void* defaults = Alloc(SigSetSize);
        SigEmptySet(defaults);
        SigAddSet(defaults, SigPipe);
        AttrSetSigDefault(attr, defaults);
        AttrSetFlags(attr, PosixSpawnSetSigMask | PosixSpawnSetSigDef);

        int listener = -1, pid = 0, error = 0;
        SeccompException? failure = null;
        try
        {
            var spawner = new Thread(() =>
            {
                try
                {
                    if (program is not null) listener = SeccompFilter.InstallWithListener(program, waitKillableRecv: true);
                }
                catch (SeccompException e)
                {
                    failure = e;
                    return;
                }
                int p;
                error = PosixSpawn(&p, args[0], null, attr, args, Environ);
                pid = p;
            }, 256 * 1024) { Name = "bench-spawn" };
            spawner.Start();
            spawner.Join();
        }
        finally
        {
            AttrDestroy(attr);
            foreach (var b in blocks) Marshal.FreeHGlobal(b);
        }
        if (failure is not null) throw new BenchIoException($"installing the filter: {failure.Message}", 0);
        if (error != 0)
        {
            if (listener >= 0) Tmds.Linux.LibC.close(listener);
            throw new BenchIoException($"posix_spawn {argv[0]}", error);
        }
        return (listener, pid);
    }

    /// <summary>waitpid; the pid when it was reaped, 0 when it still runs (with <see cref="WNoHang"/>), -1 with errno.</summary>
    public static int Reap(int pid, int options)
    {
        int status, r;
        do r = WaitPid(pid, &status, options); while (r < 0 && Marshal.GetLastPInvokeError() == 4 /* EINTR */);
        return r;
    }
}
