using Unsock.Core.Addressing;
using Native = global::Interop;

namespace Unsock.Core.Engine;

/// <summary>
/// A socket file that a target bound through us; removed when its socket is gone everywhere. It keeps the
/// directory it was created in (O_PATH) and the identity that created it: removal is unlinkat in that
/// directory, as that identity, after checking the entry there, so neither a directory swapped for a
/// symlink nor a root supervisor can make it remove anything the target could not remove itself.
/// </summary>
internal sealed class BoundFile
{
    // Files not yet removed or forgotten, by device and inode: a new file of ours with the same numbers
    // means the old one is gone (its inode was reused), and the old record must never act on the new file.
    private static readonly Dictionary<(ulong Device, ulong Inode), BoundFile> Live = new();
    private readonly Native.FileSystem.DirectoryHandle _directory;

    public BoundFile(string path, string sunPath, Native.FileSystem.DirectoryHandle directory, string name, ulong device, ulong inode,
        ulong socketInode, FsCredentials? owner)
    {
        Path = path;
        SunPath = sunPath;
        _directory = directory;
        Name = name;
        Device = device;
        Inode = inode;
        SocketInode = socketInode;
        Owner = owner;
        BoundFile? replaced;
        lock (Live)
        {
            Live.Remove((device, inode), out replaced);
            Live[(device, inode)] = this;
        }
        replaced?.Forget();
    }

    public string Path { get; }
    /// <summary>What getsockname of the listener (and of every accepted socket) reports as sun_path.</summary>
    public string SunPath { get; }
    /// <summary>The entry in the directory the file was created in.</summary>
    public string Name { get; }
    public ulong Device { get; }
    public ulong Inode { get; }
    public ulong SocketInode { get; }
    /// <summary>Who created the file, and who removes it; null for the supervisor itself (not root, or a root target).</summary>
    public FsCredentials? Owner { get; }
    public ConvertedSocket? Listener { get; set; }
    /// <summary>The rule said noremove: the file stays after its socket is closed and after the program exits.</summary>
    public bool NoRemove { get; init; }
    /// <summary>When it was registered: a sweep leaves alone what came after it had read the live sockets.</summary>
    public long Sequence { get; set; }

    /// <summary>The file of ours at <paramref name="device"/>/<paramref name="inode"/>, unless removed or forgotten.</summary>
    public static BoundFile? Find(ulong device, ulong inode)
    {
        lock (Live) return Live.GetValueOrDefault((device, inode));
    }

    /// <summary>
    /// Unlinks the file unless somebody replaced it since we created it (checked on the directory it was
    /// created in: same device and inode, still a socket); done once, with the creator's identity.
    /// </summary>
    public bool RemoveIfStillOurs()
    {
        lock (this)
        {
            if (_directory.IsClosed) return false;
            if (NoRemove)
            {
                Release();
                return false;
            }
            try
            {
                using var identity = TargetIdentity.Assume(Owner);
                if (identity.Errno != 0) return false; // never as anyone else: the file stays
                int dir = _directory.Fd;
                if (Native.FileSystem.StatAt(dir, Name, out var st) != 0 || st.Device != Device || st.Inode != Inode || !st.IsSocket) return false;
                return Native.FileSystem.UnlinkAt(dir, Name) == 0;
            }
            finally
            {
                Release();
            }
        }
    }

    /// <summary>The file is no longer ours (replaced or removed by others): keep nothing, remove nothing.</summary>
    public void Forget()
    {
        lock (this) Release();
    }

    private void Release()
    {
        if (_directory.IsClosed) return;
        lock (Live)
            if (Live.TryGetValue((Device, Inode), out var current) && ReferenceEquals(current, this)) Live.Remove((Device, Inode));
        _directory.Dispose();
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
    /// <summary>
    /// A program's own AF_UNIX socket that a fromUnix/fromAbstract rule bound or connected elsewhere: the sockaddr it
    /// asked for, which getsockname (bind) or getpeername (connect, <see cref="UnixNameIsPeer"/>) reports. Null otherwise.
    /// </summary>
    public byte[]? UnixName { get; init; }
    public bool UnixNameIsPeer { get; init; }
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

    /// <summary>The options answered from this record, for <see cref="AttachmentState"/>; null when none.</summary>
    public List<OptionState>? ExportOptions()
    {
        lock (this)
            return _options?.Select(o => new OptionState { Level = o.Key.Level, Option = o.Key.Option, Value = o.Value }).ToList();
    }
}

/// <summary>
/// Everything the engine converted: sockets by inode, socket files by sun_path. Entries of sockets that
/// no longer exist are dropped by <see cref="Sweep"/>, which reads the kernel's list of live Unix sockets.
/// </summary>
internal sealed partial class SocketRegistry
{
    private readonly object _gate = new();
    private readonly Dictionary<ulong, ConvertedSocket> _sockets = new();
    private readonly Dictionary<string, BoundFile> _files = new(StringComparer.Ordinal);
    private volatile int _count;
    private long _sequence, _filesVersion;

    /// <summary>Changes whenever a socket file is registered or removed.</summary>
    public long FilesVersion => Interlocked.Read(ref _filesVersion);

    public bool IsEmpty => _count == 0;

    public int Count => _count;

    public ConvertedSocket? Find(ulong inode)
    {
        lock (_gate) return _sockets.GetValueOrDefault(inode);
    }

    public BoundFile? FindFile(string sunPath)
    {
        lock (_gate) return _files.GetValueOrDefault(sunPath);
    }

    /// <summary>Called (on the calling thread: keep it short) after a socket file is registered.</summary>
    public Action? FileAdded { get; set; }

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
                _filesVersion++;
            }
            _count = _sockets.Count;
        }
        if (socket.File is not null) FileAdded?.Invoke();
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
            if (_files.TryGetValue(file.SunPath, out var f) && ReferenceEquals(f, file) && _files.Remove(file.SunPath)) _filesVersion++;
        }
        file.RemoveIfStillOurs();
    }

    /// <summary>The paths of the socket files registered and not yet removed (for status).</summary>
    public string[] FilePaths()
    {
        lock (_gate) return _files.Values.Select(f => f.Path).Order(StringComparer.Ordinal).ToArray();
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
                if (_files.TryGetValue(f.SunPath, out var current) && ReferenceEquals(current, f) && _files.Remove(f.SunPath)) _filesVersion++;
        }
        foreach (var f in deadFiles)
            if (f.RemoveIfStillOurs()) removed.Add(f.Path);
        return removed;
    }
}
