using Tmds.Linux;
using static Tmds.Linux.LibC;
using Native = global::Interop.Identity;

namespace Unsock.Core.Engine;

/// <summary>
/// A root supervisor acting for an unprivileged target is a confused deputy: it could connect to socket
/// files, or create them in directories, that the target may not touch. Around such operations the
/// handling thread takes the target's filesystem identity (fsuid, fsgid, supplementary groups), which
/// Linux keeps per thread.
/// </summary>
internal static unsafe class TargetIdentity
{
    private static readonly bool Root = geteuid() == 0;
    private static readonly uint[] OwnGroups = ReadOwnGroups();

    /// <summary>Restores the supervisor's identity when disposed. A no-op unless we are root and the target is not.</summary>
    public readonly struct Scope : IDisposable
    {
        private readonly bool _switched;

        internal Scope(bool switched) => _switched = switched;

        public void Dispose()
        {
            if (!_switched) return;
            Native.SetThreadGroups(OwnGroups);
            Native.SetFsGid(0);
            Native.SetFsUid(0);
        }
    }

    /// <summary>Takes the identity of thread <paramref name="tid"/> for file system access on this thread.</summary>
    /// <param name="target">The calling notification thread's cache, or null on a worker thread.</param>
    public static Scope Assume(TargetProcess? target, int tid)
    {
        if (!Root) return default;
        // The pidfd tells the credentials in one ioctl (6.13): that rules out the common root-for-root case.
        if (target is not null && target.TryGetFsIds(tid, out uint fsuid, out _) && fsuid == 0) return default;
        if (!TryRead(tid, out uint uid, out uint gid, out uint[] groups) || uid == 0) return default;
        Native.SetThreadGroups(groups);
        Native.SetFsGid(gid);
        Native.SetFsUid(uid);
        return new Scope(switched: true);
    }

    private static bool TryRead(int tid, out uint uid, out uint gid, out uint[] groups)
    {
        uid = gid = 0;
        groups = [];
        // "Uid:\treal\teffective\tsaved\tfs": access checks use the fs ids.
        if (TargetProcess.ReadStatus(tid, "Uid:", "Gid:", "Groups:") is not [{ } uids, { } gids, var groupList]) return false;
        uid = Field(uids, 3);
        gid = Field(gids, 3);
        groups = (groupList ?? "").Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries).Select(uint.Parse).ToArray();
        return true;
    }

    private static uint Field(string values, int index) =>
        uint.Parse(values.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[index]);

    private static uint[] ReadOwnGroups()
    {
        int n = getgroups(0, null);
        if (n <= 0) return [];
        var groups = new uint[n];
        fixed (uint* g = groups) n = getgroups(n, (gid_t*)g);
        return n < 0 ? [] : groups[..n];
    }
}
