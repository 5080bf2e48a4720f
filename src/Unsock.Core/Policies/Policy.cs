using System.Net;

namespace Unsock.Core.Policies;

/// <summary>
/// Which socket calls become AF_UNIX (or are rejected, or left alone), read from a JSON policy file
/// (<see cref="Load"/>) or from the original unsock's UNSOCK_* variables (<see cref="FromEnvironment"/>).
/// Immutable. Two policies are equal when they behave the same; <see cref="Source"/> is not compared.
/// </summary>
public sealed partial class Policy : IEquatable<Policy>
{
    /// <summary>The original's default UNSOCK_ADDR, 127.175.0.0.</summary>
    public static IPAddress DefaultFakeAddress => new([127, 175, 0, 0]);

    private readonly byte[] _fakeAddress;
    private readonly PolicyRule[] _rules;

    public Policy(
        IEnumerable<PolicyRule> rules,
        IPAddress? fakeAddress = null,
        AcceptConvert acceptConvert = AcceptConvert.Converted,
        bool blockInet = false,
        bool blockInet6 = false,
        string source = "code")
    {
        ArgumentNullException.ThrowIfNull(rules);
        ArgumentNullException.ThrowIfNull(source);
        // Named, not Enum.IsDefined: that reads the enum's metadata through reflection, a start-up cost of the launcher.
        if (acceptConvert is not (AcceptConvert.None or AcceptConvert.All or AcceptConvert.Vsock or AcceptConvert.Converted))
        {
            throw new ArgumentOutOfRangeException(nameof(acceptConvert), acceptConvert, null);
        }
        _rules = rules.ToArray();
        for (int i = 0; i < _rules.Length; i++)
        {
            if (_rules[i] is null || _rules[i].Index != i)
            {
                throw new ArgumentException($"rule {i} must be a rule whose Index is {i}", nameof(rules));
            }
        }
        _fakeAddress = (fakeAddress ?? DefaultFakeAddress).GetAddressBytes(); // drops any IPv6 zone
        AcceptConvert = acceptConvert;
        BlockInet = blockInet;
        BlockInet6 = blockInet6;
        Source = source;
        Rules = Array.AsReadOnly(_rules);
        HasRejectRules = _rules.Any(r => r.Action is RejectAction);
        HasRedirectRules = _rules.Any(r => r.Action is RedirectAction or DestinationAction);
        HasUnixMatches = _rules.Any(r => r.MatchesUnixSockets);
    }

    /// <summary>The address reported for peers whose real address is not IP (the original's UNSOCK_ADDR address).</summary>
    public IPAddress FakeAddress => new(_fakeAddress);

    public AcceptConvert AcceptConvert { get; }

    /// <summary>socket(AF_INET) fails with EAFNOSUPPORT (our UNSOCK_BLOCK_INET).</summary>
    public bool BlockInet { get; }

    /// <summary>socket(AF_INET6) fails with EAFNOSUPPORT (the original's UNSOCK_BLOCK_INET6).</summary>
    public bool BlockInet6 { get; }

    /// <summary>The rules in order; the first that matches decides.</summary>
    public IReadOnlyList<PolicyRule> Rules { get; }

    /// <summary>The policy file's path, "environment", or what the constructor was given.</summary>
    public string Source { get; }

    public bool HasRejectRules { get; }

    /// <summary>Whether any rule turns a socket into another one (unix, directory, abstract, vsock, tipc, firecracker, systemd, blackhole).</summary>
    public bool HasRedirectRules { get; }

    /// <summary>Whether any rule matches AF_UNIX sockets (fromUnix, fromAbstract).</summary>
    public bool HasUnixMatches { get; }

    /// <summary>
    /// The first rule that matches a bind or connect of an AF_UNIX socket to <paramref name="name"/> (a path, or an
    /// abstract name without its leading NUL), or null. <paramref name="protocol"/> is Tcp for stream sockets and
    /// Udp for datagram ones. IP rules never match: rules of both kinds are tried in their one order.
    /// </summary>
    public PolicyRule? MatchUnix(RuleDirection direction, RuleProtocol protocol, bool isAbstract, string name)
    {
        foreach (PolicyRule rule in _rules)
        {
            if (rule.MatchesUnix(direction, protocol, isAbstract, name))
            {
                return rule;
            }
        }
        return null;
    }

    /// <summary>The first rule that matches the call, or null when none does (the socket stays TCP/IP).</summary>
    public PolicyRule? Match(RuleDirection direction, RuleProtocol protocol, IPAddress address, int port)
    {
        foreach (PolicyRule rule in _rules)
        {
            if (rule.Matches(direction, protocol, address, port))
            {
                return rule;
            }
        }
        return null;
    }

    public bool Equals(Policy? other) =>
        other is not null
        && _fakeAddress.AsSpan().SequenceEqual(other._fakeAddress)
        && AcceptConvert == other.AcceptConvert
        && BlockInet == other.BlockInet
        && BlockInet6 == other.BlockInet6
        && _rules.SequenceEqual(other._rules);

    public override bool Equals(object? obj) => Equals(obj as Policy);

    public override int GetHashCode() => HashCode.Combine(FakeAddress, AcceptConvert, BlockInet, BlockInet6, _rules.Length);
}
