using System.Runtime.InteropServices;

namespace Unsock.Launcher;

/// <summary>execve in place, from the thread that carries the filter, with the signal state the program is owed.</summary>
internal static unsafe partial class Spawn
{
    private const int SigSetMask = 2;

    [LibraryImport(Libc, EntryPoint = "execve", SetLastError = true)]
    private static partial int Execve(byte* path, byte** argv, byte** envp);

    /// <summary>Sets <paramref name="signo"/>'s disposition to default (0) or ignored (<see cref="SigIgn"/>) with rt_sigaction itself.</summary>
    private static void SetDisposition(int signo, nint handler)
    {
        // The kernel's struct sigaction: handler, flags, restorer, 8-byte mask.
        nint* action = stackalloc nint[4];
        action[0] = handler;
        action[1] = action[2] = action[3] = 0;
        Syscall4(SysRtSigaction, signo, (long)action, 0, 8);
    }

    internal sealed partial class Prepared
    {
        /// <summary>
        /// Replaces this process with the command; returns only on failure, with the errno. The forwarded
        /// signals get the disposition the launcher started with (a handler of ours would be reset by exec
        /// anyway, but one still pending would reach it first), SIGPIPE its default (the runtime ignores it),
        /// and nothing stays blocked: a signal that arrived while we launched is then delivered as it would
        /// have been to the program at its start.
        /// </summary>
        public int Exec(IReadOnlyList<int> inherited, ulong ignoredAtStart)
        {
            SetDisposition(SigPipe, 0);
            foreach (int signo in inherited)
            {
                if (signo >= 32) continue; // glibc's own: exec resets their handlers
                SetDisposition(signo, (ignoredAtStart & (1UL << (signo - 1))) != 0 ? SigIgn : 0);
            }
            byte* empty = stackalloc byte[SigSetSize];
            SigEmptySet(empty);
            PthreadSigmask(SigSetMask, empty, null);
            Execve(Path, Argv, Envp);
            return Marshal.GetLastPInvokeError();
        }
    }
}
