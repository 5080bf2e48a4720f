using System.Runtime.InteropServices;
using Unsock.Core.Filter;

namespace Unsock.Launcher;

/// <summary>
/// The thread that installs the filter and spawns the command, created before the filter is compiled so that its
/// start overlaps the compilation. A pthread of our own rather than a <see cref="Thread"/>: Thread.Start spins
/// (sched_yield) until the new thread runs, so the caller would wait for its start all the same; this one enters
/// managed code through an UnmanagedCallersOnly entry and the runtime attaches it there, on its own time.
/// </summary>
internal sealed unsafe partial class SpawnThread
{
    private readonly SignalRelay _signals;
    private readonly ManualResetEventSlim _go = new(), _spawned = new();
    private SeccompProgram? _program;
    private Spawn.Prepared? _prepared;

    private SpawnThread(SignalRelay signals) => _signals = signals;

    /// <summary>The listener of the installed filter (when <see cref="FilterError"/> is null).</summary>
    public int ListenerFd { get; private set; } = -1;

    /// <summary>posix_spawn's error (0: the child runs as <see cref="ChildPid"/>).</summary>
    public int SpawnError { get; private set; }

    public int ChildPid { get; private set; }

    /// <summary>Why the filter could not be installed, or null.</summary>
    public string? FilterError { get; private set; }

    /// <summary>Starts the thread; it waits for <see cref="Spawn(SeccompProgram, Spawn.Prepared)"/> or <see cref="Cancel"/>.</summary>
    public static SpawnThread Start(SignalRelay signals)
    {
        var thread = new SpawnThread(signals);
        nint self = GCHandle.ToIntPtr(GCHandle.Alloc(thread));
        nint id;
        int err = PthreadCreate(&id, null, &Entry, self);
        if (err != 0)
        {
            GCHandle.FromIntPtr(self).Free();
            throw new OutOfMemoryException($"cannot start the thread that spawns the command: {Marshal.GetPInvokeErrorMessage(err)}");
        }
        PthreadDetach(id);
        return thread;
    }

    /// <summary>Installs <paramref name="program"/> on the thread and spawns the command from it; returns once the child exists or it failed.</summary>
    public void Spawn(SeccompProgram program, Spawn.Prepared prepared)
    {
        _program = program;
        _prepared = prepared;
        _go.Set();
        // The events are never disposed: the thread may still be inside Set when we go on.
        _spawned.Wait();
    }

    /// <summary>Nothing to spawn: the thread ends without installing anything.</summary>
    public void Cancel() => _go.Set();

    [UnmanagedCallersOnly]
    private static nint Entry(nint self)
    {
        var handle = GCHandle.FromIntPtr(self);
        var thread = (SpawnThread)handle.Target!;
        handle.Free();
        thread.Run();
        return 0;
    }

    private void Run()
    {
        fixed (byte* name = "unsock-spawn\0"u8) PthreadSetName(PthreadSelf(), name);
        _go.Wait();
        if (_program is not { } program) return;
        try
        {
            // Once we have received a call the target waits killable-only (WAIT_KILLABLE_RECV, 5.19): a
            // signal cannot cut a swap in half; our long waits (full backlog, accept, proxy handshake)
            // watch for the target's signals themselves.
            ListenerFd = SeccompFilter.InstallWithListener(program, waitKillableRecv: true);
            // From here only native calls the filter lets through: the signalfd's read, posix_spawn, a futex.
            _signals.TakePendingBeforeChild();
            SpawnError = _prepared!.Run(out int pid);
            ChildPid = pid;
        }
        catch (SeccompException e)
        {
            FilterError = e.Message;
        }
        finally
        {
            _spawned.Set();
        }
    }

    [LibraryImport("libc.so.6", EntryPoint = "pthread_create")]
    private static partial int PthreadCreate(nint* thread, void* attr, delegate* unmanaged<nint, nint> start, nint arg);

    [LibraryImport("libc.so.6", EntryPoint = "pthread_detach")]
    private static partial int PthreadDetach(nint thread);

    [LibraryImport("libc.so.6", EntryPoint = "pthread_self")]
    private static partial nint PthreadSelf();

    [LibraryImport("libc.so.6", EntryPoint = "pthread_setname_np")]
    private static partial int PthreadSetName(nint thread, byte* name);
}
