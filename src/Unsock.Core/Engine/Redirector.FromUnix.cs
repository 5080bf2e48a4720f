using System.Buffers.Binary;
using System.Text;
using Unsock.Core.Addressing;
using Unsock.Core.Filter;
using Unsock.Core.Policies;
using Native = global::Interop;
using Sock = global::Interop.Socket;

namespace Unsock.Core.Engine;

/// <summary>
/// fromUnix/fromAbstract rules: a bind or connect of the program's own AF_UNIX socket to a matching path or name is
/// carried out on our copy of that socket (the same open file) at the rule's destination. The program's socket
/// stays AF_UNIX, so nothing is swapped; getsockname (bind) and getpeername (connect) report the address it asked for.
/// </summary>
internal sealed partial class Redirector
{
    /// <summary>
    /// Decides an AF_UNIX bind/connect by the fromUnix/fromAbstract rules, on the sockaddr as we read it once. Null when
    /// no such rule matches, or it allows: the call goes on to what follows (the kernel, or the carry-out of guarded policies).
    /// </summary>
    private Outcome? DecideFromUnix(in SyscallRequest r, RuleDirection direction, ReadOnlySpan<byte> sa)
    {
        if (sa.Length <= UnixAddress.PathOffset || BinaryPrimitives.ReadUInt16LittleEndian(sa) != Sock.AfUnix) return null;
        var raw = sa[UnixAddress.PathOffset..];
        bool isAbstract = raw[0] == 0;
        byte[] reported;
        string name;
        if (isAbstract)
        {
            name = Encoding.UTF8.GetString(raw[1..]);
            reported = sa.ToArray();
        }
        else
        {
            int nul = raw.IndexOf((byte)0);
            var path = nul < 0 ? raw : raw[..nul];
            // As getsockname reports a path: family, path, NUL (the program may have passed no NUL).
            reported = new byte[UnixAddress.PathOffset + path.Length + 1];
            sa[..(UnixAddress.PathOffset + path.Length)].CopyTo(reported);
            string? cwd = path[0] == '/' ? null : WorkingDirectoryOf(r.Pid);
            if (UnixPathPattern.AbsoluteSocketPath(Encoding.UTF8.GetString(path), cwd) is not { } absolute) return null;
            name = absolute;
        }
        var streamRule = _policy.MatchUnix(direction, RuleProtocol.Tcp, isAbstract, name);
        var datagramRule = _policy.MatchUnix(direction, RuleProtocol.Udp, isAbstract, name);
        if (streamRule is null && datagramRule is null) return null;
        if (!_listener.IsValid(r.Id)) return Outcome.Answered;

        int err = _target.CopyFd(r.Pid, (int)r.A0, out int copy);
        if (err != 0) return Outcome.Fail(err);
        err = ReadFacts(copy, out var facts);
        // Not an AF_UNIX socket: the kernel refuses this sockaddr for it, and the steps that follow say so.
        if (err != 0 || facts.Domain != Sock.AfUnix) return ClosingUndecided(copy);
        // SOCK_SEQPACKET is connection-oriented like a stream: "tcp" rules apply to it.
        var rule = facts.Type is Sock.SockStream or SockSeqPacket ? streamRule : facts.Type == Sock.SockDgram ? datagramRule : null;
        string call = Syscalls.Name(r.Nr);
        string subject = isAbstract ? "@" + name : name;
        if (rule is null || rule.Action is AllowAction)
        {
            if (rule is not null && _log.Enabled) _log.Decision(r.Pid, call, subject, $"rule {rule.Index} allows");
            return ClosingUndecided(copy);
        }
        switch (rule.Action)
        {
            case RejectAction reject:
                _log.Decision(r.Pid, call, subject, $"rule {rule.Index} rejects with {reject.Name}");
                return Closing(copy, Outcome.Fail(reject.Errno));
            case BlackholeAction:
                return BindBlackholeOnCopy(r, copy, rule, subject, reported);
            case AbstractAction abstractName:
            {
                string target = abstractName.ResolveFixedName();
                Span<byte> destination = stackalloc byte[UnixAddress.MaxSize];
                err = EncodeAbstract(target, destination, out int size);
                if (err == 0 && direction == RuleDirection.Bind)
                {
                    err = Sock.Bind(copy, destination[..size]);
                    if (err == 0) _registry.Add(new ConvertedSocket(Sock.Inode(copy), Sock.AfUnix, false) { UnixName = reported });
                    _log.Decision(r.Pid, call, subject, $"rule {rule.Index} -> @{target}: {(err == 0 ? "bound" : Errors.Name(err))}");
                    return Closing(copy, err == 0 ? Outcome.Succeed() : Outcome.Fail(err));
                }
                if (err != 0) return Closing(copy, Outcome.Fail(err));
                return ConnectUnixOnCopy(r, copy, facts, rule, subject, "@" + target, destination[..size].ToArray(), -1, reported);
            }
            case UnixAction unix:
            {
                string target = unix.ResolveFixedPath();
                if (direction == RuleDirection.Bind) return BindUnixOnCopy(r, copy, rule, subject, target, reported);
                using var identity = TargetIdentity.Assume(_target, r.Pid);
                if (identity.Errno != 0)
                {
                    _log.Decision(r.Pid, call, subject, $"rule {rule.Index}: cannot take the program's identity: EACCES");
                    return Closing(copy, Outcome.Fail(Errors.EACCES));
                }
                Span<byte> destination = stackalloc byte[UnixAddress.MaxSize];
                err = UnixSockAddr(target, destination, out int size, out int dirFd, out _);
                if (err != 0) return Closing(copy, Outcome.Fail(err));
                return ConnectUnixOnCopy(r, copy, facts, rule, subject, target, destination[..size].ToArray(), dirFd, reported);
            }
            default:
                // The policy reader refuses other actions with fromUnix/fromAbstract.
                _log.Decision(r.Pid, call, subject, $"rule {rule.Index}: {rule.Action} cannot apply to a Unix socket: EINVAL");
                return Closing(copy, Outcome.Fail(Errors.EINVAL));
        }
    }

    private const int SockSeqPacket = 5;

    private Outcome? ClosingUndecided(int fd)
    {
        CloseCopy(fd);
        return null;
    }

    private static string? WorkingDirectoryOf(int tid)
    {
        try { return new FileInfo($"/proc/{tid}/cwd").LinkTarget; }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    /// <summary>Binds the program's socket (through our copy) at <paramref name="path"/>, as the program, with the rule's mode. Consumes <paramref name="copy"/>.</summary>
    private Outcome BindUnixOnCopy(in SyscallRequest r, int copy, PolicyRule rule, string subject, string path, byte[] reported)
    {
        string name = Path.GetFileName(path);
        if (name.Length == 0 || name is "." or "..") return Closing(copy, Outcome.Fail(Errors.EINVAL));
        Native.FileSystem.DirectoryHandle? directory = null;
        try
        {
            using var identity = TargetIdentity.Assume(_target, r.Pid);
            if (identity.Errno != 0 || !TargetIdentity.TryReadUmask(r.Pid, out int umask))
            {
                _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index}: cannot take the program's identity or umask: EACCES");
                return Outcome.Fail(Errors.EACCES);
            }
            int err = ThreadUmask.Set(umask);
            if (err == 0) err = OpenSocketDirectory(Path.GetDirectoryName(path) ?? "/", out directory);
            if (err != 0)
            {
                _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index}: cannot create or open the directory of {path}: {Errors.Name(err)}");
                return Outcome.Fail(err == Errors.EPERM ? Errors.EACCES : err);
            }
            int dir = directory!.Fd;
            Span<byte> sa = stackalloc byte[UnixAddress.MaxSize];
            err = UnixSockAddrAt(dir, path, name, sa, out int size, out string sunPath);
            int mode = rule.Mode ?? (0x1FF & ~umask);
            if (err == 0) err = ThreadUmask.Set(0x1FF & ~mode);
            if (err == 0)
            {
                err = Sock.Bind(copy, sa[..size]);
                if (err == Errors.EADDRINUSE && RemoveStaleSocketFile(dir, name, sa[..size])) err = Sock.Bind(copy, sa[..size]);
            }
            if (err != 0)
            {
                _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index} -> {path}: {Errors.Name(err)}");
                return Outcome.Fail(err);
            }
            if (Native.FileSystem.StatAt(dir, name, out var st) != 0 || !st.IsSocket)
            {
                _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index} -> {path}: the socket file went away after bind: EIO");
                return Outcome.Fail(Errors.EIO);
            }
            if ((st.Mode & 0x1FF) != mode) Native.FileSystem.ChmodAt(dir, name, mode);
            _registry.FindFile(sunPath)?.Forget();
            var file = new BoundFile(path, sunPath, directory, name, st.Device, st.Inode, Sock.Inode(copy), identity.Credentials) { NoRemove = rule.NoRemove };
            directory = null;
            _registry.Add(new ConvertedSocket(file.SocketInode, Sock.AfUnix, false) { File = file, UnixName = reported });
            if (_log.Enabled) _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index} -> {path} (mode {Convert.ToString(mode, 8)}{(rule.NoRemove ? ", kept after close" : "")})");
            return Outcome.Succeed();
        }
        finally
        {
            ThreadUmask.Close();
            directory?.Dispose();
            CloseCopy(copy);
        }
    }

    /// <summary>Binds the program's socket where nobody can reach it (see <see cref="BindBlackhole"/>). Consumes <paramref name="copy"/>.</summary>
    private Outcome BindBlackholeOnCopy(in SyscallRequest r, int copy, PolicyRule rule, string subject, byte[] reported)
    {
        string path = Path.Combine(BlackholeDirectory.Value, $"{Environment.CurrentManagedThreadId}-{Random.Shared.NextInt64():x}");
        Span<byte> sa = stackalloc byte[UnixAddress.MaxSize];
        int err = UnixAddress.TryEncode(path, sa, out int size) ? Sock.Bind(copy, sa[..size]) : Errors.ENAMETOOLONG;
        if (err == 0)
        {
            File.Delete(path);
            _registry.Add(new ConvertedSocket(Sock.Inode(copy), Sock.AfUnix, false) { UnixName = reported });
        }
        _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index}: blackhole: {(err == 0 ? "bound where nobody can reach it" : Errors.Name(err))}");
        return Closing(copy, err == 0 ? Outcome.Succeed() : Outcome.Fail(err));
    }

    /// <summary>
    /// Connects the program's socket (through our copy) to <paramref name="sockaddr"/>, as the program. A full backlog
    /// waits on the poller for a blocking socket. Consumes <paramref name="copy"/> and <paramref name="dirFd"/>.
    /// </summary>
    private Outcome ConnectUnixOnCopy(in SyscallRequest r, int copy, SocketFacts facts, PolicyRule rule, string subject, string target, byte[] sockaddr,
        int dirFd, byte[] reported)
    {
        int err;
        using (var identity = TargetIdentity.Assume(_target, r.Pid))
            err = identity.Errno != 0 ? Errors.EACCES : ConnectNonBlocking(copy, sockaddr, facts.FileFlags);
        if (err == Errors.EAGAIN && !facts.NonBlocking && facts.Type != Sock.SockDgram)
        {
            var attempt = new UnixAttempt(RuleDirection.Connect, sockaddr, dirFd, 0, facts.FileFlags);
            var call = new UnixConnectWhenRoom(_attachment, r, copy, attempt, DeadlineOf(copy, Sock.SoSndTimeo), subject)
            {
                ReportedPeer = reported, Destination = $"rule {rule.Index} -> {target}",
            };
            return Park(call, Errors.EAGAIN);
        }
        Sock.Close(dirFd);
        if (err == 0) _registry.Add(new ConvertedSocket(Sock.Inode(copy), Sock.AfUnix, false) { UnixName = reported, UnixNameIsPeer = true });
        _log.Decision(r.Pid, "connect", subject, $"rule {rule.Index} -> {target}: {(err == 0 ? "connected" : Errors.Name(err))}");
        return Closing(copy, err == 0 ? Outcome.Succeed() : Outcome.Fail(err));
    }

    /// <summary>getsockname of a socket bound through a fromUnix rule, getpeername of one connected through one: the address the program gave.</summary>
    private Outcome ReportUnixName(in SyscallRequest r, ConvertedSocket entry, bool peer)
    {
        if (peer != entry.UnixNameIsPeer) return Outcome.Continue;
        int err = WriteSockAddr(r.Pid, r.A1, r.A2, entry.UnixName);
        return err == 0 ? Outcome.Succeed() : Outcome.Fail(err);
    }
}
