using System.Globalization;
using static Tmds.Linux.LibC;
using Native = global::Interop.Identity;

namespace Unsock.Core.Engine;

/// <summary>The filesystem identity a target acts with: fsuid, fsgid and supplementary groups (sorted).</summary>
internal sealed record FsCredentials(uint Uid, uint Gid, uint[] Groups)
{
    public override string ToString() => $"uid {Uid}, gid {Gid}, groups [{string.Join(' ', Groups)}]";
}

/// <summary>
/// A root supervisor acting for an unprivileged target is a confused deputy: it could connect to socket
/// files, or create or delete them in directories, that the target may not touch. Around such operations
/// the handling thread takes the target's filesystem identity (fsuid, fsgid, supplementary groups), which
/// Linux keeps per thread. It fails closed: when the identity cannot be read or does not take effect,
/// nothing is switched and the scope says EACCES; the caller then does nothing.
/// </summary>
internal static unsafe class TargetIdentity
{
    private static readonly bool Root = geteuid() == 0;
    private static readonly uint OwnGid = getegid();
    private static readonly uint[] OwnGroups = Native.ThreadGroups() ?? [];
    // Who this thread acts as now (null: the supervisor itself); scopes nest, each gives back what it found.
    [ThreadStatic] private static FsCredentials? t_current;
    // Set when switching back failed: this thread then acts for nobody until a switch back succeeds.
    [ThreadStatic] private static bool t_unknown;

    /// <summary>True while this thread has switched to a target's fs identity (or could not switch back).</summary>
    internal static bool IsActingForSomeone => t_current is not null || t_unknown;

    // The root of the target this thread acts for (fd + 1), when its root or mount namespace is not ours.
    [ThreadStatic] private static int t_root;
    private static readonly (ulong Device, ulong Inode) OwnRoot = StatOf("/");
    private static readonly byte[] OwnMountNamespace = global::Interop.TaskContext.ReadNamespace("/proc/self/ns/mnt");

    private static (ulong Device, ulong Inode) StatOf(string path) =>
        global::Interop.TaskContext.Stat(path, out ulong device, out ulong inode) == 0 ? (device, inode) : (0, 0);

    /// <summary>
    /// While a scope taken for a target is open, and that target's root directory or mount namespace is not
    /// the supervisor's: an O_PATH fd of its root (/proc/TID/root), from which its socket paths are resolved
    /// (openat2 with RESOLVE_IN_ROOT), so that its files are made, found and removed where it sees them and
    /// never outside its root. -1 when the target sees the supervisor's own tree.
    /// </summary>
    internal static int ForeignRoot => t_root - 1;

    // How many calls that can change a task's root or mount namespace the filter has shown us (chroot,
    // pivot_root, setns, unshare(CLONE_NEWNS): FilterPlan); a task seen in our tree is taken as still there
    // while this count is unchanged. 0: remembering is off for good (a change we could not follow).
    private static long s_rootChanges = 1;

    /// <summary>The count of root and mount namespace changes seen so far; 0 when nothing may be remembered.</summary>
    internal static long RootChanges => Volatile.Read(ref s_rootChanges);

    // Trapped changes that may not have been made yet: we see a chroot before it runs, and it runs some time
    // after our answer. While one is under way, what a look sees may be the tree from before it.
    private static readonly List<(int Tid, int Pidfd, int Nr)> s_underWay = new();

    /// <summary>
    /// Thread <paramref name="tid"/> is about to change its root or mount namespace with call <paramref name="nr"/>
    /// (it waits for our answer): whatever was remembered about any task's tree no longer holds. pivot_root
    /// moves the root of other tasks too, and threads may share one root, so this forgets for every task.
    /// </summary>
    internal static void RootMayChange(int tid, int nr)
    {
        // Under way first, counted second: a look that read the count before this cannot miss both.
        int pidfd = global::Interop.Pidfd.Open(tid, global::Interop.Pidfd.PidfdThread);
        if (pidfd < 0)
        {
            StopRememberingTrees(); // we could not tell when it is done
            return;
        }
        lock (s_underWay) s_underWay.Add((tid, pidfd, nr));
        long seen = Volatile.Read(ref s_rootChanges);
        while (seen != 0)
        {
            long was = Interlocked.CompareExchange(ref s_rootChanges, seen + 1, seen);
            if (was == seen) return;
            seen = was;
        }
    }

    /// <summary>
    /// True when every change trapped so far has been made: its thread has exited, or is in another call
    /// (/proc/TID/syscall). One that runs in user space (no call to tell) counts as under way.
    /// </summary>
    internal static bool NoChangeUnderWay()
    {
        lock (s_underWay)
        {
            for (int i = s_underWay.Count - 1; i >= 0; i--)
            {
                var (tid, pidfd, nr) = s_underWay[i];
                if (!global::Interop.Socket.Poll(pidfd, 1 /* POLLIN: exited */, 0) && InCall(tid, nr)) continue;
                close(pidfd);
                s_underWay.RemoveAt(i);
            }
            return s_underWay.Count == 0;
        }
    }

    /// <summary>
    /// True unless /proc/TID/syscall shows thread <paramref name="tid"/> gone, blocked in a call other than
    /// <paramref name="nr"/>, or stopped outside any call ("-1 ...").
    /// </summary>
    private static bool InCall(int tid, int nr)
    {
        Span<byte> text = stackalloc byte[64];
        int n = global::Interop.FileSystem.ReadSmallFile($"/proc/{tid}/syscall", text);
        if (n == -Errors.ENOENT || n == -Errors.ESRCH) return false;
        if (n >= 2 && text[0] == (byte)'-' && text[1] == (byte)'1') return false;
        if (n <= 0 || text[0] is < (byte)'0' or > (byte)'9') return true; // "running", or unreadable: cannot tell
        int number = 0;
        foreach (byte c in text[..n])
        {
            if (c is < (byte)'0' or > (byte)'9') break;
            number = number * 10 + (c - '0');
        }
        return number == nr;
    }

    /// <summary>From now on every call looks at the target's tree again.</summary>
    private static void StopRememberingTrees() => Interlocked.Exchange(ref s_rootChanges, 0);

    /// <summary><see cref="OpenForeignRoot(TargetProcess?, int, out int)"/> looking every time (off the notification threads).</summary>
    internal static int OpenForeignRoot(int tid, out int root) => OpenForeignRoot(null, tid, out root);

    /// <summary>
    /// Opens thread <paramref name="tid"/>'s root when it or its mount namespace differs from ours
    /// (<paramref name="root"/> is -1 when both are ours); 0, or the errno that keeps us from knowing.
    /// </summary>
    /// <param name="target">The calling notification thread's cache, which remembers a task seen in our tree
    /// until a root or namespace change is trapped (<see cref="RootChanges"/>); null looks every time.</param>
    internal static int OpenForeignRoot(TargetProcess? target, int tid, out int root)
    {
        root = -1;
        // Read before looking: a change trapped while we look makes what we saw count for nothing.
        long changes = RootChanges;
        if (target is not null && target.SeenInOwnTree(tid, changes)) return 0;
        object? pidfd = changes != 0 && target is not null && NoChangeUnderWay() ? target.BeforeLookingAtTree(tid) : null;
        // The common case, a target that sees our tree, costs two stats and no fd.
        int err = global::Interop.TaskContext.Stat($"/proc/{tid}/root", out ulong device, out ulong inode);
        if (err != 0) return err;
        if ((device, inode) == OwnRoot)
        {
            err = global::Interop.TaskContext.NamespaceIs($"/proc/{tid}/ns/mnt", OwnMountNamespace, out bool same);
            if (err != 0) return err;
            if (same && OwnMountNamespace.Length > 0)
            {
                target?.RememberOwnTree(pidfd, changes);
                return 0;
            }
        }
        return global::Interop.TaskContext.OpenDirectory($"/proc/{tid}/root", out root, out _, out _);
    }

    /// <summary>Gives back the identity the thread had before, when disposed.</summary>
    public readonly struct Scope : IDisposable
    {
        private readonly bool _switched;
        private readonly FsCredentials? _previous;
        // The target's root this scope opened (fd + 1; 0: none) and what the thread had before.
        private readonly int _root;
        private readonly int _previousRoot;

        internal Scope(bool switched, FsCredentials? previous, FsCredentials? credentials, int errno)
        {
            _switched = switched;
            _previous = previous;
            Credentials = credentials;
            Errno = errno;
        }

        private Scope(Scope ids, int root)
        {
            this = ids;
            _root = root + 1;
            _previousRoot = t_root;
            t_root = _root;
        }

        /// <summary>The same scope, resolving paths from <paramref name="root"/> (which it closes) until disposed.</summary>
        internal Scope WithRoot(int root) => new(this, root);

        /// <summary>0, or EACCES when the target's identity could not be taken: then do nothing for it.</summary>
        public int Errno { get; }

        /// <summary>Who this thread acts as now; null for the supervisor itself (not root, or a root target).</summary>
        public FsCredentials? Credentials { get; }

        public void Dispose()
        {
            if (_switched && !SwitchTo(_previous)) SwitchTo(null);
            if (_root != 0)
            {
                t_root = _previousRoot;
                close(_root - 1);
            }
        }
    }

    private static Scope Refused => new(switched: false, previous: null, credentials: null, Errors.EACCES);

    /// <summary>Takes the identity of thread <paramref name="tid"/> for file system access on this thread.</summary>
    /// <param name="target">The calling notification thread's cache, or null on a worker thread.</param>
    public static Scope Assume(TargetProcess? target, int tid)
    {
        // Its root first, as ourselves: /proc/TID/root is for those who may ptrace it.
        if (OpenForeignRoot(target, tid, out int root) != 0) return Refused;
        var scope = AssumeIds(target, tid);
        if (root < 0) return scope;
        if (scope.Errno != 0)
        {
            close(root);
            return scope;
        }
        return scope.WithRoot(root);
    }

    private static Scope AssumeIds(TargetProcess? target, int tid)
    {
        if (!Root) return default;
        // The pidfd tells the credentials in one ioctl (6.13): that rules out the common root-for-root case.
        if (target is not null && target.TryGetFsIds(tid, out uint fsuid, out _) && fsuid == 0) return Assume(credentials: null);
        return TryRead(tid, out var credentials) ? Assume(credentials) : Refused;
    }

    /// <summary>Takes recorded credentials (those a socket file was created with); null acts as the supervisor.</summary>
    public static Scope Assume(FsCredentials? credentials)
    {
        if (!Root) return default;
        if (credentials is { Uid: 0 }) credentials = null; // a root target: we act as ourselves
        if (t_unknown && !SwitchTo(null)) return Refused;
        var previous = t_current;
        if (Same(previous, credentials)) return new Scope(switched: false, previous, credentials, 0);
        if (SwitchTo(credentials)) return new Scope(switched: true, previous, credentials, 0);
        if (!SwitchTo(previous)) SwitchTo(null);
        return Refused;
    }

    /// <summary>
    /// Sets this thread's groups, fsgid and fsuid (null: the supervisor's own) and reads them back: the kernel
    /// ignores a switch it does not allow (no CAP_SETUID, say) without a word.
    /// </summary>
    private static bool SwitchTo(FsCredentials? credentials)
    {
        uint uid = credentials?.Uid ?? 0, gid = credentials?.Gid ?? OwnGid;
        uint[] groups = credentials?.Groups ?? OwnGroups;
        Native.SetThreadGroups(groups);
        Native.SetFsGid(gid);
        Native.SetFsUid(uid);
        bool done = Native.FsUid() == uid && Native.FsGid() == gid && Native.ThreadGroups() is { } now && now.AsSpan().SequenceEqual(groups);
        if (done) t_current = credentials;
        t_unknown = !done;
        return done;
    }

    private static bool Same(FsCredentials? a, FsCredentials? b) =>
        a is null ? b is null : b is not null && a.Uid == b.Uid && a.Gid == b.Gid && a.Groups.AsSpan().SequenceEqual(b.Groups);

    /// <summary>The umask of thread <paramref name="tid"/> (what files created for it are subject to); false when unreadable.</summary>
    public static bool TryReadUmask(int tid, out int umask)
    {
        umask = 0;
        return TargetProcess.ReadStatus(tid, "Umask:") is [{ } value] && TryOctal(value, out umask);
    }

    private static bool TryOctal(string text, out int value)
    {
        value = 0;
        foreach (char c in text)
        {
            if (c is < '0' or > '7' || value > 0x1FF) return false;
            value = value * 8 + (c - '0');
        }
        return text.Length > 0 && value <= 0x1FF;
    }

    /// <summary>The fs ids and groups from /proc/TID/status; false when it cannot be read or parsed.</summary>
    internal static bool TryRead(int tid, out FsCredentials credentials)
    {
        credentials = null!;
        // "Uid:\treal\teffective\tsaved\tfs": access checks use the fs ids.
        if (TargetProcess.ReadStatus(tid, "Uid:", "Gid:", "Groups:") is not [{ } uids, { } gids, var groupList]) return false;
        if (!TryField(uids, 3, out uint uid) || !TryField(gids, 3, out uint gid)) return false;
        var parts = (groupList ?? "").Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
        var groups = new uint[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!uint.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out groups[i])) return false;
        Array.Sort(groups);
        credentials = new FsCredentials(uid, gid, groups);
        return true;
    }

    private static bool TryField(string values, int index, out uint value)
    {
        value = 0;
        var fields = values.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
        return fields.Length > index && uint.TryParse(fields[index], NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }
}
