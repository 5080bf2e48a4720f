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
                if (existing is null && _attachment.TookOver && !Guarded && RecoverLostSwap(r, copy, endpoint, RuleDirection.Bind) is { } recovered)
                    return recovered;
                // Guarded, DecideOn carried these out already; a record gone meanwhile is not left to the kernel either.
                if (existing?.Local is null) return Guarded ? Outcome.Fail(Errors.EINTR) : Outcome.Continue;
                if (existing.Answered) return Outcome.Fail(Errors.EINVAL); // bound twice, as TCP says
                return Outcome.Succeed(0, existing);
            }
            if (rule.Action is DestinationAction) return BindDestination(r, fd, copy, facts, rule, endpoint, ref keepCopy);
            using var identity = TargetIdentity.Assume(_target, r.Pid);
            if (identity.Errno != 0 || !TargetIdentity.TryReadUmask(r.Pid, out int umask))
            {
                // Never as ourselves instead: a root supervisor would create files where the program may not.
                _log.Decision(r.Pid, "bind", endpoint.ToString(), $"rule {rule.Index}: cannot take the program's identity or umask: EACCES");
                return Outcome.Fail(Errors.EACCES);
            }
            var creator = new FileCreator(identity.Credentials, umask);
            bool ipv6 = facts.Domain == Sock.AfInet6;
            // Once Swap has the copy, it is Swap's to close, whatever the outcome.
            return endpoint.Port == 0
                ? BindEphemeral(r, fd, copy, facts, rule, endpoint, ipv6, creator, ref keepCopy)
                : BindAt(r, fd, copy, facts, rule, endpoint, ipv6, creator, ref keepCopy, out _);
        }
        finally
        {
            if (!keepCopy) CloseCopy(copy);
        }
    }

    /// <summary>Who a socket file is created for: the identity it is created (and later removed) with, and the umask.</summary>
    private readonly record struct FileCreator(FsCredentials? Owner, int Umask);

    private Outcome BindEphemeral(in SyscallRequest r, int fd, int copy, SocketFacts facts, PolicyRule rule, InetEndpoint endpoint, bool ipv6,
        FileCreator creator, ref bool copyConsumed)
    {
        for (int i = 0; i < EphemeralTries; i++)
        {
            int port = Random.Shared.Next(EphemeralFirst, EphemeralLast + 1);
            var candidate = endpoint with { Port = port };
            var outcome = BindAt(r, fd, copy, facts, rule, candidate, ipv6, creator, ref copyConsumed, out bool inUse);
            if (!inUse) return outcome;
        }
        return Outcome.Fail(Errors.EADDRINUSE);
    }

    /// <summary>
    /// Creates the socket file for <paramref name="endpoint"/> and swaps the bound socket in. All file work
    /// is anchored at the directory, opened once: the control-file check, the stale-file check, the mode,
    /// and later the removal all see the same directory, whatever the target renames meanwhile.
    /// </summary>
    private Outcome BindAt(in SyscallRequest r, int fd, int copy, SocketFacts facts, PolicyRule rule, InetEndpoint endpoint,
        bool ipv6, FileCreator creator, ref bool copyConsumed, out bool inUse)
    {
        inUse = false;
        string path = ResolvePath(rule, endpoint, ProtocolOf(facts.Type));
        string subject = endpoint.ToString();
        string name = Path.GetFileName(path);
        if (name.Length == 0 || name is "." or "..")
        {
            _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index}: {path} names no file");
            return Outcome.Fail(Errors.EINVAL);
        }
        Native.FileSystem.DirectoryHandle? directory = null;
        try
        {
            // Directories are created 0755 under the program's umask, by this thread alone (see ThreadUmask).
            int err = ThreadUmask.Set(creator.Umask);
            if (err == 0) err = OpenSocketDirectory(Path.GetDirectoryName(path) ?? "/", out directory);
            if (err != 0)
            {
                _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index}: cannot create or open the directory of {path}: {Errors.Name(err)}");
                return Outcome.Fail(err == Errors.EACCES || err == Errors.EPERM ? Errors.EACCES : err);
            }
            ControlFile? control;
            try
            {
                ControlFile.TryLoadAt(directory!.Fd, name, path, out control);
            }
            catch (ControlFileException e)
            {
                _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index}: {e.Message}");
                return Outcome.Fail(Errors.EINVAL);
            }
            if (control is not null) return BindControlFile(r, fd, copy, facts, rule, endpoint, ipv6, control, path, ref copyConsumed);
            return BindFile(r, fd, copy, facts, rule, endpoint, ipv6, creator, path, ref directory, name, ref copyConsumed, out inUse);
        }
        finally
        {
            ThreadUmask.Close();
            directory?.Dispose();
        }
    }

    /// <summary>Binds a Unix socket at <paramref name="name"/> in <paramref name="directory"/>; the file record takes the directory.</summary>
    private Outcome BindFile(in SyscallRequest r, int fd, int copy, SocketFacts facts, PolicyRule rule, InetEndpoint endpoint, bool ipv6,
        FileCreator creator, string path, ref Native.FileSystem.DirectoryHandle? directory, string name, ref bool copyConsumed, out bool inUse)
    {
        inUse = false;
        string subject = endpoint.ToString();
        int dir = directory!.Fd;
        // A UDP socket becomes a datagram socket (Redirector.Datagram.cs), a TCP one a stream socket.
        int err = Sock.Create(Sock.AfUnix, (facts.Type == Sock.SockDgram ? Sock.SockDgram : Sock.SockStream) | Sock.SockCloexec, out int unix);
        if (err != 0) return Outcome.Fail(err);
        bool handedOver = false;
        try
        {
            CopySocketOptions(copy, unix);
            Span<byte> sa = stackalloc byte[UnixAddress.MaxSize];
            err = UnixSockAddrAt(dir, path, name, sa, out int size, out string sunPath);
            // The file gets its final mode as it is created: the umask is this thread's own, no chmod after.
            int mode = rule.Mode ?? (0x1FF & ~creator.Umask);
            if (err == 0) err = ThreadUmask.Set(0x1FF & ~mode);
            if (err == 0)
            {
                err = Sock.Bind(unix, sa[..size]);
                if (err == Errors.EADDRINUSE && RemoveStaleSocketFile(dir, name, sa[..size]))
                    err = Sock.Bind(unix, sa[..size]);
            }
            if (err != 0)
            {
                if (err == Errors.EADDRINUSE && IsDualBind(sunPath, endpoint, ipv6))
                    return BindBlackhole(r, fd, copy, facts, endpoint, ipv6, $"rule {rule.Index} -> {path}: the other family's bind of this port has it; blackhole", ref copyConsumed);
                inUse = err == Errors.EADDRINUSE;
                int mapped = err is Errors.EPERM ? Errors.EACCES : err;
                _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index} -> {path}: {Errors.Name(mapped)}");
                return Outcome.Fail(mapped);
            }
            // Anything but our new socket here means the program swapped things around meanwhile.
            if (Native.FileSystem.StatAt(dir, name, out var st) != 0 || !st.IsSocket)
            {
                _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index} -> {path}: the socket file went away after bind: EIO");
                return Outcome.Fail(Errors.EIO);
            }
            // A default ACL on the directory decides instead of the umask: only then is a chmod needed.
            if ((st.Mode & 0x1FF) != mode) Native.FileSystem.ChmodAt(dir, name, mode);
            // Whatever we had recorded at this sun_path was replaced by this file.
            _registry.FindFile(sunPath)?.Forget();
            var file = new BoundFile(path, sunPath, directory, name, st.Device, st.Inode, Sock.Inode(unix), creator.Owner) { NoRemove = rule.NoRemove };
            directory = null;
            var entry = new ConvertedSocket(file.SocketInode, Sock.AfUnix, ipv6) { Local = endpoint.InFamily(ipv6), File = file };
            file.Listener = entry;
            if (_log.Enabled) _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index} -> {path} (mode {Convert.ToString(mode, 8)})");
            handedOver = copyConsumed = true;
            var outcome = Swap(r, fd, unix, copy, facts.NonBlocking, entry);
            // Not registered (the swap failed): nobody else will remove the file.
            if (!ReferenceEquals(_registry.FindFile(sunPath), file)) file.RemoveIfStillOurs();
            return outcome;
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
        // We bind as root: VSOCK ports below 1024 need the program's own CAP_NET_BIND_SERVICE.
        if (control.Kind == ControlFileKind.Vsock && control.VsockPort < 1024 && !HasBindService(r.Pid))
        {
            _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index} via {control}: the program lacks CAP_NET_BIND_SERVICE for a port below 1024: EACCES");
            return Outcome.Fail(Errors.EACCES);
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

    /// <summary>
    /// True when entry <paramref name="name"/> of <paramref name="directory"/> was a socket file whose socket
    /// no longer exists, and is now gone. A socket that is bound but not listening refuses connects just
    /// like a stale file: only sock_diag tells them apart. Runs with the binding program's identity, so it
    /// removes nothing the program could not remove itself.
    /// </summary>
    private static bool RemoveStaleSocketFile(int directory, string name, ReadOnlySpan<byte> sockaddr)
    {
        if (Native.FileSystem.StatAt(directory, name, out var st) != 0 || !st.IsSocket) return false; // never delete other files
        var ours = BoundFile.Find(st.Device, st.Inode);
        if (ours is not null)
        {
            // One of ours: the exact lookup of its socket by inode.
            using var diag = Native.UnixDiag.TryOpen();
            if (diag?.Exists(ours.SocketInode) != false) return false;
        }
        else if (Native.UnixSocketFiles.IsBound(st.Device, st.Inode) != false)
        {
            return false;
        }
        // sock_diag sees this network namespace only: a listener elsewhere still answers a connect.
        if (!ConnectIsRefused(sockaddr)) return false;
        if (Native.FileSystem.StatAt(directory, name, out var again) != 0 || again.Device != st.Device || again.Inode != st.Inode) return false;
        if (Native.FileSystem.UnlinkAt(directory, name) != 0) return false;
        ours?.Forget();
        return true;
    }

    private static bool ConnectIsRefused(ReadOnlySpan<byte> sockaddr)
    {
        if (Sock.Create(Sock.AfUnix, Sock.SockStream | Sock.SockNonblock | Sock.SockCloexec, out int probe) != 0) return false;
        int err = Sock.Connect(probe, sockaddr);
        Sock.Close(probe);
        return err == Errors.ECONNREFUSED;
    }

    /// <summary>
    /// Opens the directory of a socket file (O_PATH), creating what is missing (0755 under the thread's umask,
    /// as the program, so the directories are its own). Existing components are followed as the program would;
    /// each one created is opened without following symlinks, from its parent. For a target with its own root
    /// or mount namespace, existing components are looked up in its root (<see cref="TargetIdentity.ForeignRoot"/>).
    /// </summary>
    private static int OpenSocketDirectory(string dir, out Native.FileSystem.DirectoryHandle? directory)
    {
        int root = TargetIdentity.ForeignRoot;
        int err = root >= 0 ? Native.FileSystem.OpenDirectoryInRoot(root, dir, out directory) : Native.FileSystem.OpenDirectory(dir, out directory);
        if (err != Errors.ENOENT) return err;
        string? parentPath = Path.GetDirectoryName(dir);
        string name = Path.GetFileName(dir);
        if (parentPath is null || name.Length == 0) return err;
        err = OpenSocketDirectory(parentPath, out var parent);
        if (err != 0) return err;
        using (parent)
        {
            err = Native.FileSystem.MkdirAt(parent!.Fd, name, 0x1ED /* 0755 */);
            if (err != 0 && err != Errors.EEXIST) return err;
            return Native.FileSystem.OpenDirectoryAt(parent.Fd, name, out directory);
        }
    }
}
