using Unsock.Core.Addressing;
using Unsock.Core.Filter;
using Unsock.Core.Policies;
using Native = global::Interop;
using Sock = global::Interop.Socket;

namespace Unsock.Core.Engine;

/// <summary>
/// Decides and carries out one trapped socket call: matches the policy, builds the replacement socket in
/// the supervisor, swaps it into the target, and answers the questions (getsockname, getsockopt...) that
/// would otherwise give the swap away. One instance per notification thread (its caches are its own);
/// slow work (a full backlog, a proxy handshake, a blocking accept) goes to worker threads.
/// </summary>
internal sealed partial class Redirector : IDisposable
{
    private readonly Policy _policy;
    private readonly SeccompListener _listener;
    private readonly SocketRegistry _registry;
    private readonly TargetProcess _target = new();
    private readonly EngineLog _log;
    private readonly int _tcpDefaultSendBuffer, _tcpDefaultReceiveBuffer;
    private long _nextPrune;
    private int _spareUnixSocket = -1;
    private ulong _spareUnixSocketInode;

    public Redirector(Policy policy, SeccompListener listener, SocketRegistry registry, EngineLog log)
    {
        _policy = policy;
        _listener = listener;
        _registry = registry;
        _log = log;
        _tcpDefaultSendBuffer = ReadSysctlSecond("/proc/sys/net/ipv4/tcp_wmem");
        _tcpDefaultReceiveBuffer = ReadSysctlSecond("/proc/sys/net/ipv4/tcp_rmem");
    }

    /// <summary>A fresh AF_UNIX stream socket (non-blocking, close-on-exec) and its inode, made ahead of time when possible.</summary>
    private int TakeSpareUnixSocket(out int fd, out ulong inode)
    {
        fd = _spareUnixSocket;
        inode = _spareUnixSocketInode;
        _spareUnixSocket = -1;
        if (fd >= 0) return 0;
        int err = Sock.Create(Sock.AfUnix, Sock.SockStream | Sock.SockNonblock | Sock.SockCloexec, out fd);
        inode = err == 0 ? Sock.Inode(fd) : 0;
        return err;
    }

    /// <summary>Work that can wait until the target has its answer: the next connect's socket.</summary>
    public void AfterAnswer()
    {
        if (_spareUnixSocket >= 0 || _registry.IsEmpty) return;
        if (Sock.Create(Sock.AfUnix, Sock.SockStream | Sock.SockNonblock | Sock.SockCloexec, out _spareUnixSocket) == 0)
            _spareUnixSocketInode = Sock.Inode(_spareUnixSocket);
    }

    public Outcome Handle(in SyscallRequest r)
    {
        if (Environment.TickCount64 >= _nextPrune)
        {
            _target.PruneExited();
            _nextPrune = Environment.TickCount64 + 1000;
        }
        if (r.Arch != AuditArch.X86_64) return Outcome.Fail(Errors.ENOSYS); // the filter already refuses these
        return r.Nr switch
        {
            Syscalls.Connect => Connect(r),
            Syscalls.Bind => Bind(r),
            Syscalls.GetSockName => Name(r, peer: false),
            Syscalls.GetPeerName => Name(r, peer: true),
            Syscalls.GetSockOpt => GetSockOpt(r),
            Syscalls.SetSockOpt => SetSockOpt(r),
            Syscalls.Shutdown => Shutdown(r),
            Syscalls.Accept => Accept(r, flags: 0),
            Syscalls.Accept4 => Accept(r, flags: (int)r.A3),
            _ => Outcome.Continue,
        };
    }

    /// <summary>Reads the program's sockaddr once into our memory; false when it is not AF_INET/AF_INET6.</summary>
    private static bool TryReadInetAddress(in SyscallRequest r, out InetEndpoint endpoint, out int errno)
    {
        endpoint = default;
        errno = 0;
        uint length = (uint)r.A2;
        if (length < InetEndpoint.SockAddrInSize || length > 128) return false; // the kernel refuses these itself
        Span<byte> sa = stackalloc byte[InetEndpoint.SockAddrIn6Size];
        int n = (int)Math.Min(length, (uint)sa.Length);
        errno = TargetProcess.ReadMemory(r.Pid, r.A1, sa[..n]);
        if (errno != 0) return false;
        return InetEndpoint.TryDecode(sa[..n], out endpoint);
    }

    /// <summary>
    /// The program passed a sockaddr we cannot read. Never CONTINUE here (the kernel would read it again,
    /// perhaps readable by then, past a reject rule): answer what the kernel would, EBADF before EFAULT.
    /// </summary>
    private Outcome UnreadableAddress(in SyscallRequest r)
    {
        int err = _target.CopyFd(r.Pid, (int)r.A0, out int copy);
        if (err != 0) return Outcome.Fail(err);
        bool socket = Sock.GetInt(copy, Sock.SolSocket, Sock.SoType, out _) == 0;
        Sock.Close(copy);
        return Outcome.Fail(socket ? Errors.EFAULT : Errors.ENOTSOCK);
    }

    private readonly record struct SocketFacts(int Domain, int Type, bool NonBlocking);

    private static int ReadFacts(int fd, out SocketFacts facts)
    {
        facts = default;
        int err = Sock.GetInt(fd, Sock.SolSocket, Sock.SoDomain, out int domain);
        if (err != 0) return err;
        err = Sock.GetInt(fd, Sock.SolSocket, Sock.SoType, out int type);
        if (err != 0) return err;
        err = Sock.GetFileFlags(fd, out int flags);
        if (err != 0) return err;
        facts = new(domain, type & 0xF, (flags & Sock.ONonblock) != 0);
        return 0;
    }

    /// <summary>Copies what the program set on its TCP socket that also means something on the new one.</summary>
    private void CopySocketOptions(int from, int to)
    {
        Span<byte> buf = stackalloc byte[16];
        foreach (int opt in (ReadOnlySpan<int>)[Sock.SoRcvTimeo, Sock.SoSndTimeo, Sock.SoLinger])
        {
            int len = Sock.GetRaw(from, Sock.SolSocket, opt, buf);
            if (len > 0 && buf[..len].ContainsAnyExcept((byte)0)) Sock.SetRaw(to, Sock.SolSocket, opt, buf[..len]);
        }
        if (Sock.GetInt(from, Sock.SolSocket, Sock.SoKeepAlive, out int keepAlive) == 0 && keepAlive != 0)
            Sock.SetInt(to, Sock.SolSocket, Sock.SoKeepAlive, 1);
        // Buffer sizes only when the program chose them: TCP's defaults would shrink a Unix socket's.
        if (Sock.GetInt(from, Sock.SolSocket, Sock.SoSndBuf, out int snd) == 0 && snd != _tcpDefaultSendBuffer)
            Sock.SetInt(to, Sock.SolSocket, Sock.SoSndBuf, snd / 2);
        if (Sock.GetInt(from, Sock.SolSocket, Sock.SoRcvBuf, out int rcv) == 0 && rcv != _tcpDefaultReceiveBuffer)
            Sock.SetInt(to, Sock.SolSocket, Sock.SoRcvBuf, rcv / 2);
    }

    /// <summary>
    /// Puts <paramref name="replacement"/> where the target's fd was, keeping its O_NONBLOCK and FD_CLOEXEC,
    /// and records it. Consumes both fds (closed once the answer is out).
    /// </summary>
    /// <param name="onWorker">True off the notification thread, whose caches are its own.</param>
    private Outcome Swap(in SyscallRequest r, int targetFd, int replacement, int oldCopy, bool nonBlocking, ConvertedSocket entry,
        bool onWorker = false)
    {
        // One F_SETFL, no F_GETFL: a socket's file flags are O_RDWR plus what we set.
        int err = Sock.SetFileFlags(replacement, Sock.ORdwr | (nonBlocking ? Sock.ONonblock : 0));
        if (err == 0)
        {
            bool cloexec = onWorker ? TargetProcess.IsCloseOnExecUncached(r.Pid, targetFd) : _target.IsCloseOnExec(r.Pid, targetFd);
            _registry.Add(entry);
            err = _listener.ReplaceFd(r.Id, replacement, targetFd, cloexec);
            if (err == 0)
            {
                MoveEpollRegistrations(r, targetFd, oldCopy, replacement);
                return Outcome.AfterSwap(entry, replacement, oldCopy);
            }
            // The target was interrupted or killed before the fd went in: nothing changed on its side.
            if (entry.File is { } f) _registry.RemoveFile(f);
        }
        Sock.Close(replacement);
        Sock.Close(oldCopy);
        return err == Errors.ENOENT ? Outcome.Answered : Outcome.Fail(err);
    }

    /// <summary>The sockaddr_un for <paramref name="path"/>, through /proc/self/fd when it is longer than sun_path.</summary>
    private static int UnixSockAddr(string path, Span<byte> sockaddr, out int size, out int directoryFd, out string sunPath)
    {
        directoryFd = -1;
        sunPath = path;
        if (UnixAddress.TryEncode(path, sockaddr, out size)) return 0;
        string dir = Path.GetDirectoryName(path) ?? "/";
        int err = Native.FileSystem.OpenDirectoryPath(dir, out directoryFd);
        if (err != 0) return err;
        sunPath = $"/proc/self/fd/{directoryFd}/{Path.GetFileName(path)}";
        return UnixAddress.TryEncode(sunPath, sockaddr, out size) ? 0 : Errors.ENAMETOOLONG;
    }

    private static int ReadSysctlSecond(string path)
    {
        try
        {
            var parts = File.ReadAllText(path).Split((char[])['\t', ' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
            return parts.Length > 1 && int.TryParse(parts[1], out int v) ? v : -1;
        }
        catch (IOException) { return -1; }
    }

    private static RuleProtocol ProtocolOf(int type) =>
        type == Sock.SockStream ? RuleProtocol.Tcp : type == Sock.SockDgram ? RuleProtocol.Udp : RuleProtocol.Any;

    /// <summary>The address a converted peer is reported as, in the family of the program's socket.</summary>
    private InetEndpoint FakePeer(bool ipv6) => new InetEndpoint(_policy.FakeAddress, 0).InFamily(ipv6);

    public void Dispose()
    {
        Sock.Close(_spareUnixSocket);
        _peerDiag?.Dispose();
        _target.Dispose();
    }
}
