using System.Globalization;
using System.Net;
using System.Text;

namespace Unsock.Core.Policies;

/// <summary>What happens to a socket call that a rule matches; every rule has exactly one action.</summary>
public abstract record RuleAction;

/// <summary>An action that turns the socket into an AF_UNIX socket at a path computed from the address.</summary>
public abstract record RedirectAction : RuleAction
{
    /// <summary>The AF_UNIX path for a socket call to <paramref name="address"/>:<paramref name="port"/>.</summary>
    /// <param name="protocol">The socket's transport, <see cref="RuleProtocol.Tcp"/> or <see cref="RuleProtocol.Udp"/>.</param>
    public abstract string ResolvePath(IPAddress address, int port, RuleProtocol protocol);

    private protected static void CheckArguments(IPAddress address, int port, RuleProtocol protocol)
    {
        ArgumentNullException.ThrowIfNull(address);
        ArgumentOutOfRangeException.ThrowIfNegative(port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, PortRange.MaxPort);
        if (protocol is not (RuleProtocol.Tcp or RuleProtocol.Udp))
        {
            throw new ArgumentOutOfRangeException(nameof(protocol), protocol, "a socket is either TCP or UDP");
        }
    }
}

/// <summary>
/// Redirect to the path that <see cref="Template"/> expands to: <c>%p</c> port, <c>%a</c> address,
/// <c>%t</c> "tcp" or "udp", <c>%%</c> a percent sign.
/// </summary>
public sealed record UnixAction : RedirectAction
{
    public UnixAction(string template)
    {
        ArgumentNullException.ThrowIfNull(template);
        if (CheckTemplate(template) is string problem)
        {
            throw new ArgumentException($"\"{template}\" {problem}", nameof(template));
        }
        Template = template;
    }

    public string Template { get; }

    public override string ResolvePath(IPAddress address, int port, RuleProtocol protocol)
    {
        CheckArguments(address, port, protocol);
        return Expand(Template, address, port, protocol);
    }

    /// <summary>The path of a <c>fromUnix</c> rule, whose template has no placeholders but <c>%%</c>.</summary>
    public string ResolveFixedPath() => Template.Replace("%%", "%", StringComparison.Ordinal);

    /// <summary>True when the template uses %p, %a or %t (which a Unix socket call has nothing for).</summary>
    public bool HasPlaceholders => HasAddressPlaceholders(Template);

    internal static bool HasAddressPlaceholders(string template)
    {
        for (int i = 0; i + 1 < template.Length; i++)
        {
            if (template[i] != '%') continue;
            if (template[++i] != '%') return true;
        }
        return false;
    }

    /// <summary>Expands %p, %a, %t and %% in a template that <see cref="CheckTemplate"/> accepted.</summary>
    internal static string Expand(string template, IPAddress address, int port, RuleProtocol protocol)
    {
        var path = new StringBuilder(template.Length + 16);
        for (int i = 0; i < template.Length; i++)
        {
            char c = template[i];
            if (c != '%')
            {
                path.Append(c);
                continue;
            }
            // CheckTemplate guarantees a known placeholder follows every '%'.
            switch (template[++i])
            {
                case 'p':
                    path.Append(port.ToString(CultureInfo.InvariantCulture));
                    break;
                case 'a':
                    path.Append(AddressNotation.FormatUnmapped(address));
                    break;
                case 't':
                    path.Append(protocol == RuleProtocol.Tcp ? "tcp" : "udp");
                    break;
                default:
                    path.Append('%');
                    break;
            }
        }
        return path.ToString();
    }

    /// <summary>Null if <paramref name="template"/> is usable, else the problem, to follow the quoted template.</summary>
    internal static string? CheckTemplate(string template) =>
        template.StartsWith('/') ? CheckPlaceholders(template) : "is not an absolute path (it must start with '/')";

    /// <summary>Null if every '%' of <paramref name="template"/> starts a known placeholder and there is no NUL.</summary>
    internal static string? CheckPlaceholders(string template)
    {
        if (template.Contains('\0'))
        {
            return "contains a NUL character";
        }
        for (int i = 0; i < template.Length; i++)
        {
            if (template[i] != '%')
            {
                continue;
            }
            if (i + 1 == template.Length)
            {
                return "ends with a lone '%' (write %% for a percent sign)";
            }
            char next = template[++i];
            if (next is not ('p' or 'a' or 't' or '%'))
            {
                return $"has the unknown placeholder \"%{next}\" (known: %p port, %a address, %t protocol, %% percent sign)";
            }
        }
        return null;
    }
}

/// <summary>The original unsock layout: <c>&lt;Directory&gt;/&lt;port&gt;.sock</c>.</summary>
public sealed record DirectoryAction : RedirectAction
{
    public DirectoryAction(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (CheckDirectory(directory) is string problem)
        {
            throw new ArgumentException($"\"{directory}\" {problem}", nameof(directory));
        }
        Directory = directory;
    }

    public string Directory { get; }

    public override string ResolvePath(IPAddress address, int port, RuleProtocol protocol)
    {
        CheckArguments(address, port, protocol);
        return Path.Combine(Directory, $"{port.ToString(CultureInfo.InvariantCulture)}.sock");
    }

    internal static string? CheckDirectory(string directory)
    {
        if (!directory.StartsWith('/'))
        {
            return "is not an absolute path (it must start with '/')";
        }
        if (directory.Contains('\0'))
        {
            return "contains a NUL character";
        }
        return null;
    }
}

/// <summary>Fail the call with <see cref="Errno"/>; <see cref="Name"/> is its symbolic name (or the number as text).</summary>
public sealed record RejectAction : RuleAction
{
    public RejectAction(int errno, string name)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(errno, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(errno, ErrnoNames.MaxErrno);
        ArgumentException.ThrowIfNullOrEmpty(name);
        Errno = errno;
        Name = name;
    }

    public int Errno { get; }

    public string Name { get; }

    /// <summary>A reject action for an errno given by number, named by the errno table when it knows the number.</summary>
    public static RejectAction FromNumber(int errno) =>
        new(errno, ErrnoNames.TryGetName(errno, out string? name) ? name : errno.ToString(CultureInfo.InvariantCulture));
}

/// <summary>Leave the socket on TCP/IP and stop looking at further rules.</summary>
public sealed record AllowAction : RuleAction;
