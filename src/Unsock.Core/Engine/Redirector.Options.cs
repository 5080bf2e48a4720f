using System.Buffers.Binary;
using Sock = global::Interop.Socket;
using Native = global::Interop.FileOwner;

namespace Unsock.Core.Engine;

internal sealed partial class Redirector
{
    private const int MaxOptionLength = 256;
    private const int TcpInfo = 11, TcpCongestion = 13, TcpInfoSize = 232;

    /// <summary>What a fresh TCP socket on loopback answers, for options a program reads before setting them.</summary>
    private static byte[]? DefaultOption(int level, int option, bool listening) => (level, option) switch
    {
        (Sock.SolTcp, 1) => Int(0),        // TCP_NODELAY
        (Sock.SolTcp, 2) => Int(65483),    // TCP_MAXSEG on loopback
        (Sock.SolTcp, 3) => Int(0),        // TCP_CORK
        (Sock.SolTcp, 4) => Int(7200),     // TCP_KEEPIDLE
        (Sock.SolTcp, 5) => Int(75),       // TCP_KEEPINTVL
        (Sock.SolTcp, 6) => Int(9),        // TCP_KEEPCNT
        (Sock.SolTcp, 9) => Int(0),        // TCP_DEFER_ACCEPT
        (Sock.SolTcp, 12) => Int(1),       // TCP_QUICKACK
        (Sock.SolTcp, 18) => Int(0),       // TCP_USER_TIMEOUT
        (Sock.SolTcp, 23) => Int(0),       // TCP_FASTOPEN
        (Sock.SolTcp, TcpCongestion) => "cubic\0\0\0\0\0\0\0\0\0\0\0"u8.ToArray(),
        (Sock.SolTcp, TcpInfo) => TcpInfoBytes(listening),
        (Sock.SolIp, 1) => Int(0),         // IP_TOS
        (Sock.SolIp, 2) => Int(64),        // IP_TTL
        (Sock.SolIp, 10) => Int(0),        // IP_MTU_DISCOVER
        (Sock.SolIp, 49) => Int(1),        // IP_MULTICAST_ALL
        (Sock.SolIpv6, 16) => Int(64),     // IPV6_UNICAST_HOPS
        (Sock.SolIpv6, 26) => Int(0),      // IPV6_V6ONLY
        (Sock.SolIpv6, 67) => Int(0),      // IPV6_TCLASS
        _ => null,
    };

    private static byte[] Int(int v)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(b, v);
        return b;
    }

    private static byte[] TcpInfoBytes(bool listening)
    {
        var b = new byte[TcpInfoSize];
        b[0] = listening ? (byte)10 /* TCP_LISTEN */ : (byte)1 /* TCP_ESTABLISHED */;
        return b;
    }

    // TCP_INFO, TCP_CONGESTION, TCP_MD5SIG, TCP_CC_INFO, TCP_SAVED_SYN, TCP_REPAIR_WINDOW, TCP_ULP,
    // TCP_MD5SIG_EXT, TCP_FASTOPEN_KEY, TCP_ZEROCOPY_RECEIVE and the TCP_AO_* structs are not ints.
    private static bool IsIntOption(int level, int option) =>
        !(level == Sock.SolTcp && option is TcpInfo or TcpCongestion or 14 or 26 or 28 or 29 or 31 or 32 or 33 or 35 or (>= 38 and <= 42));

    /// <summary>
    /// Option numbers the kernel knows at this level for a TCP socket (include/uapi/linux/tcp.h, in.h, in6.h);
    /// the kernel answers ENOPROTOOPT for the rest, and so do we, so that what we store stays bounded.
    /// IPv6-level options exist only on AF_INET6 sockets; IP-level ones on both.
    /// </summary>
    private static bool IsKnownOption(int level, int option, bool ipv6) => level switch
    {
        Sock.SolTcp => option is (>= 1 and <= 14) or (>= 16 and <= 45),
        Sock.SolIp => option is (>= 1 and <= 26) or (>= 32 and <= 52),
        Sock.SolIpv6 => ipv6 && option is (>= 1 and <= 11) or (>= 16 and <= 36) or (>= 42 and <= 62) or 66 or 67 or 70 or (>= 72 and <= 78),
        _ => false,
    };

    /// <summary>
    /// The socket of ours at the program's fd, found by the inode that /proc/TID/fd/FD shows (one stat, where a copy
    /// of the fd would cost pidfd_getfd, a getsockopt, an fstat and a close); null when the fd is not one of ours, or
    /// the program's own AF_UNIX socket. False when a stat cannot tell: the registry has listeners, and a socket
    /// accepted on one of them by an accept we did not trap is found through its name only (<see cref="TryCopyConverted"/>).
    /// </summary>
    private bool TryFindConverted(in SyscallRequest r, out ConvertedSocket? entry)
    {
        entry = null;
        int err = Native.Stat($"/proc/{r.Pid}/fd/{(int)r.A0}", out uint mode, out ulong inode);
        if (err == Errors.ENOENT) return true; // no such fd: the kernel says EBADF
        if (err != 0) return false;
        if ((mode & global::Interop.FileSystem.TypeMask) != global::Interop.FileSystem.TypeSocket) return true;
        entry = _registry.Find(inode);
        if (entry is not null)
        {
            if (entry.UnixName is not null) entry = null; // a fromUnix socket is the program's own AF_UNIX socket
            return true;
        }
        return _registry.FileCount == 0;
    }

    private Outcome GetSockOpt(in SyscallRequest r)
    {
        if (_registry.IsEmpty) return Outcome.Continue;
        int level = (int)r.A1, option = (int)r.A2;
        // SO_PROTOCOL (the socket's type) and TCP_INFO (listening or not) are read from the socket; the rest is ours.
        bool readsSocket = level == Sock.SolSocket ? option != Sock.SoDomain : level == Sock.SolTcp && option == TcpInfo;
        if (!readsSocket && TryFindConverted(r, out var found))
            return found is null ? Outcome.Continue : GetSockOpt(r, found, level, option, copy: -1);
        if (!TryCopyConverted(r, out int copy, out var entry)) return Outcome.Continue;
        try
        {
            return GetSockOpt(r, entry, level, option, copy);
        }
        finally { CloseCopy(copy); }
    }

    /// <summary>getsockopt on our socket <paramref name="entry"/>; <paramref name="copy"/> is needed (not -1) for SO_PROTOCOL and TCP_INFO.</summary>
    private static Outcome GetSockOpt(in SyscallRequest r, ConvertedSocket entry, int level, int option, int copy)
    {
        byte[]? value;
        if (level == Sock.SolSocket)
        {
            value = option switch
            {
                Sock.SoDomain => Int(entry.IPv6 ? Sock.AfInet6 : Sock.AfInet),
                // IPPROTO_UDP for a datagram socket we swapped in, else IPPROTO_TCP.
                Sock.SoProtocol => Int(Sock.GetInt(copy, Sock.SolSocket, Sock.SoType, out int type) == 0 && type == Sock.SockDgram ? 17 : 6),
                _ => null,
            };
            if (value is null) return Outcome.Continue;
        }
        else
        {
            if (!IsKnownOption(level, option, entry.IPv6)) return Outcome.Fail(Errors.ENOPROTOOPT);
            value = entry.GetOption(level, option);
            if (value is null)
            {
                bool listening = copy >= 0 && Sock.GetInt(copy, Sock.SolSocket, Sock.SoAcceptConn, out int acc) == 0 && acc != 0;
                value = DefaultOption(level, option, listening);
            }
            if (value is null) return Outcome.Fail(Errors.ENOPROTOOPT);
        }
        return WriteOption(r.Pid, r.A3, r.A4, value);
    }

    /// <summary>getsockopt's copy-out: min(*optlen, size) bytes, then that count into *optlen.</summary>
    private static Outcome WriteOption(int pid, ulong valuePointer, ulong lengthPointer, byte[] value)
    {
        Span<byte> lenBytes = stackalloc byte[4];
        if (TargetProcess.ReadMemory(pid, lengthPointer, lenBytes) != 0) return Outcome.Fail(Errors.EFAULT);
        int capacity = BinaryPrimitives.ReadInt32LittleEndian(lenBytes);
        if (capacity < 0) return Outcome.Fail(Errors.EINVAL);
        int n = Math.Min(capacity, value.Length);
        if (n > 0 && TargetProcess.WriteMemory(pid, valuePointer, value.AsSpan(0, n)) != 0) return Outcome.Fail(Errors.EFAULT);
        BinaryPrimitives.WriteInt32LittleEndian(lenBytes, n);
        return TargetProcess.WriteMemory(pid, lengthPointer, lenBytes) != 0 ? Outcome.Fail(Errors.EFAULT) : Outcome.Succeed();
    }

    private Outcome SetSockOpt(in SyscallRequest r)
    {
        int level = (int)r.A1, option = (int)r.A2;
        if (level == Sock.SolSocket) return MarkOptionSet(r, option);
        if (_registry.IsEmpty) return Outcome.Continue;
        if (!TryFindConverted(r, out var entry))
        {
            if (!TryCopyConverted(r, out int copy, out entry)) return Outcome.Continue;
            CloseCopy(copy);
        }
        if (entry is null) return Outcome.Continue;
        uint length = (uint)r.A4;
        if (!IsKnownOption(level, option, entry.IPv6)) return Outcome.Fail(Errors.ENOPROTOOPT);
        if (length > MaxOptionLength) return Outcome.Fail(Errors.EINVAL);
        if (IsIntOption(level, option) && length < 4) return Outcome.Fail(Errors.EINVAL);
        var value = new byte[IsIntOption(level, option) ? 4 : length];
        if (TargetProcess.ReadMemory(r.Pid, r.A3, value) != 0) return Outcome.Fail(Errors.EFAULT);
        entry.SetOption(level, option, value);
        return Outcome.Succeed();
    }

    /// <summary>
    /// A SOL_SOCKET option of <see cref="FilterPlan.MarkedSocketOptions"/> is being set: the socket is marked, so
    /// that a swap copies it (and only then), and the kernel sets it. A socket we swapped in already is the one
    /// the option goes to. A program that moves another socket to the fd meanwhile loses only the mark.
    /// </summary>
    private Outcome MarkOptionSet(in SyscallRequest r, int option)
    {
        int bit = OptionMarks.BitOf(option);
        if (bit == 0) return Outcome.Continue;
        if (Native.Stat($"/proc/{r.Pid}/fd/{(int)r.A0}", out uint mode, out ulong inode) != 0) return Outcome.Continue;
        if ((mode & global::Interop.FileSystem.TypeMask) != global::Interop.FileSystem.TypeSocket) return Outcome.Continue;
        if (!_registry.IsEmpty && _registry.Find(inode) is not null) return Outcome.Continue;
        if (OptionMarks.Shared.Mark(inode, bit)) _log.Message($"pid {r.Pid}: more than {OptionMarks.Shared.Capacity} sockets were marked as having SOL_SOCKET options set and never swapped; every swap copies them all from now on");
        return Outcome.Continue;
    }

    /// <summary>
    /// The <see cref="FilterPlan.MarkedSocketOptions"/> that programs set on their sockets, by socket inode, one bit
    /// per option, until a swap takes them. <see cref="Shared"/> serves every thread and target: a socket may be
    /// passed to another process. Bounded: past its capacity (sockets marked, then never swapped: connected
    /// elsewhere, or not TCP) marks are no longer kept, and every swap copies every option as though all were marked.
    /// </summary>
    internal sealed class OptionMarks(int capacity)
    {
        public static readonly OptionMarks Shared = new(16384);
        private readonly Dictionary<ulong, int> _marks = new();
        private volatile bool _overflowed;
        private volatile int _count;

        public int Capacity => capacity;

        /// <summary>The bit of <paramref name="option"/> in a mark; 0 for an option that is not marked.</summary>
        public static int BitOf(int option)
        {
            int i = FilterPlan.MarkedSocketOptions.IndexOf(option);
            return i < 0 ? 0 : 1 << i;
        }

        /// <summary>What <see cref="Take"/> answers once marks were lost: any option may have been set (every bit is on).</summary>
        public const int Unknown = -1;

        /// <summary>True when nothing is marked (the common case costs no lookup, and no fstat to find the key).</summary>
        public bool IsEmpty => _count == 0 && !_overflowed;

        /// <summary>Marks <paramref name="bit"/> on socket <paramref name="inode"/>; true the one time the marks overflow.</summary>
        public bool Mark(ulong inode, int bit)
        {
            if (_overflowed) return false;
            lock (_marks)
            {
                if (_marks.TryGetValue(inode, out int marked))
                {
                    _marks[inode] = marked | bit;
                    return false;
                }
                if (_marks.Count >= capacity)
                {
                    _overflowed = true;
                    _marks.Clear();
                    _count = 0;
                    return true;
                }
                _marks[inode] = bit;
                _count = _marks.Count;
                return false;
            }
        }

        /// <summary>The options marked on socket <paramref name="inode"/>, which are forgotten; <see cref="Unknown"/> once marks overflowed.</summary>
        public int Take(ulong inode)
        {
            if (_overflowed) return Unknown;
            lock (_marks)
            {
                if (!_marks.Remove(inode, out int marked)) return 0;
                _count = _marks.Count;
                return marked;
            }
        }
    }

    /// <summary>shutdown(SHUT_RD/SHUT_RDWR) of a listener removes its socket file, as the original did.</summary>
    private Outcome Shutdown(in SyscallRequest r)
    {
        if (_registry.IsEmpty) return Outcome.Continue;
        if (_target.CopyFd(r.Pid, (int)r.A0, out int copy) != 0) return Outcome.Continue;
        try
        {
            var entry = _registry.Find(Sock.Inode(copy));
            bool listening = Sock.GetInt(copy, Sock.SolSocket, Sock.SoAcceptConn, out int acc) == 0 && acc != 0;
            if (entry is { Local: not null, Peer: null, AcceptedFromListener: false } && !listening)
            {
                // Bound through us, never connected: TCP marks the socket shut down and says ENOTCONN; a Unix socket would say 0.
                Native.Shutdown(copy, (int)r.A1);
                return Outcome.Fail(Errors.ENOTCONN);
            }
            if (entry?.File is { } file && listening)
            {
                _registry.RemoveFile(file);
                _log.Decision(r.Pid, "shutdown", entry.Local?.ToString() ?? "", $"listener shut down, removed {file.Path}");
            }
            return Outcome.Continue;
        }
        finally { CloseCopy(copy); }
    }
}
