using System.Runtime.InteropServices;
using System.Text;

namespace Unsock.Launcher;

/// <summary>
/// posix_spawn from the thread that holds the seccomp filter: glibc clones that thread alone (CLONE_VFORK),
/// so the command inherits the filter, exactly our environ and our inheritable fds, and nothing runs in
/// the child but libc's exec path. Also the signal calls the launcher relays the child's signals with.
/// </summary>
internal static unsafe partial class Spawn
{
    private const string Libc = "libc.so.6";
    private const short PosixSpawnSetSigDef = 0x04, PosixSpawnSetSigMask = 0x08;
    private const int AttrSize = 1024;
    internal const int SigSetSize = 128; // glibc's sigset_t
    private const int SigPipe = 13;
    internal const nint SigIgn = 1;
    internal const short PollIn = 1;
    private const int WNoHang = 1;
    private const long SysPidfdOpen = 434, SysRtSigaction = 13;
    // glibc's struct sigaction on x86_64: handler, 128-byte mask, flags, restorer.
    private const int SigActionSize = 152;

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
    internal static partial int SigEmptySet(void* set);

    [LibraryImport(Libc, EntryPoint = "sigaddset")]
    internal static partial int SigAddSet(void* set, int signo);

    [LibraryImport(Libc, EntryPoint = "pthread_sigmask")]
    internal static partial int PthreadSigmask(int how, void* set, void* oldSet);

    [LibraryImport(Libc, EntryPoint = "sigaction", SetLastError = true)]
    private static partial int SigAction(int signo, void* action, void* oldAction);

    [LibraryImport(Libc, EntryPoint = "signalfd", SetLastError = true)]
    internal static partial int SignalFd(int fd, void* mask, int flags);

    [LibraryImport(Libc, EntryPoint = "read", SetLastError = true)]
    internal static partial nint Read(int fd, void* buffer, nuint count);

    [LibraryImport(Libc, EntryPoint = "close")]
    internal static partial int Close(int fd);

    [LibraryImport(Libc, EntryPoint = "poll", SetLastError = true)]
    internal static partial int Poll(PollFd* fds, nuint count, int timeoutMs);

    [LibraryImport(Libc, EntryPoint = "getpgid")]
    internal static partial int GetPgid(int pid);

    [LibraryImport(Libc, EntryPoint = "getpgrp")]
    internal static partial int GetPgrp();

    [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall2(long number, long a, long b);

    [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall4(long number, long a, long b, long c, long d);

    [StructLayout(LayoutKind.Sequential)]
    internal struct PollFd
    {
        public int Fd;
        public short Events, REvents;
    }

    /// <summary>The disposition of <paramref name="signo"/>: 0 (default), <see cref="SigIgn"/> or a handler's address.</summary>
    /// <remarks>rt_sigaction itself: glibc's sigaction refuses its internal signals 32 and 33.</remarks>
    internal static nint CurrentHandler(int signo)
    {
        // The kernel's struct sigaction: handler, flags, restorer, 8-byte mask.
        nint* action = stackalloc nint[4];
        return Syscall4(SysRtSigaction, signo, 0, (long)action, 8) == 0 ? action[0] : 0;
    }

    /// <summary>Makes <paramref name="signo"/> ignored again if something in this process installed a handler since start.</summary>
    internal static void KeepIgnored(int signo)
    {
        if (CurrentHandler(signo) == SigIgn) return;
        byte* action = stackalloc byte[SigActionSize];
        new Span<byte>(action, SigActionSize).Clear();
        *(nint*)action = SigIgn;
        SigAction(signo, action, null);
    }

    /// <summary>A pidfd for <paramref name="pid"/> (pidfd_open, 5.3), or -1.</summary>
    internal static int PidfdOpen(int pid)
    {
        long r = Syscall2(SysPidfdOpen, pid, 0);
        return r < 0 ? -1 : (int)r;
    }

    [LibraryImport(Libc, EntryPoint = "waitpid", SetLastError = true)]
    private static partial int WaitPid(int pid, int* status, int options);

    [LibraryImport(Libc, EntryPoint = "kill", SetLastError = true)]
    internal static partial int Kill(int pid, int signal);

    /// <summary>Everything posix_spawn needs, marshalled up front so the filtered thread only makes native calls.</summary>
    internal sealed partial class Prepared : IDisposable
    {
        private readonly List<nint> _blocks = new();
        public byte* Path;
        public byte** Argv;
        public byte** Envp;
        public void* Attr;

        /// <param name="inherited">Signals whose disposition the child must get as the launcher got it.</param>
        /// <param name="ignoredAtStart">Bit N-1: signal N was ignored when the launcher started.</param>
        public Prepared(string path, IReadOnlyList<string> argv, IReadOnlyList<int> inherited, ulong ignoredAtStart)
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
            // The .NET runtime ignores SIGPIPE before Main (what we inherited is lost): the child gets the default.
            ulong defaults = 1UL << (SigPipe - 1);
            foreach (int signo in inherited)
            {
                // exec keeps SIG_IGN; glibc's posix_spawn would make its own signals 32 and 33 ignored unless listed here.
                if ((ignoredAtStart & (1UL << (signo - 1))) == 0) defaults |= 1UL << (signo - 1);
                else if (signo < 32) KeepIgnored(signo);
            }
            // Set as bits: sigaddset refuses glibc's internal signals, posix_spawn honours them.
            void* defaultSet = Alloc(SigSetSize);
            *(ulong*)defaultSet = defaults;
            AttrSetSigDefault(Attr, defaultSet);
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

    /// <summary>
    /// Waits on a seccomp listener until a trapped call waits on it (true) or no task uses its filter any more
    /// (false: POLLHUP, kernel 5.9+).
    /// </summary>
    public static bool WaitForCallOrHangUp(int listenerFd)
    {
        var fd = new PollFd { Fd = listenerFd, Events = PollIn };
        while (Poll(&fd, 1, -1) < 0)
        {
            if (Marshal.GetLastPInvokeError() != 4 /* EINTR */) return true; // let the engine find out what is wrong
        }
        return (fd.REvents & PollIn) != 0;
    }

    /// <summary>Waits for the child; its exit status, or 128+N when signal N killed it.</summary>
    public static int WaitForExit(int pid)
    {
        int status;
        while (WaitPid(pid, &status, 0) < 0)
        {
            if (Marshal.GetLastPInvokeError() != 4 /* EINTR */) return 125;
        }
        return ExitStatus(status);
    }

    /// <summary>True and the exit status once the child has exited (125 if it cannot be waited for); false while it runs.</summary>
    public static bool TryReap(int pid, out int exitStatus)
    {
        int status;
        int r = WaitPid(pid, &status, WNoHang);
        exitStatus = r == pid ? ExitStatus(status) : 125;
        return r == pid || (r < 0 && Marshal.GetLastPInvokeError() != 4 /* EINTR */);
    }

    private static int ExitStatus(int status)
    {
        int signal = status & 0x7f;
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal;
    }
}
