using Native = global::Interop;

namespace Unsock.Core.Engine;

/// <summary>
/// Removes the socket files of sockets that are gone, for every attachment, on its own thread so that
/// receiving never waits for it. A file is removed only when sock_diag says its socket no longer exists
/// anywhere: a listener passed to a process outside the targets (SCM_RIGHTS) keeps its file after the
/// targets exit, for as long as that process holds it and the engine runs.
/// </summary>
internal sealed class SocketSweeper(NotificationEngine engine)
{
    private readonly object _signal = new();
    private readonly Queue<(ListenerAttachment Attachment, bool KeepFiles)> _finals = new();
    private readonly List<BoundFile> _orphans = new();
    private Thread? _thread;
    private bool _stopping;
    private readonly BurstEnd _burst = new(engine.Options.CompactAfterRecords);

    public int OrphanCount
    {
        get { lock (_signal) return _orphans.Count; }
    }

    public void Start()
    {
        _thread = new Thread(Run, 256 * 1024) { IsBackground = true, Name = "unsock-sweep" };
        _thread.Start();
    }

    /// <summary>The attachment's targets are gone (or it was detached): deal with its files, then complete it.</summary>
    public void Final(ListenerAttachment attachment, bool keepFiles)
    {
        lock (_signal)
        {
            _finals.Enqueue((attachment, keepFiles));
            Monitor.Pulse(_signal);
        }
        if (_thread is null) SweepOnce(); // never started: nobody else will
    }

    public void Stop()
    {
        lock (_signal)
        {
            _stopping = true;
            Monitor.Pulse(_signal);
        }
        if (_thread is not null && _thread != Thread.CurrentThread) _thread.Join();
        else SweepOnce();
    }

    private void Run()
    {
        while (true)
        {
            bool last;
            lock (_signal)
            {
                if (!_stopping && _finals.Count == 0) Monitor.Wait(_signal, engine.Options.SweepInterval);
                last = _stopping;
            }
            try { SweepOnce(); }
            catch (Exception e) { engine.Log.SweepFailed(e.Message); }
            if (last) return;
        }
    }

    private void SweepOnce()
    {
        List<(ListenerAttachment Attachment, bool KeepFiles)> finals;
        List<BoundFile> orphans;
        lock (_signal)
        {
            finals = _finals.ToList();
            _finals.Clear();
            orphans = _orphans.ToList();
        }
        // Our copies of a detached target's sockets are closed on closer threads: let them go before the sockets are
        // listed, so that the sweep sees the targets' own. A close stuck in a program's epoll set is waited for briefly
        // only: its file is then kept, and removed by a later sweep once the socket is gone.
        foreach (var (a, _) in finals) CopyCloser.WaitClosed(a, 500);
        var attached = engine.Attachments.Where(a => a.IsAttached && !a.Registry.IsEmpty).ToList();
        if (finals.Count == 0 && orphans.Count == 0 && attached.Count == 0)
        {
            CompactAfterBurst(0);
            return;
        }

        // Read once for everyone; whatever is registered meanwhile is newer than this list and not judged by it.
        HashSet<ulong>? listed = ProcNetUnix.Read()?.Select(e => e.Inode).ToHashSet();
        using var diag = Native.UnixDiag.TryOpen();
        foreach (var a in attached)
            foreach (var path in a.Registry.Sweep(listed, diag, targetsGone: false, stillOpen: null))
                engine.Log.SocketFileRemoved(path, "its socket is closed");
        foreach (var (a, keepFiles) in finals)
        {
            try
            {
                var stillOpen = new List<BoundFile>();
                if (!keepFiles)
                    foreach (var path in a.Registry.Sweep(listed, diag, targetsGone: true, stillOpen))
                        engine.Log.SocketFileRemoved(path, "no target is left");
                // The kernel lets go of a dying target's filter a moment before its sockets: give them a
                // second before taking a file for one that was passed to another process.
                for (int i = 0; i < 20 && stillOpen.Count > 0; i++)
                {
                    Thread.Sleep(50);
                    foreach (var f in stillOpen.Where(f => IsGone(f.SocketInode, null, diag)).ToList())
                    {
                        stillOpen.Remove(f);
                        if (f.RemoveIfStillOurs()) engine.Log.SocketFileRemoved(f.Path, "no target is left");
                    }
                }
                foreach (var f in stillOpen) engine.Log.SocketFileKept(f.Path);
                lock (_signal) _orphans.AddRange(stillOpen);
            }
            finally
            {
                EpollTransfer.ReleaseKept(a);
                a.Complete();
            }
        }
        var gone = orphans.Where(f => IsGone(f.SocketInode, listed, diag)).ToList();
        foreach (var f in gone)
            if (f.RemoveIfStillOurs()) engine.Log.SocketFileRemoved(f.Path, "its socket is closed");
        if (gone.Count > 0) lock (_signal) _orphans.RemoveAll(gone.Contains);
        int records = 0;
        foreach (var a in attached) records += a.Registry.Count;
        CompactAfterBurst(records);
    }

    /// <summary>
    /// The records of a burst of connections are swept within seconds, but the heap the GC grew for them stays
    /// committed (about 30 MB after 100k connections, 7 MB once compacted): give it back once, when a burst is over.
    /// </summary>
    private void CompactAfterBurst(int records)
    {
        if (!_burst.Observe(records)) return;
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        engine.Metrics.HeapCompacted();
    }

    /// <summary>sock_diag's exact word when it has one; else absence from /proc/net/unix.</summary>
    internal static bool IsGone(ulong inode, HashSet<ulong>? listed, Native.UnixDiag? diag) =>
        diag?.Exists(inode) is { } exists ? !exists : listed is not null && !listed.Contains(inode);
}

/// <summary>
/// Tells when a burst of socket records is over: the records once reached <paramref name="threshold"/> or more
/// and have since fallen below an eighth of their peak. Says so once per burst; a steady load never triggers it.
/// </summary>
internal sealed class BurstEnd(int threshold)
{
    private int _peak;

    /// <summary>True once, when <paramref name="records"/> (the live records now) ends a burst.</summary>
    public bool Observe(int records)
    {
        if (records > _peak) _peak = records;
        if (_peak < threshold || records >= _peak / 8) return false;
        _peak = records;
        return true;
    }
}
