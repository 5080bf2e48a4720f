using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Unsock.Core.Engine;

namespace Unsock.Launcher;

/// <summary>
/// Relays HUP, INT, QUIT, USR1, USR2, TERM and WINCH from the launcher to its child. From the first line of
/// Main they are blocked in every thread and read from a signalfd: one that arrives before the child exists
/// waits for it, one the launcher started with ignored still reaches us (a blocked signal is never
/// discarded), and siginfo tells who sent it, so what the kernel already delivered to the child is not
/// sent a second time. The child starts with nothing blocked and the dispositions the launcher inherited.
/// </summary>
internal sealed unsafe class SignalRelay : IDisposable
{
    public static readonly int[] Forwarded = [1 /* HUP */, 2 /* INT */, 3 /* QUIT */, 10 /* USR1 */, 12 /* USR2 */, 15 /* TERM */, 28 /* WINCH */];

    /// <summary>The signals whose disposition the child gets as the launcher got it: the forwarded ones and glibc's 32 and 33.</summary>
    public static readonly int[] Inherited = [.. Forwarded, 32, 33];

    private const int SigBlock = 0, SigUnblock = 1;
    private const int SfdNonBlock = 0x800, SfdCloexec = 0x80000;
    private const int SiKernel = 0x80;
    private const int Eintr = 4;
    // One struct signalfd_siginfo: u32 signo, s32 errno, s32 code, u32 pid, ... 128 bytes.
    private const int SigInfoSize = 128;
    // Standard signals do not queue: at most one of each forwarded signal is pending at a time.
    private const int PendingCapacity = 16;

    private readonly void* _set;
    private readonly int _fd;
    private readonly byte* _beforeChild;
    private int _beforeChildBytes;
    private bool _childStarted;

    private SignalRelay(void* set, int fd, ulong ignoredAtStart)
    {
        _set = set;
        _fd = fd;
        IgnoredAtStart = ignoredAtStart;
        _beforeChild = (byte*)NativeMemory.AllocZeroed(PendingCapacity * SigInfoSize);
    }

    /// <summary>Bit N-1 set: signal N was ignored when the launcher started, and stays ignored in the child.</summary>
    public ulong IgnoredAtStart { get; }

    /// <summary>Blocks the forwarded signals in every thread of the process and opens the signalfd; null and a reason if it cannot.</summary>
    public static SignalRelay? Start(out string problem)
    {
        problem = "";
        void* set = NativeMemory.AllocZeroed(Spawn.SigSetSize);
        Spawn.SigEmptySet(set);
        foreach (int signo in Forwarded) Spawn.SigAddSet(set, signo);
        Spawn.PthreadSigmask(SigBlock, set, null);
        // Threads started from now on inherit the mask; the finalizer thread already runs, with nothing blocked.
        FinalizerThreadMask.Apply(set);
        if (!FinalizerThreadMask.Blocked)
        {
            problem = "cannot block signals on the runtime's finalizer thread; signals could not be forwarded reliably";
            return null;
        }

        ulong ignored = 0;
        foreach (int signo in Inherited)
            if (Spawn.CurrentHandler(signo) == Spawn.SigIgn) ignored |= 1UL << (signo - 1);

        int fd = Spawn.SignalFd(-1, set, SfdNonBlock | SfdCloexec);
        if (fd < 0)
        {
            problem = $"cannot open a signalfd to forward signals: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}";
            return null;
        }
        return new SignalRelay(set, fd, ignored);
    }

    /// <summary>
    /// Called by the spawning thread just before the child is created: what is pending now arrived before the
    /// child existed, so nothing has reached it yet. Only native calls: this thread already carries the filter.
    /// </summary>
    public void TakePendingBeforeChild()
    {
        while (_beforeChildBytes < PendingCapacity * SigInfoSize)
        {
            nint n = Spawn.Read(_fd, _beforeChild + _beforeChildBytes, (nuint)(PendingCapacity * SigInfoSize - _beforeChildBytes));
            if (n <= 0) break;
            _beforeChildBytes += (int)n;
        }
    }

    /// <summary>Relays signals to <paramref name="childPid"/> until it exits; its exit status, or 128+N when signal N killed it.</summary>
    /// <param name="watchFd">Watched meanwhile, when not -1: the first time it is readable, <paramref name="onReadable"/> runs (once).</param>
    public int RelayUntilExit(int childPid, int watchFd = -1, Action? onReadable = null)
    {
        _childStarted = true;
        for (int offset = 0; offset + SigInfoSize <= _beforeChildBytes; offset += SigInfoSize)
            Spawn.Kill(childPid, (int)*(uint*)(_beforeChild + offset));
        _beforeChildBytes = 0;

        int pidfd = Spawn.PidfdOpen(childPid);
        var fds = stackalloc Spawn.PollFd[3];
        try
        {
            while (true)
            {
                fds[0] = new Spawn.PollFd { Fd = _fd, Events = Spawn.PollIn };
                fds[1] = new Spawn.PollFd { Fd = pidfd, Events = Spawn.PollIn };
                // poll skips a negative fd: once run (or hung up), the watched fd is left alone.
                fds[2] = new Spawn.PollFd { Fd = watchFd, Events = Spawn.PollIn };
                // Without a pidfd (kernel before 5.3) look for the exit ten times a second.
                int ready = Spawn.Poll(fds, 3, pidfd >= 0 ? -1 : 100);
                if (ready < 0 && Marshal.GetLastPInvokeError() != Eintr) return Spawn.WaitForExit(childPid);
                if (ready > 0 && (fds[0].REvents & Spawn.PollIn) != 0) RelayReady(childPid);
                if (ready > 0 && fds[2].REvents != 0)
                {
                    // A hang-up alone (nothing uses it any more) ends the watch without running anything.
                    if ((fds[2].REvents & Spawn.PollIn) != 0) onReadable?.Invoke();
                    watchFd = -1;
                }
                if (Spawn.TryReap(childPid, out int status)) return status;
            }
        }
        finally
        {
            if (pidfd >= 0) Spawn.Close(pidfd);
        }
    }

    private void RelayReady(int childPid)
    {
        byte* info = stackalloc byte[SigInfoSize];
        while (Spawn.Read(_fd, info, SigInfoSize) == SigInfoSize)
        {
            int signo = (int)*(uint*)info;
            int code = *(int*)(info + 8);
            int sender = (int)*(uint*)(info + 12);
            if (!ChildAlreadyGotIt(code, sender, childPid)) Spawn.Kill(childPid, signo);
        }
    }

    /// <summary>
    /// sudo's rule: the terminal (the kernel) signals the whole foreground process group, which holds the child
    /// unless it moved to a group of its own; a signal from the child or its descendants was sent to its own
    /// group or on purpose to us, and relaying it would make the program signal itself.
    /// </summary>
    internal static bool ChildAlreadyGotIt(int code, int sender, int childPid)
    {
        if (code == SiKernel) return Spawn.GetPgid(childPid) == Spawn.GetPgrp();
        if (code <= 0 && sender > 0) return sender == childPid || IsDescendant(sender, childPid);
        return false;
    }

    /// <summary>Follows the parents up from <paramref name="pid"/>; a sender already gone cannot be placed, and is relayed to.</summary>
    private static bool IsDescendant(int pid, int ancestor)
    {
        for (int depth = 0; depth < 64 && pid > 1; depth++)
        {
            pid = ParentOf(pid);
            if (pid == ancestor) return true;
        }
        return false;
    }

    /// <summary>The ppid field of /proc/PID/stat (the fourth), or 0 if the process is gone.</summary>
    private static int ParentOf(int pid) => (int)ProcStat.Field(pid, 4);

    /// <summary>
    /// Without a child, the signals take effect as they would have without us (a TERM during --print-policy ends
    /// it). With one, what arrives after it exited has no one to go to and is dropped with the process.
    /// </summary>
    public void Dispose()
    {
        if (!_childStarted) Spawn.PthreadSigmask(SigUnblock, _set, null);
        Spawn.Close(_fd);
    }

    /// <summary>The runtime starts its finalizer thread before Main; a finalizer is the one way to run code on it.</summary>
    private sealed class FinalizerThreadMask
    {
        public static volatile bool Blocked;
        private readonly nint _set;

        private FinalizerThreadMask(void* set) => _set = (nint)set;

        ~FinalizerThreadMask() => Blocked = Spawn.PthreadSigmask(SigBlock, (void*)_set, null) == 0;

        public static void Apply(void* set)
        {
            for (int attempt = 0; attempt < 3 && !Blocked; attempt++)
            {
                Abandon(set);
                GC.Collect(0, GCCollectionMode.Forced, blocking: true);
                GC.WaitForPendingFinalizers();
            }
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        private static void Abandon(void* set) => _ = new FinalizerThreadMask(set);
    }
}
