using Unsock.Core.Addressing;
using Unsock.Core.Policies;
using Sock = global::Interop.Socket;

namespace Unsock.Core.Engine;

internal sealed partial class Redirector
{
    /// <summary>
    /// accept/accept4 on a converted listener, trapped unless acceptConvert is "none": the supervisor accepts
    /// on its copy, writes the peer address (see <see cref="AcceptedPeer"/>) and installs the new socket in
    /// one step (ADDFD_FLAG_SEND). A connection accepted for a target that was interrupted meanwhile
    /// is kept for the listener's next accept, never dropped.
    /// </summary>
    private Outcome Accept(in SyscallRequest r, int flags)
    {
        if (r.A1 == 0 || _registry.IsEmpty) return Outcome.Continue; // no address to rewrite: the kernel's accept is right
        int err = _target.CopyFd(r.Pid, (int)r.A0, out int copy);
        if (err != 0) return Outcome.Continue;
        bool keepCopy = false;
        try
        {
            if (Sock.GetInt(copy, Sock.SolSocket, Sock.SoDomain, out int domain) != 0 || domain is Sock.AfInet or Sock.AfInet6)
                return Outcome.Continue;
            var listener = _registry.Find(Sock.Inode(copy));
            if (listener?.Local is null) return Outcome.Continue;
            // "converted" (the default) and "all": every listener of ours; "vsock": only VSOCK ones.
            bool convert = _policy.AcceptConvert is AcceptConvert.Converted or AcceptConvert.All ||
                           (_policy.AcceptConvert == AcceptConvert.Vsock && listener.Family == Sock.AfVsock);
            if (!convert) return Outcome.Continue;
            if ((flags & ~(Sock.SockNonblock | Sock.SockCloexec)) != 0) return Outcome.Fail(Errors.EINVAL);
            if (Sock.GetFileFlags(copy, out int fileFlags) != 0) return Outcome.Continue;

            if ((fileFlags & Sock.ONonblock) != 0)
            {
                int accepted = TakeConnection(listener, copy, flags, out err);
                return accepted < 0 ? Outcome.Fail(err) : Deliver(r, listener, accepted, flags);
            }
            int ready = TakeConnection(listener, copy, flags, out err, mustNotBlock: true);
            if (ready >= 0) return Deliver(r, listener, ready, flags);
            if (err != Errors.EAGAIN) return Outcome.Fail(err);
            keepCopy = true;
            return ParkAccept(r, listener, copy, flags);
        }
        finally
        {
            if (!keepCopy) CloseCopy(copy);
        }
    }

    /// <summary>A kept connection if there is one, else a non-waiting accept; -1 with errno when none.</summary>
    /// <param name="mustNotBlock">
    /// The program's listener is blocking (its open file is shared with our copy): the accept happens only
    /// with O_NONBLOCK set for its duration, so a connection another accept took meanwhile cannot hold us.
    /// </param>
    private static int TakeConnection(ConvertedSocket listener, int copy, int flags, out int err, bool mustNotBlock = false)
    {
        lock (listener)
        {
            if (listener.PendingAccepted is { Count: > 0 } q)
            {
                err = 0;
                int kept = q.Dequeue();
                Sock.SetNonBlocking(kept, (flags & Sock.SockNonblock) != 0);
                return kept;
            }
        }
        if (!Sock.Poll(copy, 1 /* POLLIN */, 0)) { err = Errors.EAGAIN; return -1; }
        if (mustNotBlock) Sock.SetNonBlocking(copy, true);
        err = Sock.Accept(copy, Sock.SockCloexec | (flags & Sock.SockNonblock), out int accepted);
        if (mustNotBlock) Sock.SetNonBlocking(copy, false);
        return err == 0 ? accepted : -1;
    }

    /// <summary>Writes the peer address and installs the accepted socket as the call's result. Consumes <paramref name="accepted"/>.</summary>
    private Outcome Deliver(in SyscallRequest r, ConvertedSocket listener, int accepted, int flags)
    {
        var peer = AcceptedPeer(_registry.GetOrAddAccepted(Sock.Inode(accepted), listener), accepted);
        Span<byte> sa = stackalloc byte[InetEndpoint.SockAddrIn6Size];
        int size = peer.Encode(sa);
        int err = WriteSockAddr(r.Pid, r.A1, r.A2, sa[..size]);
        if (err != 0)
        {
            Keep(listener, accepted);
            return Outcome.Fail(err);
        }
        _engine.BeforeWaitingOnTarget();
        err = _listener.InstallAndAnswer(r.Id, accepted, (flags & Sock.SockCloexec) != 0, out _);
        if (err != 0)
        {
            // ENOENT: the target is gone or was interrupted, nothing to answer. Anything else (EMFILE: its
            // fd table is full) still needs an answer. Either way the connection waits for the next accept.
            Keep(listener, accepted);
            return err == Errors.ENOENT ? Outcome.Answered : Outcome.Fail(err);
        }
        CloseCopy(accepted);
        if (_log.Enabled) _log.Decision(r.Pid, "accept", listener.Local?.ToString() ?? "", $"connection from {peer}");
        return Outcome.Answered;
    }

    private static void Keep(ConvertedSocket listener, int accepted)
    {
        lock (listener) (listener.PendingAccepted ??= new()).Enqueue(accepted);
    }
}
