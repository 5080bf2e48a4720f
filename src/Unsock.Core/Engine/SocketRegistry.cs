using Unsock.Core.Addressing;
using Native = global::Interop;

namespace Unsock.Core.Engine;

/// <summary>A socket file that a target bound through us; removed when its socket is gone everywhere.</summary>
internal sealed class BoundFile(string path, string sunPath, ulong device, ulong inode, ulong socketInode)
{
    public string Path { get; } = path;
    /// <summary>What getsockname of the listener (and of every accepted socket) reports as sun_path.</summary>
    public string SunPath { get; } = sunPath;
    public ulong Device { get; } = device;
    public ulong Inode { get; } = inode;
    public ulong SocketInode { get; } = socketInode;
    public ConvertedSocket? Listener { get; set; }
    /// <summary>When it was registered: a sweep leaves alone what came after it had read the live sockets.</summary>
    public long Sequence { get; set; }

    /// <summary>Unlinks the file unless somebody replaced it since we created it.</summary>
    public bool RemoveIfStillOurs()
    {
        if (Native.FileSystem.Lstat(Path, out var st) != 0 || st.Device != Device || st.Inode != Inode) return false;
        return Native.FileSystem.Unlink(Path) == 0;
    }
}

/// <summary>A socket we swapped into a target, keyed by its socket inode.</summary>
internal sealed class ConvertedSocket(ulong inode, int family, bool ipv6)
{
    public ulong Inode { get; } = inode;
    /// <summary>The address family the socket now has (AF_UNIX, AF_VSOCK, AF_TIPC).</summary>
    public int Family { get; } = family;
    /// <summary>The family the program created: AF_INET6 when true, else AF_INET.</summary>
    public bool IPv6 { get; } = ipv6;
    public InetEndpoint? Local { get; set; }
    public InetEndpoint? Peer { get; set; }
    /// <summary>False between injecting the fd and the target receiving our answer: a restarted call is then ours to finish.</summary>
    public bool Answered { get; set; }
    public BoundFile? File { get; set; }
    public bool AcceptedFromListener { get; set; }
    /// <summary>When it was registered: a sweep leaves alone what came after it had read the live sockets.</summary>
    public long Sequence { get; set; }
    /// <summary>Sweeps in a row that did not find it in /proc/net/unix.</summary>
    public int Misses { get; set; }
    /// <summary>Connections accepted for a target that was interrupted before it got them.</summary>
    public Queue<int>? PendingAccepted { get; set; }
    private Dictionary<(int Level, int Option), byte[]>? _options;

    // Several notification threads may serve one program's calls on the same socket.
    public byte[]? GetOption(int level, int option)
    {
        lock (this) return _options is not null && _options.TryGetValue((level, option), out var v) ? v : null;
    }

    public void SetOption(int level, int option, byte[] value)
    {
        lock (this) (_options ??= new())[(level, option)] = value;
    }
}

/// <summary>
/// Everything the engine converted: sockets by inode, socket files by sun_path. Entries of sockets that
/// no longer exist are dropped by <see cref="Sweep"/>, which reads the kernel's list of live Unix sockets.
/// </summary>
internal sealed class SocketRegistry
{
    private readonly object _gate = new();
    private readonly Dictionary<ulong, ConvertedSocket> _sockets = new();
    private readonly Dictionary<string, BoundFile> _files = new(StringComparer.Ordinal);
    private volatile int _count;
    private long _sequence;

    public bool IsEmpty => _count == 0;

    public ConvertedSocket? Find(ulong inode)
    {
        lock (_gate) return _sockets.GetValueOrDefault(inode);
    }

    public BoundFile? FindFile(string sunPath)
    {
        lock (_gate) return _files.GetValueOrDefault(sunPath);
    }

    public void Add(ConvertedSocket socket)
    {
        lock (_gate)
        {
            socket.Sequence = ++_sequence;
            _sockets[socket.Inode] = socket;
            if (socket.File is { } f)
            {
                f.Sequence = socket.Sequence;
                _files[f.SunPath] = f;
            }
            _count = _sockets.Count;
        }
    }

    public ConvertedSocket GetOrAddAccepted(ulong inode, ConvertedSocket listener)
    {
        lock (_gate)
        {
            if (!_sockets.TryGetValue(inode, out var s))
            {
                s = new ConvertedSocket(inode, listener.Family, listener.IPv6)
                {
                    Local = listener.Local, AcceptedFromListener = true, Answered = true, Sequence = ++_sequence,
                };
                _sockets[inode] = s;
                _count = _sockets.Count;
            }
            return s;
        }
    }

    /// <summary>Removes the socket file of a listener the program shut down.</summary>
    public void RemoveFile(BoundFile file)
    {
        lock (_gate)
        {
            if (_files.TryGetValue(file.SunPath, out var f) && ReferenceEquals(f, file)) _files.Remove(file.SunPath);
        }
        file.RemoveIfStillOurs();
    }

    /// <summary>Socket files registered and not yet removed.</summary>
    public int FileCount
    {
        get { lock (_gate) return _files.Count; }
    }

    /// <summary>Drops entries whose sockets are closed everywhere and removes their socket files.</summary>
    /// <param name="listed">The inodes /proc/net/unix listed, read before this call (null: unreadable).</param>
    /// <param name="diag">Exact lookups by inode, where the kernel has them.</param>
    /// <param name="targetsGone">
    /// True when no target is left: every record goes, and every file whose socket is gone; a file whose
    /// socket is still open (passed to another process) is added to <paramref name="stillOpen"/> instead.
    /// </param>
    public List<string> Sweep(HashSet<ulong>? listed, Native.UnixDiag? diag, bool targetsGone, List<BoundFile>? stillOpen)
    {
        long horizon;
        lock (_gate) horizon = _sequence;
        // A socket missing from /proc/net/unix may only have been skipped (the list is read while sockets come
        // and go): a socket file goes only when an exact sock_diag lookup says ENOENT, a socket record (cheap
        // to be wrong about, and there is one per connection) when two sweeps in a row missed it.
        bool Gone(ConvertedSocket s)
        {
            if (targetsGone) return true;
            if (listed is null || listed.Contains(s.Inode)) { s.Misses = 0; return false; }
            return ++s.Misses >= 2;
        }
        bool FileGone(BoundFile f) => targetsGone
            ? SocketSweeper.IsGone(f.SocketInode, listed, diag)
            : listed is not null && !listed.Contains(f.SocketInode) && diag is not null && diag.Exists(f.SocketInode) == false;
        var removed = new List<string>();
        List<(ulong Inode, ConvertedSocket Socket)> candidates;
        List<BoundFile> fileCandidates;
        lock (_gate)
        {
            if (_sockets.Count == 0 && _files.Count == 0) return removed;
            // Only AF_UNIX sockets are listed in /proc/net/unix; others live until the end.
            candidates = _sockets.Where(e => targetsGone || (e.Value.Sequence <= horizon && e.Value.Family == Native.Socket.AfUnix))
                .Select(e => (e.Key, e.Value)).ToList();
            fileCandidates = _files.Values.Where(f => targetsGone || f.Sequence <= horizon).ToList();
        }
        var deadSockets = candidates.Where(c => Gone(c.Socket)).ToList();
        lock (_gate)
        {
            foreach (var (inode, s) in deadSockets)
            {
                if (!_sockets.TryGetValue(inode, out var current) || !ReferenceEquals(current, s)) continue;
                _sockets.Remove(inode);
                lock (s)
                    while (s.PendingAccepted is { Count: > 0 } q) Native.Socket.Close(q.Dequeue());
            }
            _count = _sockets.Count;
        }
        // Judged after the kept connections above are closed: they are ours, not the targets'.
        var deadFiles = new List<BoundFile>();
        foreach (var f in fileCandidates)
        {
            if (FileGone(f)) deadFiles.Add(f);
            else if (targetsGone) stillOpen?.Add(f);
        }
        lock (_gate)
        {
            foreach (var f in targetsGone ? fileCandidates : deadFiles)
                if (_files.TryGetValue(f.SunPath, out var current) && ReferenceEquals(current, f)) _files.Remove(f.SunPath);
        }
        foreach (var f in deadFiles)
            if (f.RemoveIfStillOurs()) removed.Add(f.Path);
        return removed;
    }
}
