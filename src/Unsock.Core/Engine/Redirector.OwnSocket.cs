using Unsock.Core.Addressing;
using System.Buffers.Binary;
using Unsock.Core.Filter;
using Unsock.Core.Policies;
using static Tmds.Linux.LibC;
using Native = global::Interop;
using Sock = global::Interop.Socket;

namespace Unsock.Core.Engine;

/// <summary>
/// Calls on sockets that are not AF_INET/AF_INET6 under a guarded policy. Looking at the fd and then
/// answering CONTINUE would let the kernel resolve the fd number again: a second thread that dup2()s a TCP
/// socket onto it in between would get a TCP connection past the policy. So the call is carried out here,
/// on our copy of the socket we looked at (pidfd_getfd: the same open file), acting as the calling thread:
/// its credentials and capabilities (<see cref="TargetCredentials"/>), its working directory and umask for
/// Unix socket paths; or it is refused.
/// </summary>
internal sealed partial class Redirector
{
    /// <summary>
    /// bind, connect or a MSG_FASTOPEN send on a socket that is not AF_INET/AF_INET6 (the program's own, or
    /// one we swapped in where the call redirects nothing), carried out on <paramref name="copy"/> with the
    /// address as we read it. Consumes <paramref name="copy"/>.
    /// </summary>
    private Outcome CarryOutOnOwnSocket(in SyscallRequest r, RuleDirection direction, int copy, ReadOnlySpan<byte> sockaddr, SocketFacts facts,
        FastOpenSend? fastOpen)
    {
        if (!_listener.IsValid(r.Id)) return Closing(copy, Outcome.Answered);
        if (fastOpen is not null) return Closing(copy, FastOpenOnOtherSocket(r, copy, facts));
        if (facts.Domain == Sock.AfUnix) return CarryOutUnix(r, direction, copy, sockaddr, facts);
        return CarryOutAsTarget(r, direction, copy, sockaddr, facts);
    }

    /// <summary>
    /// MSG_FASTOPEN with an address on a socket that is not TCP. A Unix stream socket refuses any address on a
    /// send (EISCONN when connected, else EOPNOTSUPP), as the kernel does; on the others the flag means
    /// nothing to the kernel and the send would go out, which we do not carry out: EOPNOTSUPP.
    /// </summary>
    private Outcome FastOpenOnOtherSocket(in SyscallRequest r, int copy, SocketFacts facts)
    {
        if (facts.Domain == Sock.AfUnix && facts.Type == Sock.SockStream)
        {
            Span<byte> peer = stackalloc byte[128];
            return Outcome.Fail(Native.Socket.GetPeerName(copy, peer) >= 0 ? Errors.EISCONN : Errors.EOPNOTSUPP);
        }
        _log.Decision(r.Pid, Syscalls.Name(r.Nr), $"fd {r.A0}", $"MSG_FASTOPEN on a socket of family {facts.Domain}, type {facts.Type} under a policy that rejects: EOPNOTSUPP");
        return Outcome.Fail(Errors.EOPNOTSUPP);
    }

    /// <summary>
    /// An AF_UNIX bind/connect carried out on <paramref name="copy"/> as the calling thread would make it: with
    /// its credentials (the peer's SO_PEERCRED shows the program, not us), a path name resolved from its
    /// working directory, a socket file created under its umask and owned by it; abstract names as they are.
    /// The sockaddr is passed unchanged, so the kernel checks it, and getsockname reports it, as made.
    /// Consumes <paramref name="copy"/>.
    /// </summary>
    private Outcome CarryOutUnix(in SyscallRequest r, RuleDirection direction, int copy, ReadOnlySpan<byte> sockaddr, SocketFacts facts)
    {
        string call = Syscalls.Name(r.Nr);
        string subject = DescribeUnixAddress(sockaddr);
        bool named = sockaddr.Length > 2 && BinaryPrimitives.ReadUInt16LittleEndian(sockaddr) == Sock.AfUnix && sockaddr[2] != 0;
        int cwd = -1, root = -1;
        bool keep = false;
        try
        {
            string? path = null;
            if (named)
            {
                // Path names are looked up from our root: where the program's root or mounts are not ours, its path
                // is resolved in its tree instead (see UnixAttempt.RunInRoot).
                int opened = TargetIdentity.OpenForeignRoot(_target, r.Pid, out root);
                if (opened != 0) return Refuse(r, subject, $"its root directory cannot be opened ({Errors.Name(opened)})");
                if (root >= 0 && !TryPathOf(sockaddr, out path))
                    return Refuse(r, subject, "the program has its own root or mount namespace, and its path is not UTF-8, which is how we resolve it there");
                if (sockaddr[2] != (byte)'/')
                {
                    cwd = Native.TaskContext.OpenDirectory($"/proc/{r.Pid}/cwd");
                    if (cwd < 0) return Refuse(r, subject, $"its working directory cannot be opened ({Errors.Name(-cwd)})");
                }
            }
            int umask = 0;
            if (direction == RuleDirection.Bind && named && !TargetIdentity.TryReadUmask(r.Pid, out umask))
                return Refuse(r, subject, "its umask cannot be read");
            var attempt = new UnixAttempt(direction, sockaddr.ToArray(), cwd, umask, facts.FileFlags) { Root = root, Path = path };
            int err = attempt.Run(r.Pid, copy, out string? refusal);
            if (refusal is not null) return Refuse(r, subject, refusal);
            if (err == Errors.EAGAIN && direction == RuleDirection.Connect && !facts.NonBlocking && facts.Type != Sock.SockDgram)
            {
                // A blocking connect into a full backlog: the kernel waits for room; we retry on the poller.
                if (_log.Enabled) _log.Decision(r.Pid, call, subject, "carried out as the program: backlog full, waiting for room");
                keep = true;
                var wait = new UnixConnectWhenRoom(_attachment, r, copy, attempt, DeadlineOf(copy, Sock.SoSndTimeo), subject);
                return Park(wait, Errors.ETIMEDOUT);
            }
            if (_log.Enabled) _log.Decision(r.Pid, call, subject, $"carried out as the program: {(err == 0 ? "done" : Errors.Name(err))}");
            return err == 0 ? Outcome.Succeed() : Outcome.Fail(err);
        }
        finally
        {
            if (!keep)
            {
                CloseCopy(copy);
                Sock.Close(cwd);
                Sock.Close(root);
            }
        }
    }

    /// <summary>The path of a named sockaddr_un, when it reads as UTF-8 both ways.</summary>
    private static bool TryPathOf(ReadOnlySpan<byte> sockaddr, out string? path)
    {
        var bytes = sockaddr[2..];
        int nul = bytes.IndexOf((byte)0);
        if (nul >= 0) bytes = bytes[..nul];
        path = System.Text.Encoding.UTF8.GetString(bytes);
        return System.Text.Encoding.UTF8.GetBytes(path).AsSpan().SequenceEqual(bytes);
    }

    private Outcome Refuse(in SyscallRequest r, string subject, string why)
    {
        _log.CallRefused(r.Pid, $"{Syscalls.Name(r.Nr)} {subject}", $"not carried out for the program: {why}", "EACCES");
        return Outcome.Fail(Errors.EACCES);
    }

    private static string DescribeUnixAddress(ReadOnlySpan<byte> sa)
    {
        if (sa.Length < 2 || BinaryPrimitives.ReadUInt16LittleEndian(sa) != Sock.AfUnix) return "a non-AF_UNIX address";
        if (sa.Length == 2) return "an unnamed Unix address";
        var path = sa[2..];
        if (path[0] == 0) return "@" + System.Text.Encoding.UTF8.GetString(path[1..]).Replace('\0', '@');
        int nul = path.IndexOf((byte)0);
        return System.Text.Encoding.UTF8.GetString(nul < 0 ? path : path[..nul]);
    }

    /// <summary>One AF_UNIX bind/connect as the program, repeatable (a connect waiting for room tries again).</summary>
    private sealed class UnixAttempt(RuleDirection direction, byte[] sockaddr, int cwd, int umask, int fileFlags)
    {
        public int Cwd => cwd;

        /// <summary>The program's root (O_PATH) when it or its mount namespace is not ours, else -1; closed with <see cref="Cwd"/>.</summary>
        public int Root { get; init; } = -1;

        /// <summary>The path of <c>sockaddr</c>, with <see cref="Root"/>.</summary>
        public string? Path { get; init; }

        /// <summary>The call's errno, or a reason in <paramref name="refusal"/> when it was not made at all.</summary>
        public int Run(int tid, int copy, out string? refusal)
        {
            if (Root >= 0) return RunInRoot(tid, copy, out refusal);
            refusal = null;
            bool bind = direction == RuleDirection.Bind;
            int err = bind ? ThreadUmask.Set(umask) : 0;
            if (err == 0 && cwd >= 0) err = ThreadUmask.EnterDirectory(cwd);
            if (err != 0)
            {
                refusal = $"cannot take its working directory or umask on this thread ({Errors.Name(err)})";
                if (bind) ThreadUmask.Close();
                return err;
            }
            try
            {
                using var credentials = TargetCredentials.Assume(tid);
                if (credentials.Errno != 0)
                {
                    refusal = $"cannot act as it: {credentials.Refusal}";
                    return credentials.Errno;
                }
                return bind ? Sock.Bind(copy, sockaddr) : ConnectNonBlocking(copy, sockaddr, fileFlags);
            }
            finally
            {
                if (cwd >= 0) ThreadUmask.LeaveDirectory();
                if (bind) ThreadUmask.Close();
            }
        }

        private int RunInRoot(int tid, int copy, out string? refusal) =>
            ResolveAndRun(new UnixAttemptInRoot(direction, Path!, Root, cwd, umask, fileFlags), tid, copy, out refusal);
    }

    /// <summary>
    /// <see cref="UnixAttempt.Run"/> for a program with its own root or mount namespace, where its path means
    /// something else to us. Looked up as the program, from its root (absolute paths: openat2 RESOLVE_IN_ROOT)
    /// or from its working directory (relative ones: RESOLVE_BENEATH; one that climbs out of it is refused,
    /// as we cannot tell where its root would stop it). A bind is made from the directory found, under the
    /// name alone (bind never follows a symlink there; getsockname then reports that name, not the path); a
    /// connect goes to the file found (/proc/self/fd/N), so no symlink in its tree leads into ours.
    /// </summary>
    private static int ResolveAndRun(UnixAttemptInRoot a, int tid, int copy, out string? refusal)
    {
        refusal = null;
        bool bind = a.Direction == RuleDirection.Bind;
        bool relative = !a.Path.StartsWith('/');
        int start = relative ? a.Cwd : a.Root;
        int err = bind ? ThreadUmask.Set(a.Umask) : 0;
        if (err != 0)
        {
            refusal = $"cannot take its umask on this thread ({Errors.Name(err)})";
            return err;
        }
        int fd = -1;
        bool entered = false;
        try
        {
            using (var credentials = TargetCredentials.Assume(tid))
            {
                if (credentials.Errno != 0)
                {
                    refusal = $"cannot act as it: {credentials.Refusal}";
                    return credentials.Errno;
                }
                Span<byte> sa = stackalloc byte[UnixAddress.MaxSize];
                string name = System.IO.Path.GetFileName(a.Path);
                string where = bind ? System.IO.Path.GetDirectoryName(a.Path) ?? "/" : a.Path;
                if (relative && where.Length == 0) where = ".";
                err = relative
                    ? Native.FileSystem.OpenBeneath(start, where, directory: bind, out fd)
                    : Native.FileSystem.OpenInRoot(start, where, directory: bind, out fd);
                if (err == Errors.EXDEV && relative)
                {
                    refusal = "the program has its own root or mount namespace, and its relative path leaves its working directory";
                    return Errors.EACCES;
                }
                if (err != 0) return err;
                if (bind)
                {
                    if (name.Length == 0 || !UnixAddress.TryEncode(name, sa, out int size)) return Errors.EINVAL;
                    err = ThreadUmask.EnterDirectory(fd);
                    if (err != 0) return err;
                    entered = true;
                    return Sock.Bind(copy, sa[..size]);
                }
                if (!UnixAddress.TryEncode($"/proc/self/fd/{fd}", sa, out int length)) return Errors.ENAMETOOLONG;
                return ConnectNonBlocking(copy, sa[..length].ToArray(), a.FileFlags);
            }
        }
        finally
        {
            if (entered) ThreadUmask.LeaveDirectory();
            Sock.Close(fd);
            if (bind) ThreadUmask.Close();
        }
    }

    private readonly record struct UnixAttemptInRoot(RuleDirection Direction, string Path, int Root, int Cwd, int Umask, int FileFlags);

    /// <summary>
    /// A blocking AF_UNIX connect into a full backlog, carried out as the program: retried on the poller (AF_UNIX
    /// has no wake-up for room) until it fits, its SO_SNDTIMEO passes (EAGAIN, as the kernel says) or a
    /// signal it handles arrives.
    /// </summary>
    private sealed class UnixConnectWhenRoom : ParkedCall
    {
        private const int FirstRetryMs = 2, LastRetryMs = 100;
        private readonly int _copy;
        private readonly UnixAttempt _attempt;
        private readonly string _subject;

        public UnixConnectWhenRoom(ListenerAttachment attachment, SyscallRequest request, int copy, UnixAttempt attempt, long deadline, string subject)
            : base(attachment, request)
        {
            _copy = copy;
            _attempt = attempt;
            _subject = subject;
            Deadline = deadline;
            RetryLater();
        }

        /// <summary>A fromUnix connect: what getpeername reports once connected (the name the program gave).</summary>
        public byte[]? ReportedPeer { get; init; }

        /// <summary>Where a rule sent the connect, for the log; null when carried out as the program asked.</summary>
        public string? Destination { get; init; }

        // unix_wait_for_peer: ERESTARTSYS without a timeout, EINTR with one.
        public override int InterruptErrno => SocketWaitInterruptErrno;

        private void RetryLater() => RetryWithBackoff(FirstRetryMs, LastRetryMs);

        public override bool Resume(Redirector handler)
        {
            int err = _attempt.Run(Request.Pid, _copy, out string? refusal);
            if (refusal is not null)
            {
                handler.Answer(this, handler.Refuse(Request, _subject, refusal));
                return true;
            }
            if (err == Errors.EAGAIN)
            {
                RetryLater();
                return false;
            }
            if (err == 0 && ReportedPeer is not null)
                handler._registry.Add(new ConvertedSocket(Sock.Inode(_copy), Sock.AfUnix, false) { UnixName = ReportedPeer, UnixNameIsPeer = true });
            if (handler._log.Enabled)
                handler._log.Decision(Request.Pid, "connect", _subject, $"{Destination ?? "carried out as the program"} after waiting for room: {(err == 0 ? "done" : Errors.Name(err))}");
            handler.Answer(this, err == 0 ? Outcome.Succeed() : Outcome.Fail(err));
            return true;
        }

        public override void TimedOut(Redirector handler) => handler.Answer(this, Outcome.Fail(Errors.EAGAIN));

        public override void Release()
        {
            CopyCloser.Close(Attachment, _copy);
            Sock.Close(_attempt.Cwd);
            Sock.Close(_attempt.Root);
        }
    }

    /// <summary>
    /// bind/connect on a socket of another family (netlink, vsock, packet...) carried out on <paramref name="copy"/>
    /// with the program's credentials and capabilities: what the kernel checks against the caller at bind or
    /// connect (netlink multicast groups, a vsock port below 1024) is checked against the program. A connect
    /// never blocks this thread: one still in progress on a blocking socket waits on the poller. Consumes
    /// <paramref name="copy"/>.
    /// </summary>
    private Outcome CarryOutAsTarget(in SyscallRequest r, RuleDirection direction, int copy, ReadOnlySpan<byte> sockaddr, SocketFacts facts)
    {
        string call = Syscalls.Name(r.Nr);
        string subject = $"family {facts.Domain} ({sockaddr.Length}-byte address)";
        bool keep = false;
        try
        {
            var bytes = sockaddr.ToArray();
            int err;
            using (var credentials = TargetCredentials.Assume(r.Pid))
            {
                if (credentials.Errno != 0) return Refuse(r, subject, $"cannot act as it: {credentials.Refusal}");
                err = direction == RuleDirection.Bind ? Sock.Bind(copy, bytes) : ConnectNonBlocking(copy, bytes, facts.FileFlags);
            }
            if (_log.Enabled) _log.Decision(r.Pid, call, subject, $"carried out as the program: {(err == 0 ? "done" : Errors.Name(err))}");
            if (direction == RuleDirection.Connect && err is Errors.EINPROGRESS or Errors.EALREADY && !facts.NonBlocking)
            {
                keep = true;
                return Park(new ConnectInProgress(_attachment, r, copy, DeadlineOf(copy, Sock.SoSndTimeo)), Errors.ETIMEDOUT);
            }
            return err == 0 ? Outcome.Succeed() : Outcome.Fail(err);
        }
        finally
        {
            if (!keep) CloseCopy(copy);
        }
    }

    /// <summary>
    /// A blocking connect of another family that our non-blocking try left in progress: over when the socket is
    /// writable; then SO_ERROR, or a peer name, tells how it went (a second connect would say EISCONN on some
    /// families where the kernel's own wait answers 0).
    /// </summary>
    private sealed class ConnectInProgress : ParkedCall
    {
        private readonly int _copy;

        public ConnectInProgress(ListenerAttachment attachment, SyscallRequest request, int copy, long deadline) : base(attachment, request)
        {
            _copy = copy;
            WaitFd = copy;
            WaitEvents = EPOLLOUT;
            Deadline = deadline;
        }

        public override int InterruptErrno => SocketWaitInterruptErrno;

        public override bool Resume(Redirector handler)
        {
            if (Sock.GetInt(_copy, Sock.SolSocket, Sock.SoError, out int soError) == 0 && soError != 0)
            {
                handler.Answer(this, Outcome.Fail(soError));
                return true;
            }
            Span<byte> peer = stackalloc byte[128];
            if (Native.Socket.GetPeerName(_copy, peer) >= 0)
            {
                handler.Answer(this, Outcome.Succeed());
                return true;
            }
            RetryAt = Environment.TickCount64 + 10; // writable but not connected yet: look again soon, do not spin
            return false;
        }

        public override void TimedOut(Redirector handler) => handler.Answer(this, Outcome.Fail(Errors.EINPROGRESS));

        public override void Release() => CopyCloser.Close(Attachment, _copy);
    }
}
