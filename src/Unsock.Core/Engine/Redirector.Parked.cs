using Unsock.Core.Addressing;
using Unsock.Core.ControlFiles;
using Unsock.Core.Filter;
using static Tmds.Linux.LibC;
using Sock = global::Interop.Socket;

namespace Unsock.Core.Engine;

/// <summary>The calls that wait: each is parked on the engine's poller and finished there, never on a thread of its own.</summary>
internal sealed partial class Redirector
{
    /// <summary>Hands <paramref name="call"/> to the poller, or fails the call with <paramref name="errnoWhenFull"/> past the caps.</summary>
    private Outcome Park(ParkedCall call, int errnoWhenFull)
    {
        var options = _engine.Options;
        if (_engine.Poller.TryPark(call, options.MaxParkedCallsPerListener, options.MaxParkedCalls)) return Outcome.Parked;
        call.Release();
        var r = call.Request;
        // At most one line a second per listener: a flood must not become a flood of log lines.
        if (_attachment.ShouldWarn(out int suppressed))
            _log.ParkedCallLimit(r.Pid, Syscalls.Name(r.Nr), _attachment.ParkedCalls, options.MaxParkedCallsPerListener, Errors.Name(errnoWhenFull), suppressed);
        return Outcome.Fail(errnoWhenFull);
    }

    /// <summary>Answers a parked call (on the poller's handler, entered for its attachment).</summary>
    private void Answer(ParkedCall call, Outcome outcome) => _engine.Send(_attachment, call.Request, outcome, call.StartTimestamp);

    /// <summary>The program's SO_SNDTIMEO/SO_RCVTIMEO as a deadline; long.MaxValue when it has none.</summary>
    private static long DeadlineOf(int socket, int option)
    {
        Span<byte> timeo = stackalloc byte[16];
        int len = Sock.GetRaw(socket, Sock.SolSocket, option, timeo);
        long ms = len == 16 ? BitConverter.ToInt64(timeo) * 1000 + BitConverter.ToInt64(timeo[8..]) / 1000 : 0;
        return ms > 0 ? Environment.TickCount64 + ms : long.MaxValue;
    }

    // ---- connect into a full backlog ----

    /// <summary>A blocking connect into a full backlog: retried on the poller (AF_UNIX has no wake-up for room) until it fits.</summary>
    private sealed class ConnectWhenRoom : ParkedCall
    {
        private const int FirstRetryMs = 2, LastRetryMs = 100;

        public ConnectWhenRoom(ListenerAttachment attachment, SyscallRequest request) : base(attachment, request) { }

        public required int Fd, Copy, Unix;
        public required byte[] SockAddr;
        public int DirFd = -1;
        public required Redirector.SocketFacts Facts;
        public required InetEndpoint Peer;
        /// <summary>The address a socket we swapped at bind keeps reporting.</summary>
        public InetEndpoint? Local;
        public required string Path;
        public required int RuleIndex;
        public bool Consumed;

        public void Setup(long deadline)
        {
            Deadline = deadline;
            RetryLater();
        }

        public void RetryLater() => RetryWithBackoff(FirstRetryMs, LastRetryMs);

        public override bool Resume(Redirector handler) => handler.ResumeConnectWhenRoom(this);

        public override void TimedOut(Redirector handler)
        {
            handler._log.Decision(Request.Pid, "connect", Path, $"rule {RuleIndex}: ETIMEDOUT waiting for room (SO_SNDTIMEO)");
            handler.Answer(this, Outcome.Fail(Errors.ETIMEDOUT));
        }

        public override void Release()
        {
            if (!Consumed) { Sock.Close(Unix); CopyCloser.Close(Attachment, Copy); }
            Sock.Close(DirFd);
        }
    }

    private Outcome ParkConnectWhenRoom(in SyscallRequest r, int fd, int copy, int unix, string path, SocketFacts facts, InetEndpoint peer,
        InetEndpoint? local, int ruleIndex)
    {
        Span<byte> sa = stackalloc byte[UnixAddress.MaxSize];
        int err = UnixSockAddr(path, sa, out int size, out int dirFd, out _);
        var call = new ConnectWhenRoom(_attachment, r)
        {
            Fd = fd, Copy = copy, Unix = unix, SockAddr = sa[..size].ToArray(), DirFd = dirFd, Facts = facts, Peer = peer,
            Local = local, Path = path, RuleIndex = ruleIndex,
        };
        if (err != 0)
        {
            call.Release();
            return Outcome.Fail(err);
        }
        call.Setup(DeadlineOf(copy, Sock.SoSndTimeo));
        return Park(call, Errors.ETIMEDOUT);
    }

    private bool ResumeConnectWhenRoom(ConnectWhenRoom c)
    {
        var r = c.Request;
        int err;
        // The file's permissions are checked at each try: as the program, or not at all.
        using (var identity = TargetIdentity.Assume(_target, r.Pid))
            err = identity.Errno != 0 ? identity.Errno : Sock.Connect(c.Unix, c.SockAddr);
        if (err == Errors.EAGAIN)
        {
            c.RetryLater();
            return false;
        }
        if (err != 0)
        {
            int mapped = MapUnixConnectError(err);
            _log.Decision(r.Pid, "connect", c.Path, $"rule {c.RuleIndex}: {Errors.Name(mapped)} after waiting for room");
            Answer(c, Outcome.Fail(mapped));
            return true;
        }
        _log.Decision(r.Pid, "connect", c.Path, $"rule {c.RuleIndex}: connected after waiting for room");
        c.Consumed = true; // Swap closes both, whatever happens
        var entry = ClientEntry(c.Unix, Sock.AfUnix, c.Peer);
        entry.Local = c.Local;
        Answer(c, Swap(r, c.Fd, c.Unix, c.Copy, c.Facts.NonBlocking, entry));
        return true;
    }

    // ---- a blocking connect carried out on our copy (policies that reject) ----

    /// <summary>
    /// The wait of a blocking connect carried out on our copy: until the handshake is over (POLLOUT), a
    /// signal the program handles is pending (the kernel's ERESTARTSYS, EINTR under SO_SNDTIMEO) or its
    /// SO_SNDTIMEO runs out (EINPROGRESS, as the kernel says then). Then the kernel's own connect on the
    /// copy gives the result.
    /// </summary>
    private sealed class ConnectOnCopyWait : ParkedCall
    {
        private readonly int _copy;
        private readonly byte[] _sockaddr;
        private readonly Func<int, Outcome> _afterConnect;

        public ConnectOnCopyWait(ListenerAttachment attachment, SyscallRequest request, int copy, byte[] sockaddr,
            Func<int, Outcome> afterConnect, long deadline) : base(attachment, request)
        {
            _copy = copy;
            _sockaddr = sockaddr;
            _afterConnect = afterConnect;
            WaitFd = copy;
            WaitEvents = EPOLLOUT;
            Deadline = deadline;
        }

        public override int InterruptErrno => SocketWaitInterruptErrno;

        public override bool Resume(Redirector handler)
        {
            if (Sock.GetFileFlags(_copy, out int flags) != 0) flags = 0;
            int err = ConnectNonBlocking(_copy, _sockaddr, flags);
            if (err is Errors.EALREADY or Errors.EINPROGRESS)
            {
                RetryAt = Environment.TickCount64 + 10; // writable but still connecting: look again soon, do not spin
                return false;
            }
            handler.Answer(this, _afterConnect(err));
            return true;
        }

        public override void TimedOut(Redirector handler) => handler.Answer(this, Outcome.Fail(Errors.EINPROGRESS));

        public override void Release() => CopyCloser.Close(Attachment, _copy);
    }

    // ---- connect through a control file (VSOCK, TIPC, a Firecracker proxy) ----

    /// <summary>A connect through a control file: its connect and the proxy's handshake complete on the poller.</summary>
    private sealed class ControlFileConnect : ParkedCall
    {
        public ControlFileConnect(ListenerAttachment attachment, SyscallRequest request) : base(attachment, request) { }

        public required int Fd, Copy, Socket, Family;
        public required Redirector.SocketFacts Facts;
        public required InetEndpoint Peer;
        public required ControlFile Control;
        public required string Path;
        public required int RuleIndex;
        public FirecrackerReply? Reply;
        public bool Consumed;

        public void WaitFor(int events, long deadline)
        {
            WaitFd = Socket;
            WaitEvents = events;
            Deadline = deadline;
        }

        public override bool Resume(Redirector handler) => handler.ResumeControlFileConnect(this);

        public override void TimedOut(Redirector handler) => handler.FailControlFileConnect(this, Errors.ETIMEDOUT,
            Reply is null ? "no answer in time" : $"the Firecracker proxy did not answer in time (reply so far {FirecrackerHandshake.Quote(Reply.SoFar)})");

        public override void Release()
        {
            if (!Consumed) { Sock.Close(Socket); CopyCloser.Close(Attachment, Copy); }
        }
    }

    /// <summary>Starts the connect without waiting; what cannot finish at once is parked. Consumes <paramref name="copy"/>.</summary>
    private Outcome ConnectThroughControlFile(in SyscallRequest r, int fd, int copy, SocketFacts facts, InetEndpoint peer,
        ControlFile control, string path, int ruleIndex)
    {
        bool proxy = control.Kind == ControlFileKind.FirecrackerProxy;
        int family = proxy ? Sock.AfUnix : control.DestinationFamily;
        int err = Sock.Create(family, Sock.SockStream | Sock.SockCloexec | Sock.SockNonblock, out int sock);
        if (err != 0)
        {
            CloseCopy(copy);
            _log.Decision(r.Pid, "connect", path, $"rule {ruleIndex} via control file ({control}): socket: {Errors.Name(err)}");
            return Outcome.Fail(err);
        }
        var call = new ControlFileConnect(_attachment, r)
        {
            Fd = fd, Copy = copy, Socket = sock, Family = family, Facts = facts, Peer = peer, Control = control, Path = path,
            RuleIndex = ruleIndex,
        };
        long deadline = Environment.TickCount64 + (long)_engine.Options.HandshakeTimeout.TotalMilliseconds;
        if (proxy)
        {
            Span<byte> sa = stackalloc byte[UnixAddress.MaxSize];
            err = UnixSockAddr(control.ProxyPath!, sa, out int size, out int dirFd, out _);
            if (err == 0)
            {
                err = Sock.Connect(sock, sa[..size]);
                Sock.Close(dirFd);
            }
            if (err != 0)
            {
                int mapped = err == Errors.EAGAIN ? Errors.ECONNREFUSED : MapUnixConnectError(err);
                return Finished(call, mapped, $"Firecracker proxy {control.ProxyPath}: {Errors.Name(err)}");
            }
            err = FirecrackerHandshake.SendRequest(sock, control.VsockPort);
            if (err != 0) return Finished(call, Errors.ECONNREFUSED, $"sending CONNECT to the Firecracker proxy: {Errors.Name(err)}");
            call.Reply = new FirecrackerReply(control.VsockPort);
            call.WaitFor(EPOLLIN, deadline);
        }
        else
        {
            CopySocketOptions(copy, sock);
            err = ApplyParameters(control, sock);
            if (err == 0) err = Sock.Connect(sock, control.Destination.Span);
            if (err == 0) return Finished(call, 0, "connected");
            if (err is not (Errors.EINPROGRESS or Errors.EAGAIN)) return Finished(call, err, Errors.Name(err));
            call.WaitFor(EPOLLOUT, deadline);
        }
        return Park(call, Errors.ETIMEDOUT);
    }

    /// <summary>Answers a control-file connect that did not need the poller.</summary>
    private Outcome Finished(ControlFileConnect call, int err, string what)
    {
        var r = call.Request;
        _log.Decision(r.Pid, "connect", call.Path, $"rule {call.RuleIndex} via control file ({call.Control}): {what}");
        if (err != 0)
        {
            call.Release();
            return Outcome.Fail(err);
        }
        call.Consumed = true;
        return Swap(r, call.Fd, call.Socket, call.Copy, call.Facts.NonBlocking, ClientEntry(call.Socket, call.Family, call.Peer));
    }

    private bool ResumeControlFileConnect(ControlFileConnect c)
    {
        if (c.Reply is { } reply)
        {
            try
            {
                if (!reply.ReadAvailable(c.Socket)) return false;
            }
            catch (FirecrackerHandshakeException e)
            {
                FailControlFileConnect(c, e.Errno, $"Firecracker proxy {c.Control.ProxyPath}: {e.Message}");
                return true;
            }
        }
        else if (Sock.GetInt(c.Socket, Sock.SolSocket, 4 /* SO_ERROR */, out int soError) != 0 || soError != 0)
        {
            FailControlFileConnect(c, soError != 0 ? soError : Errors.EIO, Errors.Name(soError));
            return true;
        }
        _log.Decision(c.Request.Pid, "connect", c.Path, $"rule {c.RuleIndex} via control file ({c.Control}): connected");
        c.Consumed = true;
        Answer(c, Swap(c.Request, c.Fd, c.Socket, c.Copy, c.Facts.NonBlocking, ClientEntry(c.Socket, c.Family, c.Peer)));
        return true;
    }

    private void FailControlFileConnect(ControlFileConnect c, int err, string what)
    {
        _log.Decision(c.Request.Pid, "connect", c.Path, $"rule {c.RuleIndex} via control file ({c.Control}): {what}");
        Answer(c, Outcome.Fail(err));
    }

    // ---- accept on a converted listener ----

    /// <summary>A blocking accept with no connection ready: waits for one on the poller, within the listener's SO_RCVTIMEO.</summary>
    private sealed class AcceptWhenReady : ParkedCall
    {
        public AcceptWhenReady(ListenerAttachment attachment, SyscallRequest request, int copy, long deadline) : base(attachment, request)
        {
            Copy = copy;
            WaitFd = copy;
            WaitEvents = EPOLLIN;
            Deadline = deadline;
        }

        public int Copy { get; }
        public required ConvertedSocket ListenerEntry;
        public required int Flags;

        public override bool Resume(Redirector handler) => handler.ResumeAccept(this);

        // A blocking accept past SO_RCVTIMEO says EAGAIN, as the kernel's does.
        public override void TimedOut(Redirector handler) => handler.Answer(this, Outcome.Fail(Errors.EAGAIN));

        public override void Release() => CopyCloser.Close(Attachment, Copy);
    }

    private Outcome ParkAccept(in SyscallRequest r, ConvertedSocket listener, int copy, int flags) =>
        Park(new AcceptWhenReady(_attachment, r, copy, DeadlineOf(copy, Sock.SoRcvTimeo)) { ListenerEntry = listener, Flags = flags },
            Errors.EAGAIN);

    private bool ResumeAccept(AcceptWhenReady c)
    {
        // The program's listener is blocking: never accept on it without a connection known to be there.
        int accepted = TakeConnection(c.ListenerEntry, c.Copy, c.Flags, out int err, mustNotBlock: true);
        if (accepted < 0 && err == Errors.EAGAIN) return false; // another accept took it
        Answer(c, accepted < 0 ? Outcome.Fail(err) : Deliver(c.Request, c.ListenerEntry, accepted, c.Flags));
        return true;
    }
}
