using System.Runtime.CompilerServices;
using Unsock.Core.Addressing;
using Unsock.Core.Policies;
using Sock = global::Interop.Socket;

namespace Unsock.Core.Engine;

/// <summary>systemd rules: a bind takes a listening socket passed to the program instead of making one.</summary>
internal sealed partial class Redirector
{
    // Which passed sockets binds without a name took, per attachment and process (keyed by LISTEN_PID).
    private static readonly ConditionalWeakTable<SocketRegistry, Dictionary<int, HashSet<int>>> SystemdTaken = new();

    private Outcome BindSystemd(in SyscallRequest r, int fd, int copy, SocketFacts facts, PolicyRule rule, InetEndpoint endpoint, bool ipv6,
        SystemdAction systemd, ref bool copyConsumed)
    {
        string what = systemd.Name is null ? "systemd socket" : $"systemd socket \"{systemd.Name}\"";
        var sockets = SystemdSockets.Read(r.Pid, out string problem);
        if (sockets is null) return RefuseSystemd(r, endpoint, rule, what, problem);
        var takenByPid = SystemdTaken.GetOrCreateValue(_registry);
        int index;
        lock (takenByPid)
        {
            if (!takenByPid.TryGetValue(sockets.ListenPid, out var taken)) takenByPid[sockets.ListenPid] = taken = new();
            index = sockets.Choose(systemd.Name, taken);
            if (index < 0)
                return RefuseSystemd(r, endpoint, rule, what, systemd.Name is null
                    ? $"all {sockets.Count} passed sockets are taken by earlier binds"
                    : $"LISTEN_FDNAMES has no socket of that name (it names {string.Join(", ", sockets.Names)})");
            if (systemd.Name is null) taken.Add(index);
        }
        int passedFd = SystemdSockets.FirstFd + index;
        // The program's own fd: we take nothing the program could not use itself.
        int err = _target.CopyFd(r.Pid, passedFd, out int passed);
        if (err != 0) return RefuseSystemd(r, endpoint, rule, what, $"fd {passedFd} is not open in the program ({Errors.Name(err)})");
        err = ReadFacts(passed, out var passedFacts);
        string? wrong = err != 0 ? $"fd {passedFd} is not a socket"
            : passedFacts.Type != Sock.SockStream ? $"fd {passedFd} is not a stream socket"
            : Sock.GetInt(passed, Sock.SolSocket, Sock.SoAcceptConn, out int listening) != 0 || listening == 0 ? $"fd {passedFd} is a socket that is not listening"
            : null;
        if (wrong is not null)
        {
            CloseCopy(passed);
            return RefuseSystemd(r, endpoint, rule, what, wrong);
        }
        if (_log.Enabled) _log.Decision(r.Pid, "bind", endpoint.ToString(), $"rule {rule.Index}: {what}: fd {passedFd}");
        var entry = new ConvertedSocket(Sock.Inode(passed), passedFacts.Domain, ipv6) { Local = endpoint.InFamily(ipv6) };
        copyConsumed = true;
        return Swap(r, fd, passed, copy, facts.NonBlocking, entry);
    }

    /// <summary>No usable passed socket: the bind fails as for an address this host does not have.</summary>
    private Outcome RefuseSystemd(in SyscallRequest r, InetEndpoint endpoint, PolicyRule rule, string what, string why)
    {
        _log.Decision(r.Pid, "bind", endpoint.ToString(), $"rule {rule.Index}: {what}: {why}: EADDRNOTAVAIL");
        return Outcome.Fail(Errors.EADDRNOTAVAIL);
    }
}
