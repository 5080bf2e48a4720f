using Unsock.Core.Addressing;
using Unsock.Core.ControlFiles;
using Unsock.Core.Filter;
using Unsock.Core.Policies;
using Sock = global::Interop.Socket;

namespace Unsock.Core.Engine;

internal sealed partial class Redirector
{
    private static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(10);
    private const int WaitSliceMs = 50;

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
                // A full backlog: TCP programs read EAGAIN as "out of ports", so wait for room instead.
                keepCopy = true;
                byte[] saved = sa[..size].ToArray();
                var request = r;
                StartWorker(request, () => FinishConnectWhenRoom(request, fd, copy, unix, saved, facts, peer, path, rule.Index));
                return Outcome.Answered;
            }
            // A control file is a regular file where the socket should be, and connecting to it is refused:
            // only then is it worth reading.
            if (err == Errors.ECONNREFUSED && TryControlFile(r, endpoint, path, rule.Index, out var control, out var failure))
            {
                Sock.Close(unix);
                if (control is null) return failure;
                keepCopy = true;
                StartControlFileConnect(r, fd, copy, facts, peer, control, path, rule.Index);
                return Outcome.Answered;
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

    /// <summary>Runs a slow call's work on its own thread; the work answers the notification itself.</summary>
    private void StartWorker(SyscallRequest r, Action work)
    {
        var thread = new Thread(() =>
        {
            try { work(); }
            catch (Exception e)
            {
                // A bug of ours costs the program this call (EIO), never a program left waiting.
                _log.Message($"pid {r.Pid} {Syscalls.Name(r.Nr)}: internal error, answered EIO: {e}");
                _listener.Fail(r.Id, Errors.EIO);
            }
        }) { IsBackground = true, Name = "unsock-slow-call" };
        thread.Start();
    }

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

    /// <summary>Blocking-connects in slices so that an interrupted target or its SO_SNDTIMEO ends the wait.</summary>
    private void FinishConnectWhenRoom(SyscallRequest r, int fd, int copy, int unix, byte[] sockaddr, SocketFacts facts,
        InetEndpoint peer, string path, int ruleIndex)
    {
        bool swapped = false;
        using var identity = TargetIdentity.Assume(null, r.Pid);
        try
        {
            if (identity.Errno != 0) { _listener.Fail(r.Id, identity.Errno); return; }
            Span<byte> timeo = stackalloc byte[16];
            int len = Sock.GetRaw(copy, Sock.SolSocket, Sock.SoSndTimeo, timeo);
            long limitMs = len == 16
                ? BitConverter.ToInt64(timeo) * 1000 + BitConverter.ToInt64(timeo[8..]) / 1000
                : 0;
            var deadline = limitMs > 0 ? Environment.TickCount64 + limitMs : long.MaxValue;
            Sock.SetNonBlocking(unix, false);
            Span<byte> slice = stackalloc byte[16];
            BitConverter.TryWriteBytes(slice, 0L);
            BitConverter.TryWriteBytes(slice[8..], (long)WaitSliceMs * 1000);
            Sock.SetRaw(unix, Sock.SolSocket, Sock.SoSndTimeo, slice);
            int err;
            while (true)
            {
                err = Sock.Connect(unix, sockaddr);
                if (err != Errors.EAGAIN && err != Errors.EINTR) break;
                if (!_listener.IsValid(r.Id)) return; // the target is gone
                if (TargetProcess.HasDeliverableSignal(r.Pid)) { _listener.Fail(r.Id, Errors.ERESTARTSYS); return; }
                if (Environment.TickCount64 >= deadline) { err = Errors.ETIMEDOUT; break; }
            }
            if (len > 0) Sock.SetRaw(unix, Sock.SolSocket, Sock.SoSndTimeo, timeo[..len]);
            if (err != 0)
            {
                int mapped = MapUnixConnectError(err);
                _log.Decision(r.Pid, "connect", path, $"rule {ruleIndex}: {Errors.Name(mapped)} after waiting for room");
                _listener.Fail(r.Id, mapped);
                return;
            }
            _log.Decision(r.Pid, "connect", path, $"rule {ruleIndex}: connected after waiting for room");
            swapped = true;
            Answer(r, Swap(r, fd, unix, copy, facts.NonBlocking, ClientEntry(unix, Sock.AfUnix, peer), onWorker: true));
        }
        finally
        {
            if (!swapped) { Sock.Close(unix); Sock.Close(copy); }
        }
    }

    /// <summary>Connects through a control file (VSOCK, TIPC, Firecracker proxy) on a worker: these can block.</summary>
    private void StartControlFileConnect(SyscallRequest r, int fd, int copy, SocketFacts facts, InetEndpoint peer,
        ControlFile control, string path, int ruleIndex)
    {
        StartWorker(r, () =>
        {
            int sock = -1;
            bool swapped = false;
            using var identity = TargetIdentity.Assume(null, r.Pid);
            try
            {
                if (identity.Errno != 0) { _listener.Fail(r.Id, identity.Errno); return; }
                int err;
                int family;
                if (control.Kind == ControlFileKind.FirecrackerProxy)
                {
                    family = Sock.AfUnix;
                    err = Sock.Create(Sock.AfUnix, Sock.SockStream | Sock.SockCloexec, out sock);
                    Span<byte> sa = stackalloc byte[UnixAddress.MaxSize];
                    if (err == 0) err = UnixSockAddr(control.ProxyPath!, sa, out int size, out int dirFd, out _) is var e && e == 0
                        ? ConnectThenClose(sock, sa[..size], dirFd) : e;
                    if (err == 0)
                    {
                        try
                        {
                            FirecrackerHandshake.Run(sock, control.VsockPort, HandshakeTimeout,
                                () => !_listener.IsValid(r.Id) || TargetProcess.HasDeliverableSignal(r.Pid));
                        }
                        catch (FirecrackerHandshakeException ex)
                        {
                            _log.Decision(r.Pid, "connect", path, $"rule {ruleIndex}: Firecracker proxy {control.ProxyPath}: {ex.Message}");
                            err = ex.Errno == Errors.EINTR ? Errors.ERESTARTSYS : ex.Errno;
                        }
                    }
                    else err = MapUnixConnectError(err);
                }
                else
                {
                    family = control.DestinationFamily;
                    err = Sock.Create(family, Sock.SockStream | Sock.SockCloexec, out sock);
                    if (err == 0)
                    {
                        CopySocketOptions(copy, sock);
                        err = ApplyParameters(control, sock);
                        if (err == 0) err = Sock.Connect(sock, control.Destination.Span);
                    }
                }
                if (err != 0)
                {
                    _log.Decision(r.Pid, "connect", path, $"rule {ruleIndex} via control file ({control}): {Errors.Name(err)}");
                    _listener.Fail(r.Id, err);
                    return;
                }
                _log.Decision(r.Pid, "connect", path, $"rule {ruleIndex} via control file ({control}): connected");
                swapped = true;
                Answer(r, Swap(r, fd, sock, copy, facts.NonBlocking, ClientEntry(sock, family, peer), onWorker: true));
            }
            finally
            {
                if (!swapped) { Sock.Close(sock); Sock.Close(copy); }
            }
        });
    }

    private static int ConnectThenClose(int sock, ReadOnlySpan<byte> sockaddr, int dirFd)
    {
        int err = Sock.Connect(sock, sockaddr);
        Sock.Close(dirFd);
        return err;
    }

    /// <summary>Sends a worker's outcome (the notification thread does this for its own).</summary>
    internal void Answer(in SyscallRequest r, Outcome outcome) => NotificationLoop.Send(_listener, r, outcome);
}
