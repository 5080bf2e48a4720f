using Unsock.Core.Addressing;
using Unsock.Core.ControlFiles;
using Unsock.Core.Filter;
using Unsock.Core.Policies;
using Sock = global::Interop.Socket;

namespace Unsock.Core.Engine;

internal sealed partial class Redirector
{
    private Outcome Connect(in SyscallRequest r)
    {
        var decided = DecideRedirect(r, RuleDirection.Connect, out int copy, out var endpoint, out var facts, out var rule);
        if (decided is { } outcome) return outcome;
        int fd = (int)r.A0;
        int err;
        bool keepCopy = false;
        try
        {
            if (rule is null) return RestartedConnect(copy);
            using var identity = TargetIdentity.Assume(_target, r.Pid);
            if (identity.Errno != 0) return IdentityRefused(r, endpoint, rule.Index);
            string path = rule.ResolvePath(endpoint.MatchAddress, endpoint.Port, RuleProtocol.Tcp);
            bool ipv6 = facts.Domain == Sock.AfInet6;
            var peer = endpoint.InFamily(ipv6);

            err = TakeSpareUnixSocket(out int unix, out ulong unixInode);
            if (err != 0) return Outcome.Fail(err);
            CopySocketOptions(copy, unix);
            Span<byte> sa = stackalloc byte[UnixAddress.MaxSize];
            err = UnixSockAddr(path, sa, out int size, out int dirFd, out _);
            if (err == 0)
            {
                err = Sock.Connect(unix, sa[..size]);
                Sock.Close(dirFd);
            }
            if (err == Errors.EAGAIN)
            {
                // A full backlog. TCP programs read EAGAIN as "out of ports", and an event loop must not be held
                // in connect: a non-blocking socket is refused at once, as TCP does with tcp_abort_on_overflow.
                if (facts.NonBlocking)
                {
                    Sock.Close(unix);
                    _log.Decision(r.Pid, "connect", endpoint.ToString(), $"rule {rule.Index} -> {path}: backlog full, ECONNREFUSED (non-blocking)");
                    return Outcome.Fail(Errors.ECONNREFUSED);
                }
                // A blocking one waits for room on the poller, as long as its SO_SNDTIMEO allows.
                keepCopy = true;
                return ParkConnectWhenRoom(r, fd, copy, unix, path, facts, peer, rule.Index);
            }
            // A control file is a regular file where the socket should be, and connecting to it is refused:
            // only then is it worth reading.
            if (err == Errors.ECONNREFUSED && TryControlFile(r, endpoint, path, rule.Index, out var control, out var failure))
            {
                Sock.Close(unix);
                if (control is null) return failure;
                keepCopy = true;
                return ConnectThroughControlFile(r, fd, copy, facts, peer, control, path, rule.Index);
            }
            if (err != 0)
            {
                Sock.Close(unix);
                int mapped = MapUnixConnectError(err);
                _log.Decision(r.Pid, "connect", endpoint.ToString(), $"rule {rule.Index} -> {path}: {Errors.Name(mapped)}");
                return Outcome.Fail(mapped);
            }
            if (_log.Enabled) _log.Decision(r.Pid, "connect", endpoint.ToString(), $"rule {rule.Index} -> {path}: connected");
            keepCopy = true;
            return Swap(r, fd, unix, copy, facts.NonBlocking, new ConvertedSocket(unixInode, Sock.AfUnix, peer.IsIPv6) { Peer = peer });
        }
        finally
        {
            if (!keepCopy) Sock.Close(copy);
        }
    }

    /// <summary>True when <paramref name="path"/> is a control file (or a corrupt one: then <paramref name="failure"/> says so).</summary>
    private bool TryControlFile(in SyscallRequest r, InetEndpoint endpoint, string path, int ruleIndex, out ControlFile? control, out Outcome failure)
    {
        failure = default;
        try
        {
            return ControlFile.TryLoad(path, out control);
        }
        catch (ControlFileException e)
        {
            _log.Decision(r.Pid, "connect", endpoint.ToString(), $"rule {ruleIndex}: {e.Message}");
            control = null;
            failure = Outcome.Fail(Errors.ECONNREFUSED);
            return true;
        }
    }

    /// <summary>The program's identity could not be taken: never connect as ourselves instead.</summary>
    private Outcome IdentityRefused(in SyscallRequest r, InetEndpoint endpoint, int ruleIndex)
    {
        _log.Decision(r.Pid, "connect", endpoint.ToString(), $"rule {ruleIndex}: cannot take the program's identity: EACCES");
        return Outcome.Fail(Errors.EACCES);
    }

    /// <summary>A connect restarted after a signal, on a socket we already swapped: finish it, do not fail it.</summary>
    private Outcome RestartedConnect(int copy)
    {
        var entry = _registry.Find(Sock.Inode(copy));
        if (entry?.Peer is null) return Outcome.Continue;
        if (entry.Answered) return Outcome.Fail(Errors.EISCONN);
        return Outcome.Succeed(0, entry);
    }

    /// <summary>The record of a connected socket we are about to swap in.</summary>
    private static ConvertedSocket ClientEntry(int fd, int family, InetEndpoint peer) =>
        new(Sock.Inode(fd), family, peer.IsIPv6) { Peer = peer };

    private static int MapUnixConnectError(int err) => err switch
    {
        Errors.ENOENT or Errors.ENOTDIR or Errors.ECONNREFUSED or 91 /* EPROTOTYPE */ => Errors.ECONNREFUSED,
        Errors.EACCES or Errors.EPERM => Errors.EACCES,
        _ => err,
    };

    /// <summary>Applies a control file's socket parameters; 0 or the first errno.</summary>
    private static int ApplyParameters(ControlFile control, int sock)
    {
        foreach (var p in control.Parameters)
        {
            int err = p.TryApplyTo(sock);
            if (err != 0) return err;
        }
        return 0;
    }
}
