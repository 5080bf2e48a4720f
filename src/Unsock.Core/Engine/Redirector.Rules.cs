using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Text;
using Unsock.Core.Addressing;
using Unsock.Core.ControlFiles;
using Unsock.Core.Policies;
using Native = global::Interop;
using Sock = global::Interop.Socket;

namespace Unsock.Core.Engine;

/// <summary>
/// The actions beyond a socket file: blackhole, abstract sockets, VSOCK/TIPC/Firecracker destinations and
/// systemd's sockets, for TCP calls a rule matched; and the dual bind (IPv4 and IPv6 of one port on one path).
/// </summary>
internal sealed partial class Redirector
{
    // Where blackhole sockets are bound for the moment before their file is removed: our own 0700 directory.
    private static readonly Lazy<string> BlackholeDirectory = new(() =>
    {
        string dir = Directory.CreateTempSubdirectory("unsock-blackhole-").FullName; // mkdtemp: 0700, ours
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(dir); } catch (IOException) { } };
        return dir;
    });

    // Abstract names bound through rules, per attachment: a second bind of a name by the other family is a dual bind.
    private static readonly ConditionalWeakTable<SocketRegistry, Dictionary<string, ConvertedSocket>> AbstractNames = new();

    /// <summary>A bind an IP rule matched whose action is not a socket file. Consumes <paramref name="copy"/> when it sets <paramref name="copyConsumed"/>.</summary>
    private Outcome BindDestination(in SyscallRequest r, int fd, int copy, SocketFacts facts, PolicyRule rule, InetEndpoint endpoint, ref bool copyConsumed)
    {
        bool ipv6 = facts.Domain == Sock.AfInet6;
        bool ephemeral = endpoint.Port == 0;
        // Port 0 asks for a free port: getsockname must report one, and %p must name one.
        if (endpoint.Port == 0) endpoint = endpoint with { Port = Random.Shared.Next(EphemeralFirst, EphemeralLast + 1) };
        switch (rule.Action)
        {
            case BlackholeAction:
                return BindBlackhole(r, fd, copy, facts, endpoint, ipv6, $"rule {rule.Index}: blackhole", ref copyConsumed);
            case AbstractAction abstractName:
                for (int i = 0; i < EphemeralTries; i++)
                {
                    var outcome = BindAbstract(r, fd, copy, facts, rule, endpoint, ipv6, abstractName.ResolveName(endpoint.MatchAddress, endpoint.Port, RuleProtocol.Tcp),
                        ref copyConsumed, out bool inUse);
                    if (!inUse || !ephemeral) return outcome;
                    endpoint = endpoint with { Port = Random.Shared.Next(EphemeralFirst, EphemeralLast + 1) };
                }
                return Outcome.Fail(Errors.EADDRINUSE);
            case VsockAction vsock:
                // BindControlFile refuses VSOCK ports below 1024 unless the program holds CAP_NET_BIND_SERVICE itself.
                return BindControlFile(r, fd, copy, facts, rule, endpoint, ipv6, vsock.ToControlFile(), vsock.ToString(), ref copyConsumed);
            case TipcAction tipc:
                return BindControlFile(r, fd, copy, facts, rule, endpoint, ipv6, tipc.ToControlFile(), tipc.ToString(), ref copyConsumed);
            case FirecrackerAction firecracker:
                _log.Decision(r.Pid, "bind", endpoint.ToString(), $"rule {rule.Index}: {firecracker}: one cannot listen through a Firecracker proxy: EINVAL");
                return Outcome.Fail(Errors.EINVAL);
            case SystemdAction systemd:
                return BindSystemd(r, fd, copy, facts, rule, endpoint, ipv6, systemd, ref copyConsumed);
            default:
                throw new InvalidOperationException($"rules[{rule.Index}] has an action the engine does not know: {rule.Action}");
        }
    }

    /// <summary>A connect an IP rule matched whose action is not a socket file. Consumes <paramref name="copy"/>.</summary>
    private Outcome ConnectDestination(in SyscallRequest r, int copy, InetEndpoint endpoint, SocketFacts facts, PolicyRule rule)
    {
        bool ipv6 = facts.Domain == Sock.AfInet6;
        var peer = endpoint.InFamily(ipv6);
        switch (rule.Action)
        {
            case AbstractAction abstractName:
                return ConnectAbstract(r, copy, endpoint, facts, rule, abstractName.ResolveName(endpoint.MatchAddress, endpoint.Port, RuleProtocol.Tcp));
            case VsockAction vsock:
                return ConnectThroughControlFile(r, (int)r.A0, copy, facts, peer, vsock.ToControlFile(), vsock.ToString(), rule.Index);
            case TipcAction tipc:
                return ConnectThroughControlFile(r, (int)r.A0, copy, facts, peer, tipc.ToControlFile(), tipc.ToString(), rule.Index);
            case FirecrackerAction firecracker:
            {
                // The proxy's socket file is reached as the program would reach it.
                using var identity = TargetIdentity.Assume(_target, r.Pid);
                if (identity.Errno != 0)
                {
                    CloseCopy(copy);
                    return IdentityRefused(r, endpoint, rule.Index);
                }
                return ConnectThroughControlFile(r, (int)r.A0, copy, facts, peer, firecracker.ToControlFile(), firecracker.ToString(), rule.Index);
            }
            default:
                CloseCopy(copy);
                throw new InvalidOperationException($"rules[{rule.Index}] has an action the engine does not know for connect: {rule.Action}");
        }
    }

    /// <summary>
    /// A bound socket nobody can reach: bound in our own 0700 directory and its file removed at once (a Unix
    /// socket is found through its file only). listen, accept, getsockname behave; no connection ever comes.
    /// </summary>
    private Outcome BindBlackhole(in SyscallRequest r, int fd, int copy, SocketFacts facts, InetEndpoint endpoint, bool ipv6, string why, ref bool copyConsumed)
    {
        int err = Sock.Create(Sock.AfUnix, Sock.SockStream | Sock.SockCloexec, out int unix);
        if (err != 0) return Outcome.Fail(err);
        CopySocketOptions(copy, unix);
        string path = Path.Combine(BlackholeDirectory.Value, $"{Environment.CurrentManagedThreadId}-{Random.Shared.NextInt64():x}");
        Span<byte> sa = stackalloc byte[UnixAddress.MaxSize];
        err = UnixAddress.TryEncode(path, sa, out int size) ? Sock.Bind(unix, sa[..size]) : Errors.ENAMETOOLONG;
        File.Delete(path);
        if (err != 0)
        {
            Sock.Close(unix);
            _log.Decision(r.Pid, "bind", endpoint.ToString(), $"{why}: {Errors.Name(err)}");
            return Outcome.Fail(err);
        }
        if (_log.Enabled) _log.Decision(r.Pid, "bind", endpoint.ToString(), $"{why}: bound where nobody can reach it");
        copyConsumed = true;
        return Swap(r, fd, unix, copy, facts.NonBlocking, new ConvertedSocket(Sock.Inode(unix), Sock.AfUnix, ipv6) { Local = endpoint.InFamily(ipv6) });
    }

    /// <summary>
    /// True when a bind found its socket file held by a socket this program (its launcher) bound through us for the
    /// same port in the other address family: 127.0.0.1 and ::1 of one port on one path. TCP would give both; the
    /// second gets a blackhole so the program starts as it would, and clients reach it through the first.
    /// </summary>
    private bool IsDualBind(string sunPath, InetEndpoint endpoint, bool ipv6)
    {
        if (_registry.FindFile(sunPath)?.Listener is not { } first) return false;
        return IsOtherFamilyOfSamePort(first, endpoint, ipv6);
    }

    private static bool IsOtherFamilyOfSamePort(ConvertedSocket first, InetEndpoint endpoint, bool ipv6) =>
        LocalOf(first) is { } bound && bound.Port == endpoint.Port && first.IPv6 != ipv6 && !endpoint.Address.IsIPv4MappedToIPv6;

    private static int EncodeAbstract(string name, Span<byte> sockaddr, out int size)
    {
        size = 0;
        int count = Encoding.UTF8.GetByteCount(name);
        if (count == 0 || count > AbstractAction.MaxNameBytes) return Errors.ENAMETOOLONG;
        sockaddr[..UnixAddress.MaxSize].Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(sockaddr, Sock.AfUnix);
        Encoding.UTF8.GetBytes(name, sockaddr[(UnixAddress.PathOffset + 1)..]);
        size = UnixAddress.PathOffset + 1 + count; // abstract names are counted, not NUL-terminated
        return 0;
    }

    private Outcome BindAbstract(in SyscallRequest r, int fd, int copy, SocketFacts facts, PolicyRule rule, InetEndpoint endpoint, bool ipv6, string name,
        ref bool copyConsumed, out bool inUse)
    {
        inUse = false;
        string subject = endpoint.ToString();
        Span<byte> sa = stackalloc byte[UnixAddress.MaxSize];
        int err = EncodeAbstract(name, sa, out int size);
        if (err != 0)
        {
            _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index} -> @{name}: {Errors.Name(err)}");
            return Outcome.Fail(err);
        }
        err = Sock.Create(Sock.AfUnix, Sock.SockStream | Sock.SockCloexec, out int unix);
        if (err != 0) return Outcome.Fail(err);
        CopySocketOptions(copy, unix);
        err = Sock.Bind(unix, sa[..size]);
        if (err != 0)
        {
            Sock.Close(unix);
            var names = AbstractNames.GetOrCreateValue(_registry);
            ConvertedSocket? first;
            lock (names) names.TryGetValue(name, out first);
            if (err == Errors.EADDRINUSE && first is not null && ReferenceEquals(_registry.Find(first.Inode), first) && IsOtherFamilyOfSamePort(first, endpoint, ipv6))
                return BindBlackhole(r, fd, copy, facts, endpoint, ipv6, $"rule {rule.Index} -> @{name}: the other family's bind of this port has it; blackhole", ref copyConsumed);
            inUse = err == Errors.EADDRINUSE;
            _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index} -> @{name}: {Errors.Name(err)}");
            return Outcome.Fail(err);
        }
        if (_log.Enabled) _log.Decision(r.Pid, "bind", subject, $"rule {rule.Index} -> abstract @{name}");
        var entry = new ConvertedSocket(Sock.Inode(unix), Sock.AfUnix, ipv6) { Local = endpoint.InFamily(ipv6) };
        var table = AbstractNames.GetOrCreateValue(_registry);
        lock (table)
        {
            // Names whose sockets are gone are dropped as new ones come: the table stays as small as what is bound.
            foreach (var stale in table.Where(e => !ReferenceEquals(_registry.Find(e.Value.Inode), e.Value)).Select(e => e.Key).ToList()) table.Remove(stale);
            table[name] = entry;
        }
        copyConsumed = true;
        return Swap(r, fd, unix, copy, facts.NonBlocking, entry);
    }

    /// <summary>Connects a fresh AF_UNIX socket to an abstract name and swaps it in. Consumes <paramref name="copy"/>.</summary>
    private Outcome ConnectAbstract(in SyscallRequest r, int copy, InetEndpoint endpoint, SocketFacts facts, PolicyRule rule, string name)
    {
        bool ipv6 = facts.Domain == Sock.AfInet6;
        var peer = endpoint.InFamily(ipv6);
        string subject = endpoint.ToString();
        Span<byte> sa = stackalloc byte[UnixAddress.MaxSize];
        int err = EncodeAbstract(name, sa, out int size);
        if (err != 0)
        {
            CloseCopy(copy);
            _log.Decision(r.Pid, "connect", subject, $"rule {rule.Index} -> @{name}: {Errors.Name(err)}");
            return Outcome.Fail(err);
        }
        err = TakeSpareUnixSocket(out int unix, out ulong unixInode);
        if (err != 0)
        {
            CloseCopy(copy);
            return Outcome.Fail(err);
        }
        CopySocketOptions(copy, unix);
        err = Sock.Connect(unix, sa[..size]);
        if (err == Errors.EAGAIN && !facts.NonBlocking)
        {
            // A full backlog: a blocking connect waits for room on the poller, as for a socket file.
            var call = new ConnectWhenRoom(_attachment, r)
            {
                Fd = (int)r.A0, Copy = copy, Unix = unix, SockAddr = sa[..size].ToArray(), Facts = facts, Peer = peer,
                Local = null, Path = "@" + name, RuleIndex = rule.Index,
            };
            call.Setup(DeadlineOf(copy, Sock.SoSndTimeo));
            return Park(call, Errors.ETIMEDOUT);
        }
        if (err != 0)
        {
            Sock.Close(unix);
            CloseCopy(copy);
            // A full backlog refuses a non-blocking connect at once, as TCP does with tcp_abort_on_overflow.
            int mapped = err == Errors.EAGAIN ? Errors.ECONNREFUSED : MapUnixConnectError(err);
            _log.Decision(r.Pid, "connect", subject, $"rule {rule.Index} -> @{name}: {Errors.Name(mapped)}");
            return Outcome.Fail(mapped);
        }
        if (_log.Enabled) _log.Decision(r.Pid, "connect", subject, $"rule {rule.Index} -> @{name}: connected");
        return Swap(r, (int)r.A0, unix, copy, facts.NonBlocking, new ConvertedSocket(unixInode, Sock.AfUnix, ipv6) { Peer = peer });
    }
}
