using Unsock.Core.Addressing;
using Unsock.Core.ControlFiles;
using Unsock.Core.Policies;
using Native = global::Interop;
using Sock = global::Interop.Socket;

namespace Unsock.Core.Engine;

internal sealed partial class Redirector
{
    // Where bind to port 0 picks from: Linux's default ip_local_port_range.
    private const int EphemeralFirst = 32768, EphemeralLast = 60999, EphemeralTries = 64;

    private Outcome Bind(in SyscallRequest r)
    {
        var decided = DecideRedirect(r, RuleDirection.Bind, out int copy, out var endpoint, out var facts, out var rule);
        if (decided is { } early) return early;
        int fd = (int)r.A0;
        bool keepCopy = false;
        try
        {
            if (rule is null)
            {
                var existing = _registry.Find(Sock.Inode(copy));
                if (existing?.Local is null) return Outcome.Continue;
                if (existing.Answered) return Outcome.Fail(Errors.EINVAL); // bound twice, as TCP says
                return Outcome.Succeed(0, existing);
            }
            using var identity = TargetIdentity.Assume(_target, r.Pid);
            bool ipv6 = facts.Domain == Sock.AfInet6;
            // Once Swap has the copy, it is Swap's to close, whatever the outcome.
            return endpoint.Port == 0
                ? BindEphemeral(r, fd, copy, facts, rule, endpoint, ipv6, ref keepCopy)
                : BindAt(r, fd, copy, facts, rule, endpoint, ipv6, ref keepCopy, out _);
        }
        finally
        {
            if (!keepCopy) Sock.Close(copy);
        }
    }

    private Outcome BindEphemeral(in SyscallRequest r, int fd, int copy, SocketFacts facts, PolicyRule rule, InetEndpoint endpoint, bool ipv6,
        ref bool copyConsumed)
    {
        for (int i = 0; i < EphemeralTries; i++)
        {
            int port = Random.Shared.Next(EphemeralFirst, EphemeralLast + 1);
            var candidate = endpoint with { Port = port };
            var outcome = BindAt(r, fd, copy, facts, rule, candidate, ipv6, ref copyConsumed, out bool inUse);
            if (!inUse) return outcome;
        }
        return Outcome.Fail(Errors.EADDRINUSE);
    }

    /// <summary>Creates the socket file for <paramref name="endpoint"/> and swaps the bound socket in.</summary>
    private Outcome BindAt(in SyscallRequest r, int fd, int copy, SocketFacts facts, PolicyRule rule, InetEndpoint endpoint,
        bool ipv6, ref bool copyConsumed, out bool inUse)
    {
        inUse = false;
        string path = rule.ResolvePath(endpoint.MatchAddress, endpoint.Port, RuleProtocol.Tcp);
        string subject = endpoint.ToString();
        ControlFile? control;
        try
        {
            ControlFile.TryLoad(path, out control);
        }
        catch (ControlFileException e)
        {
            _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index}: {e.Message}");
            return Outcome.Fail(Errors.EINVAL);
        }
        if (control is not null) return BindControlFile(r, fd, copy, facts, rule, endpoint, ipv6, control, path, ref copyConsumed);

        int err = EnsureDirectory(r.Pid, Path.GetDirectoryName(path)!);
        if (err != 0)
        {
            _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index}: cannot create directory of {path}: {Errors.Name(err)}");
            return Outcome.Fail(err == Errors.EACCES || err == Errors.EPERM ? Errors.EACCES : err);
        }
        err = Sock.Create(Sock.AfUnix, Sock.SockStream | Sock.SockCloexec, out int unix);
        if (err != 0) return Outcome.Fail(err);
        bool handedOver = false;
        try
        {
            CopySocketOptions(copy, unix);
            Span<byte> sa = stackalloc byte[UnixAddress.MaxSize];
            err = UnixSockAddr(path, sa, out int size, out int dirFd, out string sunPath);
            if (err == 0)
            {
                err = Sock.Bind(unix, sa[..size]);
                if (err == Errors.EADDRINUSE && RemoveStaleSocketFile(path, sunPath))
                    err = Sock.Bind(unix, sa[..size]);
                Sock.Close(dirFd);
            }
            if (err != 0)
            {
                inUse = err == Errors.EADDRINUSE;
                int mapped = err is Errors.EPERM ? Errors.EACCES : err;
                _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index} -> {path}: {Errors.Name(mapped)}");
                return Outcome.Fail(mapped);
            }
            if (Native.FileSystem.Lstat(path, out var st) != 0) return Outcome.Fail(Errors.EIO);
            int mode = rule.Mode ?? (0x1FF & ~TargetProcess.Umask(r.Pid));
            Native.FileSystem.Chmod(path, mode);
            var file = new BoundFile(path, sunPath, st.Device, st.Inode, Sock.Inode(unix));
            var entry = new ConvertedSocket(file.SocketInode, Sock.AfUnix, ipv6) { Local = endpoint.InFamily(ipv6), File = file };
            file.Listener = entry;
            if (_log.Enabled) _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index} -> {path} (mode {Convert.ToString(mode, 8)})");
            handedOver = copyConsumed = true;
            return Swap(r, fd, unix, copy, facts.NonBlocking, entry);
        }
        finally
        {
            if (!handedOver) Sock.Close(unix);
        }
    }

    private Outcome BindControlFile(in SyscallRequest r, int fd, int copy, SocketFacts facts, PolicyRule rule,
        InetEndpoint endpoint, bool ipv6, ControlFile control, string path, ref bool copyConsumed)
    {
        string subject = endpoint.ToString();
        if (control.Kind == ControlFileKind.FirecrackerProxy)
        {
            _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index}: {path} is a Firecracker proxy control file; one cannot listen through it");
            return Outcome.Fail(Errors.EINVAL);
        }
        int err = Sock.Create(control.DestinationFamily, Sock.SockStream | Sock.SockCloexec, out int sock);
        if (err != 0)
        {
            _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index} via control file ({control}): socket: {Errors.Name(err)}");
            return Outcome.Fail(err);
        }
        CopySocketOptions(copy, sock);
        err = ApplyParameters(control, sock);
        if (err == 0) err = Sock.Bind(sock, control.Destination.Span);
        if (err != 0)
        {
            Sock.Close(sock);
            _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index} via control file ({control}): {Errors.Name(err)}");
            return Outcome.Fail(err);
        }
        _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index} via control file ({control})");
        var entry = new ConvertedSocket(Sock.Inode(sock), control.DestinationFamily, ipv6) { Local = endpoint.InFamily(ipv6) };
        copyConsumed = true;
        return Swap(r, fd, sock, copy, facts.NonBlocking, entry);
    }

    /// <summary>True when <paramref name="path"/> was a socket file nobody listens on, and is now gone.</summary>
    private bool RemoveStaleSocketFile(string path, string sunPath)
    {
        if (Native.FileSystem.Lstat(path, out var st) != 0 || !st.IsSocket) return false; // never delete other files
        if (IsListenedOn(sunPath) || (sunPath != path && IsListenedOn(path))) return false;
        // /proc/net/unix can skip a live socket while others come and go: before deleting, a connect must be
        // refused. It only runs when the list saw no listener, so a live server is almost never probed.
        if (!ConnectIsRefused(sunPath)) return false;
        if (Native.FileSystem.Lstat(path, out var again) != 0 || again.Inode != st.Inode) return false;
        return Native.FileSystem.Unlink(path) == 0;
    }

    private static bool ConnectIsRefused(string sunPath)
    {
        Span<byte> sa = stackalloc byte[UnixAddress.MaxSize];
        if (!UnixAddress.TryEncode(sunPath, sa, out int size)) return false;
        if (Sock.Create(Sock.AfUnix, Sock.SockStream | Sock.SockNonblock | Sock.SockCloexec, out int probe) != 0) return false;
        int err = Sock.Connect(probe, sa[..size]);
        Sock.Close(probe);
        return err == Errors.ECONNREFUSED;
    }

    /// <summary>Looks the path up among listening Unix sockets without connecting (a probe would reach the server).</summary>
    private static bool IsListenedOn(string path) =>
        ProcNetUnix.Read() is not { } entries || entries.Any(e => e.Listening && e.Path == path); // unreadable: assume it is

    /// <summary>Creates missing directories (0755 under the target's umask); as the target, so they are its own.</summary>
    private int EnsureDirectory(int pid, string dir)
    {
        if (Native.FileSystem.Lstat(dir, out var st) == 0) return st.IsDirectory || Directory.Exists(dir) ? 0 : Errors.ENOTDIR;
        string? parent = Path.GetDirectoryName(dir);
        if (parent is not null && parent != dir)
        {
            int perr = EnsureDirectory(pid, parent);
            if (perr != 0) return perr;
        }
        int err = Native.FileSystem.Mkdir(dir, 0x1ED /* 0755 */);
        if (err == Errors.EEXIST) return 0;
        if (err != 0) return err;
        Native.FileSystem.Chmod(dir, 0x1ED & ~TargetProcess.Umask(pid));
        return 0;
    }
}
