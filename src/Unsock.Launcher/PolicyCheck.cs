using System.Globalization;
using System.Net;
using System.Text;
using Unsock.Core.Policies;

namespace Unsock.Launcher;

/// <summary>
/// <c>unsock-launch --check [--policy FILE]</c>: validates the policy without running anything and shows what it
/// does for a few example calls (each rule's own example, and common ones), as ip2unix's -c does.
/// </summary>
internal static class PolicyCheck
{
    /// <summary>True when --check is among the launcher's own options (not an argument of the command after them).</summary>
    public static bool IsRequested(string[] args)
    {
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (a == "--check") return true;
            if (a == "--" || !a.StartsWith('-') || a == "-") return false;
            if (a == "--policy") i++;
        }
        return false;
    }

    /// <summary>0 when the policy is valid (the examples on stdout); 2 with the reason when it is not.</summary>
    public static int Run(string[] args, IReadOnlyDictionary<string, string> env, TextWriter stdout, TextWriter stderr)
    {
        string? path = null;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--check" or "-v" or "--verbose":
                    break;
                case "--policy" when i + 1 < args.Length:
                    path = args[++i];
                    break;
                case var a when a.StartsWith("--policy=", StringComparison.Ordinal):
                    path = a["--policy=".Length..];
                    break;
                default:
                    stderr.WriteLine($"unsock-launch: --check takes only --policy FILE, not '{args[i]}' (nothing is run)");
                    return 2;
            }
        }
        Policy policy;
        try
        {
            policy = path is null ? Policy.FromEnvironment(env) : Policy.Load(path);
        }
        catch (PolicyException e)
        {
            stderr.WriteLine($"unsock-launch: {e.Message}");
            return 2;
        }
        stdout.Write(Describe(policy));
        return 0;
    }

    /// <summary>The report: the policy's settings, each rule with an example call it decides, then common calls.</summary>
    internal static string Describe(Policy policy)
    {
        var text = new StringBuilder();
        text.AppendLine($"{policy.Source}: valid policy, {policy.Rules.Count} rule{(policy.Rules.Count == 1 ? "" : "s")}");
        text.AppendLine($"  fakeAddress {policy.FakeAddress}, acceptConvert {policy.AcceptConvert.ToString().ToLowerInvariant()}" +
                        $"{(policy.BlockInet ? ", socket(AF_INET) fails with EAFNOSUPPORT" : "")}{(policy.BlockInet6 ? ", socket(AF_INET6) fails with EAFNOSUPPORT" : "")}");
        foreach (var rule in policy.Rules)
        {
            text.AppendLine($"rules[{rule.Index}]: {Matches(rule)} -> {Action(rule.Action, rule)}");
            foreach (var call in ExamplesOf(rule)) text.AppendLine("  " + Outcome(policy, call));
        }
        text.AppendLine("common calls:");
        foreach (var call in CommonCalls) text.AppendLine("  " + Outcome(policy, call));
        return text.ToString();
    }

    private sealed record Call(RuleDirection Direction, RuleProtocol Protocol, IPAddress? Address, int Port, string? UnixName = null, bool Abstract = false)
    {
        public override string ToString()
        {
            string verb = Direction == RuleDirection.Bind ? "bind" : "connect";
            if (UnixName is not null) return $"{verb} {(Protocol == RuleProtocol.Udp ? "unix datagram" : "unix")} {(Abstract ? "@" : "")}{UnixName}";
            string where = Address!.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{Address}]:{Port}" : $"{Address}:{Port}";
            return $"{verb} {(Protocol == RuleProtocol.Udp ? "udp" : "tcp")} {where}";
        }
    }

    private static readonly Call[] CommonCalls =
    [
        new(RuleDirection.Bind, RuleProtocol.Tcp, IPAddress.Loopback, 8080),
        new(RuleDirection.Bind, RuleProtocol.Tcp, IPAddress.IPv6Loopback, 8080),
        new(RuleDirection.Bind, RuleProtocol.Tcp, IPAddress.Any, 0),
        new(RuleDirection.Connect, RuleProtocol.Tcp, IPAddress.Loopback, 80),
        new(RuleDirection.Connect, RuleProtocol.Tcp, IPAddress.Parse("93.184.216.34"), 443),
        new(RuleDirection.Connect, RuleProtocol.Udp, IPAddress.Loopback, 53),
        new(RuleDirection.Connect, RuleProtocol.Tcp, null, 0, "/var/run/docker.sock"),
    ];

    private static IEnumerable<Call> ExamplesOf(PolicyRule rule)
    {
        var directions = rule.Direction == RuleDirection.Any ? [RuleDirection.Bind, RuleDirection.Connect] : new[] { rule.Direction };
        var protocol = rule.Protocol == RuleProtocol.Udp ? RuleProtocol.Udp : RuleProtocol.Tcp;
        foreach (var direction in directions)
        {
            if (rule.FromUnix is { } fromUnix) yield return new Call(direction, protocol, null, 0, ExampleOf(fromUnix.Pattern));
            else if (rule.FromAbstract is { } fromAbstract) yield return new Call(direction, protocol, null, 0, ExampleOf(fromAbstract.Pattern), Abstract: true);
            else yield return new Call(direction, protocol, ExampleAddress(rule.Address), rule.Port?.First ?? 8080);
        }
    }

    /// <summary>A name a glob matches: '**' a directory, '*' and '?' one letter, escapes taken literally.</summary>
    private static string ExampleOf(string pattern)
    {
        var name = new StringBuilder();
        for (int i = 0; i < pattern.Length; i++)
        {
            char c = pattern[i];
            if (c == '\\' && i + 1 < pattern.Length) name.Append(pattern[++i]);
            else if (c == '*' && i + 1 < pattern.Length && pattern[i + 1] == '*') { name.Append("a/b"); while (i + 1 < pattern.Length && pattern[i + 1] == '*') i++; }
            else if (c is '*' or '?') name.Append('x');
            else if (c == '[' && pattern.IndexOf(']', i + 2) is int end and > 0)
            {
                // The class's first character, unless it is negated (then one it most likely leaves out).
                name.Append(pattern[i + 1] == '!' ? '~' : pattern[i + 1]);
                i = end;
            }
            else name.Append(c);
        }
        return name.ToString();
    }

    /// <summary>Loopback when the network holds it (or the rule takes any address), else the network's first host.</summary>
    private static IPAddress ExampleAddress(IPNetwork? network)
    {
        if (network is not { } n) return IPAddress.Loopback;
        foreach (var loopback in new[] { IPAddress.Loopback, IPAddress.IPv6Loopback })
            if (n.BaseAddress.AddressFamily == loopback.AddressFamily && n.Contains(loopback)) return loopback;
        byte[] bytes = n.BaseAddress.GetAddressBytes();
        if (n.PrefixLength < bytes.Length * 8) bytes[^1] |= 1;
        return new IPAddress(bytes);
    }

    private static string Outcome(Policy policy, Call call)
    {
        PolicyRule? rule = call.UnixName is not null
            ? policy.MatchUnix(call.Direction, call.Protocol, call.Abstract, call.UnixName)
            : policy.Match(call.Direction, call.Protocol, call.Address!, call.Port);
        if (rule is null)
            return $"{call}: no rule matches: {(call.UnixName is null ? (Guarded(policy) ? "carried out as made (TCP/IP)" : "left to the kernel (TCP/IP)") : "left as made")}";
        return $"{call}: rules[{rule.Index}]: {Action(rule.Action, rule, call)}";
    }

    private static bool Guarded(Policy policy) => policy.HasRejectRules || policy.BlockInet || policy.BlockInet6;

    private static string Action(RuleAction action, PolicyRule rule, Call? call = null)
    {
        string mode = rule.Mode is int m ? $", mode {Convert.ToString(m, 8).PadLeft(4, '0')}" : "";
        string kept = rule.NoRemove ? ", file kept after close" : "";
        return action switch
        {
            UnixAction unix when call is { UnixName: not null } || rule.MatchesUnixSockets => $"unix socket {unix.ResolveFixedPath()}{mode}{kept}",
            UnixAction unix when call is { Address: { } a } => $"unix socket {unix.ResolvePath(a, call.Port, call.Protocol)}{mode}{kept}",
            UnixAction unix => $"unix socket {unix.Template}{mode}{kept}",
            DirectoryAction directory when call is { Address: { } a } => $"unix socket {directory.ResolvePath(a, call.Port, call.Protocol)}{mode}{kept}",
            DirectoryAction directory => $"unix socket {directory.Directory}/<port>.sock{mode}{kept}",
            AbstractAction abstractName when call is { Address: { } a } => $"abstract unix socket @{abstractName.ResolveName(a, call.Port, call.Protocol)}",
            AbstractAction abstractName => $"abstract unix socket @{(rule.MatchesUnixSockets ? abstractName.ResolveFixedName() : abstractName.Template)}",
            BlackholeAction => "blackhole (bound where nobody can reach it)",
            SystemdAction { Name: null } => "the next socket passed by systemd (LISTEN_FDS)",
            SystemdAction systemd => $"the socket named \"{systemd.Name}\" passed by systemd (LISTEN_FDNAMES)",
            VsockAction or TipcAction or FirecrackerAction when call?.Direction == RuleDirection.Bind && action is FirecrackerAction =>
                $"{action}: fails with EINVAL (one cannot listen through the proxy)",
            VsockAction or TipcAction or FirecrackerAction => action.ToString()!,
            RejectAction reject => $"fails with {reject.Name} ({reject.Errno.ToString(CultureInfo.InvariantCulture)})",
            AllowAction => "left as made (allow)",
            _ => action.ToString()!,
        };
    }

    private static string Matches(PolicyRule rule)
    {
        string direction = rule.Direction switch { RuleDirection.Bind => "bind", RuleDirection.Connect => "connect", _ => "bind and connect" };
        string protocol = rule.Protocol switch { RuleProtocol.Tcp => "tcp", RuleProtocol.Udp => "udp", _ => "tcp and udp" };
        if (rule.FromUnix is { } fromUnix) return $"{direction} of unix sockets at {fromUnix.Pattern}";
        if (rule.FromAbstract is { } fromAbstract) return $"{direction} of abstract unix sockets @{fromAbstract.Pattern}";
        string address = rule.Address is { } n ? n.ToString() : "any address";
        string port = rule.Port is { } p ? $"port {p}" : "any port";
        return $"{direction}, {protocol}, {address}, {port}";
    }
}
