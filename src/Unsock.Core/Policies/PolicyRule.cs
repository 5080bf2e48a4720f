using System.Net;
using System.Net.Sockets;

namespace Unsock.Core.Policies;

/// <summary>
/// One rule of a <see cref="Policy"/>: what it matches (direction, protocol, address, port; absent = any)
/// and its action.
/// </summary>
public sealed class PolicyRule : IEquatable<PolicyRule>
{
    /// <summary>The highest permission bits a socket file mode may have (chmod 0777).</summary>
    public const int MaxMode = 0x1FF; // 0777

    public PolicyRule(
        int index,
        RuleDirection direction,
        RuleProtocol protocol,
        IPNetwork? address,
        PortRange? port,
        RuleAction action,
        int? mode = null,
        UnixPathPattern? fromUnix = null,
        UnixPathPattern? fromAbstract = null,
        bool noRemove = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentNullException.ThrowIfNull(action);
        // Named, not Enum.IsDefined: that reads the enum's metadata through reflection, a start-up cost of the launcher.
        if (direction is not (RuleDirection.Any or RuleDirection.Bind or RuleDirection.Connect))
        {
            throw new ArgumentOutOfRangeException(nameof(direction), direction, null);
        }
        if (protocol is not (RuleProtocol.Any or RuleProtocol.Tcp or RuleProtocol.Udp))
        {
            throw new ArgumentOutOfRangeException(nameof(protocol), protocol, null);
        }
        if (mode is int m)
        {
            if (action is not RedirectAction)
            {
                throw new ArgumentException("a mode applies only to unix and directory rules", nameof(mode));
            }
            if (m < 0 || m > MaxMode)
            {
                throw new ArgumentOutOfRangeException(nameof(mode), m, "a socket file mode is 0-0777");
            }
        }
        if (UnixMatchProblem(address, port, action, fromUnix, fromAbstract) is string unixProblem)
        {
            throw new ArgumentException(unixProblem, fromUnix is null ? nameof(fromAbstract) : nameof(fromUnix));
        }
        if (noRemove && action is not RedirectAction)
        {
            throw new ArgumentException("noremove applies only to unix and directory rules (the rules that create socket files)", nameof(noRemove));
        }
        Index = index;
        Direction = direction;
        FromUnix = fromUnix;
        FromAbstract = fromAbstract;
        NoRemove = noRemove;
        Protocol = protocol;
        // Keep the network canonical (host bits clear) so that equal networks compare equal.
        Address = address is IPNetwork network ? AddressNotation.MaskedNetwork(network.BaseAddress, network.PrefixLength) : null;
        Port = port;
        Action = action;
        Mode = mode;
    }

    /// <summary>The rule's position in <see cref="Policy.Rules"/> (rules[Index] in the policy file).</summary>
    public int Index { get; }

    public RuleDirection Direction { get; }

    public RuleProtocol Protocol { get; }

    /// <summary>The addresses matched; null matches every address of either family.</summary>
    public IPNetwork? Address { get; }

    /// <summary>The ports matched; null matches every port.</summary>
    public PortRange? Port { get; }

    public RuleAction Action { get; }

    /// <summary>Permission bits for socket files that a redirected bind creates; null leaves them to the umask.</summary>
    public int? Mode { get; }

    /// <summary>Paths of AF_UNIX sockets this rule matches instead of IP addresses; null for an IP rule.</summary>
    public UnixPathPattern? FromUnix { get; }

    /// <summary>Abstract names (without the leading NUL) this rule matches instead of IP addresses; null for an IP rule.</summary>
    public UnixPathPattern? FromAbstract { get; }

    /// <summary>True for a rule that matches AF_UNIX calls (<c>fromUnix</c> or <c>fromAbstract</c>) rather than TCP/UDP ones.</summary>
    public bool MatchesUnixSockets => FromUnix is not null || FromAbstract is not null;

    /// <summary>The socket file a bind creates stays after its socket is closed and after the program exits.</summary>
    public bool NoRemove { get; }

    /// <summary>Null when the fromUnix/fromAbstract keys (if any) fit with the rest of the rule, else the problem.</summary>
    internal static string? UnixMatchProblem(IPNetwork? address, PortRange? port, RuleAction action, UnixPathPattern? fromUnix, UnixPathPattern? fromAbstract)
    {
        if (fromUnix is null && fromAbstract is null) return null;
        if (fromUnix is not null && fromAbstract is not null) return "a rule matches either fromUnix or fromAbstract, not both";
        if (address is not null || port is not null) return "fromUnix and fromAbstract match Unix sockets, which have no address or port";
        return action switch
        {
            DirectoryAction => "directory names <port>.sock, and a Unix socket has no port; use \"unix\" with a path",
            UnixAction { HasPlaceholders: true } => "a Unix socket has no address, port or protocol for %a, %p, %t",
            AbstractAction { HasPlaceholders: true } => "a Unix socket has no address, port or protocol for %a, %p, %t",
            VsockAction or TipcAction or FirecrackerAction or SystemdAction =>
                "a rule matching Unix sockets takes unix, abstract, blackhole, reject or allow",
            _ => null,
        };
    }

    /// <summary>
    /// Whether this rule applies to a <paramref name="direction"/> call on an AF_UNIX socket of <paramref name="protocol"/>
    /// (stream: Tcp, datagram: Udp) for the path or abstract name <paramref name="name"/>.
    /// </summary>
    public bool MatchesUnix(RuleDirection direction, RuleProtocol protocol, bool isAbstract, string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        UnixPathPattern? pattern = isAbstract ? FromAbstract : FromUnix;
        if (pattern is null || !MatchesCall(direction, protocol))
        {
            return false;
        }
        return pattern.IsMatch(name);
    }

    private bool MatchesCall(RuleDirection direction, RuleProtocol protocol)
    {
        if (direction is not (RuleDirection.Bind or RuleDirection.Connect))
        {
            throw new ArgumentOutOfRangeException(nameof(direction), direction, "a socket call is either a bind or a connect");
        }
        if (protocol is not (RuleProtocol.Tcp or RuleProtocol.Udp))
        {
            throw new ArgumentOutOfRangeException(nameof(protocol), protocol, "a socket is either TCP or UDP");
        }
        if (Direction != RuleDirection.Any && Direction != direction)
        {
            return false;
        }
        if (Protocol != RuleProtocol.Any && Protocol != protocol)
        {
            return false;
        }
        // Blackhole and systemd rules say what a bind gets; a connect goes on to the next rule.
        if (direction == RuleDirection.Connect && Action is DestinationAction { Connects: false })
        {
            return false;
        }
        // Datagram destinations other than files are not supported: a UDP socket goes on to the next rule.
        return !(protocol == RuleProtocol.Udp && Action is DestinationAction);
    }

    /// <summary>
    /// Whether this rule applies to a <paramref name="direction"/> call on a <paramref name="protocol"/>
    /// socket for <paramref name="address"/>:<paramref name="port"/>.
    /// </summary>
    /// <remarks>
    /// A unix/directory rule redirects a UDP socket only when it says "protocol": "udp": with "any" it applies to
    /// TCP alone and the UDP socket goes on to the next rule, so that policies written before datagrams keep
    /// their meaning (and their cost: datagram rules trap sendmsg and recvmsg).
    /// </remarks>
    public bool Matches(RuleDirection direction, RuleProtocol protocol, IPAddress address, int port)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (MatchesUnixSockets || !MatchesCall(direction, protocol))
        {
            return false;
        }
        if (protocol == RuleProtocol.Udp && Protocol == RuleProtocol.Any && Action is RedirectAction)
        {
            return false;
        }
        if (Port is PortRange ports && !ports.Contains(port))
        {
            return false;
        }
        return Address is not IPNetwork network || Contains(network, address);
    }

    /// <summary>The AF_UNIX path for a call this unix/directory rule matched.</summary>
    /// <exception cref="InvalidOperationException">The rule is a reject or allow rule.</exception>
    public string ResolvePath(IPAddress address, int port, RuleProtocol protocol) =>
        Action is RedirectAction redirect
            ? redirect.ResolvePath(address, port, protocol)
            : throw new InvalidOperationException($"rules[{Index}] is a {Action.GetType().Name}, not a redirect");

    // ::ffff:a.b.c.d is how a dual-stack socket sees an IPv4 peer: it matches IPv4 rules, and plain IPv4
    // addresses match only those IPv6 rules that lie inside ::ffff:0:0/96.
    private static bool Contains(IPNetwork network, IPAddress address)
    {
        bool ruleIsIPv4 = network.BaseAddress.AddressFamily == AddressFamily.InterNetwork;
        if (ruleIsIPv4 && address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }
        else if (!ruleIsIPv4 && address.AddressFamily == AddressFamily.InterNetwork)
        {
            if (network.PrefixLength < 96 || !network.BaseAddress.IsIPv4MappedToIPv6)
            {
                return false;
            }
            address = address.MapToIPv6();
        }
        else if (network.BaseAddress.AddressFamily != address.AddressFamily)
        {
            return false;
        }
        return AddressNotation.HasPrefix(address, network);
    }

    public bool Equals(PolicyRule? other) =>
        other is not null
        && Index == other.Index
        && Direction == other.Direction
        && Protocol == other.Protocol
        && Nullable.Equals(Address, other.Address)
        && Nullable.Equals(Port, other.Port)
        && Action.Equals(other.Action)
        && Mode == other.Mode
        && Equals(FromUnix, other.FromUnix)
        && Equals(FromAbstract, other.FromAbstract)
        && NoRemove == other.NoRemove;

    public override bool Equals(object? obj) => Equals(obj as PolicyRule);

    public override int GetHashCode() => HashCode.Combine(Index, Direction, Protocol, Address, Port, Action, Mode);

    public override string ToString()
    {
        if (FromUnix is not null || FromAbstract is not null)
        {
            string from = FromUnix is not null ? $"Unix socket {FromUnix}" : $"abstract socket @{FromAbstract}";
            return $"rules[{Index}]: {Direction} {Protocol} {from} -> {Action}";
        }
        string address = Address is IPNetwork network ? AddressNotation.Format(network) : "any address";
        string port = Port is PortRange ports ? $"port {ports}" : "any port";
        return $"rules[{Index}]: {Direction} {Protocol} {address} {port} -> {Action}";
    }
}
