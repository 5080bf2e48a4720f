using System.Globalization;
using Native = global::Interop;
using Creds = global::Interop.Credentials;

namespace Unsock.Core.Engine;

/// <summary>
/// A thread's whole credentials as the kernel checks them at bind, connect and send: real and effective
/// uid/gid (a Unix peer's SO_PEERCRED and SCM_CREDENTIALS report them), fs ids and groups (path lookups,
/// the owner of a socket file), and the effective capabilities (netlink multicast needs CAP_NET_ADMIN, a
/// vsock port below 1024 CAP_NET_BIND_SERVICE, checked against the caller).
/// </summary>
internal sealed record TaskCredentials(uint RealUid, uint EffectiveUid, uint FsUid, uint RealGid, uint EffectiveGid, uint FsGid,
    uint[] Groups, ulong EffectiveCapabilities)
{
    public override string ToString() =>
        $"uid {RealUid}/{EffectiveUid}/fs {FsUid}, gid {RealGid}/{EffectiveGid}/fs {FsGid}, groups [{string.Join(' ', Groups)}], CapEff {EffectiveCapabilities:x}";
}

/// <summary>
/// Lets this thread act as a target thread for one call carried out on our copy of its socket: the whole
/// credentials of <see cref="TaskCredentials"/>, the effective capabilities cut down to ours ∩ the target's.
/// Credentials and capabilities are per thread in Linux, so nothing else of the supervisor is affected.
/// It fails closed: when the target's credentials cannot be read, when it lives in another user namespace
/// or under another LSM label (our capabilities and label would then not be its own), or when a switch does
/// not read back as asked, nothing is done for it (EACCES). The saved uid stays ours, which is what lets the
/// thread switch back.
/// </summary>
internal static class TargetCredentials
{
    private static readonly (ulong Device, ulong Inode) OwnUserNamespace = NamespaceOf("/proc/self/ns/user");

    /// <summary>Gives the thread its own credentials back, when disposed.</summary>
    public readonly struct Scope : IDisposable
    {
        private readonly Saved? _saved;

        internal Scope(Saved? saved, int errno, string? refusal)
        {
            _saved = saved;
            Errno = errno;
            Refusal = refusal;
        }

        /// <summary>0, or EACCES when the call must not be carried out for this target (then <see cref="Refusal"/> says why).</summary>
        public int Errno { get; }

        public string? Refusal { get; }

        public void Dispose()
        {
            if (_saved is { } saved) Restore(saved);
        }
    }

    /// <summary>What the thread had before the switch.</summary>
    internal sealed record Saved(uint Ruid, uint Euid, uint Suid, uint Rgid, uint Egid, uint Sgid, uint[] Groups, Creds.CapabilitySets Capabilities);

    /// <summary>
    /// Makes this thread act as thread <paramref name="tid"/> until the scope is disposed. Must not be nested in a
    /// <see cref="TargetIdentity"/> scope (it replaces the fs ids as well).
    /// </summary>
    public static Scope Assume(int tid)
    {
        if (TargetIdentity.IsActingForSomeone) return Refused("the thread already acts for a target");
        if (!TryRead(tid, out var target)) return Refused("its credentials cannot be read");
        if (NamespaceOf($"/proc/{tid}/ns/user") is var ns && (ns.Device == 0 || ns != OwnUserNamespace))
            return Refused("it runs in another user namespace");
        if (!SameSecurityLabel(tid)) return Refused("it runs under another LSM label than the supervisor");
        if (!TrySave(out var saved)) return Refused("our own credentials cannot be read");

        ulong capabilities = saved.Capabilities.Permitted & target.EffectiveCapabilities;
        // Groups first and the uids last: each step needs the privileges the next one drops.
        if (!saved.Groups.AsSpan().SequenceEqual(target.Groups)) Native.Identity.SetThreadGroups(target.Groups);
        Creds.SetResGid(target.RealGid, target.EffectiveGid, Creds.Unchanged);
        Native.Identity.SetFsGid(target.FsGid);
        Creds.SetResUid(target.RealUid, target.EffectiveUid, Creds.Unchanged);
        // Leaving uid 0 cleared the effective set; it is raised again only to what the target has itself.
        Creds.SetCapabilities(saved.Capabilities with { Effective = capabilities });
        Native.Identity.SetFsUid(target.FsUid);

        if (Current(out var now) && now == target with { Groups = now.Groups, EffectiveCapabilities = capabilities }
            && now.Groups.AsSpan().SequenceEqual(target.Groups))
            return new Scope(saved, 0, null);
        Restore(saved);
        return Refused($"switching to its credentials ({target}) did not take effect");
    }

    private static Scope Refused(string why) => new(null, Errors.EACCES, why);

    private static bool TrySave(out Saved saved)
    {
        saved = null!;
        if (Creds.GetResUid(out uint ruid, out uint euid, out uint suid) != 0) return false;
        if (Creds.GetResGid(out uint rgid, out uint egid, out uint sgid) != 0) return false;
        if (Native.Identity.ThreadGroups() is not { } groups) return false;
        if (Creds.GetCapabilities(out var caps) != 0) return false;
        saved = new Saved(ruid, euid, suid, rgid, egid, sgid, groups, caps);
        return true;
    }

    /// <summary>Back to what the thread had; a thread that cannot get back is reported (it then fails every later switch check).</summary>
    private static void Restore(Saved s)
    {
        // The saved uid is still ours: back to it first, which gives the capabilities needed for the rest.
        Creds.SetResUid(s.Ruid, s.Euid, s.Suid);
        Creds.SetResGid(s.Rgid, s.Egid, s.Sgid);
        Native.Identity.SetThreadGroups(s.Groups);
        Creds.SetCapabilities(s.Capabilities);
        bool back = Creds.GetResUid(out uint r, out uint e, out uint su) == 0 && (r, e, su) == (s.Ruid, s.Euid, s.Suid)
            && Creds.GetResGid(out uint rg, out uint eg, out uint sg) == 0 && (rg, eg, sg) == (s.Rgid, s.Egid, s.Sgid)
            && Native.Identity.FsUid() == s.Euid && Native.Identity.FsGid() == s.Egid
            && Creds.GetCapabilities(out var caps) == 0 && caps == s.Capabilities;
        if (!back) throw new InvalidOperationException($"thread {Native.Epoll.ThreadId()} could not take back its own credentials after acting for a target");
    }

    /// <summary>This thread's credentials as they are now.</summary>
    private static bool Current(out TaskCredentials now)
    {
        now = null!;
        if (Creds.GetResUid(out uint ruid, out uint euid, out _) != 0 || Creds.GetResGid(out uint rgid, out uint egid, out _) != 0) return false;
        if (Native.Identity.ThreadGroups() is not { } groups || Creds.GetCapabilities(out var caps) != 0) return false;
        now = new TaskCredentials(ruid, euid, Native.Identity.FsUid(), rgid, egid, Native.Identity.FsGid(), groups, caps.Effective);
        return true;
    }

    /// <summary>The target thread's credentials from /proc/TID/status; false when they cannot be read or parsed.</summary>
    internal static bool TryRead(int tid, out TaskCredentials credentials)
    {
        credentials = null!;
        // "Uid:\treal\teffective\tsaved\tfs"
        if (TargetProcess.ReadStatus(tid, "Uid:", "Gid:", "Groups:", "CapEff:") is not [{ } uids, { } gids, var groupList, { } capEff]) return false;
        if (!TryFields(uids, out uint ruid, out uint euid, out uint fsuid) || !TryFields(gids, out uint rgid, out uint egid, out uint fsgid)) return false;
        if (!ulong.TryParse(capEff, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong caps)) return false;
        var parts = (groupList ?? "").Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
        var groups = new uint[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!uint.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out groups[i])) return false;
        Array.Sort(groups);
        credentials = new TaskCredentials(ruid, euid, fsuid, rgid, egid, fsgid, groups, caps);
        return true;
    }

    private static bool TryFields(string values, out uint real, out uint effective, out uint fs)
    {
        real = effective = fs = 0;
        var f = values.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
        return f.Length == 4 && uint.TryParse(f[0], NumberStyles.None, CultureInfo.InvariantCulture, out real)
            && uint.TryParse(f[1], NumberStyles.None, CultureInfo.InvariantCulture, out effective)
            && uint.TryParse(f[3], NumberStyles.None, CultureInfo.InvariantCulture, out fs);
    }

    private static (ulong Device, ulong Inode) NamespaceOf(string path)
    {
        // stat follows the magic link to the namespace's nsfs inode.
        return Native.TaskContext.Stat(path, out ulong device, out ulong inode) == 0 ? (device, inode) : (0, 0);
    }

    /// <summary>True when the target runs under the LSM label this thread has (or neither has one).</summary>
    private static bool SameSecurityLabel(int tid)
    {
        Span<byte> ours = stackalloc byte[256], theirs = stackalloc byte[256];
        int a = Native.FileSystem.ReadSmallFile("/proc/thread-self/attr/current", ours);
        int b = Native.FileSystem.ReadSmallFile($"/proc/{tid}/attr/current", theirs);
        if (a < 0 || b < 0) return a == b; // no LSM with a current label: both say the same errno
        return ours[..a].SequenceEqual(theirs[..b]);
    }
}
