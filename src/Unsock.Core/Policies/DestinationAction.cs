using System.Globalization;
using System.Net;
using System.Text;
using Unsock.Core.ControlFiles;

namespace Unsock.Core.Policies;

/// <summary>
/// An action that gives the program another socket than a file-system AF_UNIX one: an abstract-namespace
/// socket, a VSOCK/TIPC socket, a Firecracker proxy connection, a socket passed by systemd, or a bound
/// socket nobody can reach. These apply to stream (TCP) sockets; a UDP socket goes on to the next rule.
/// </summary>
public abstract record DestinationAction : RuleAction
{
    /// <summary>Whether the action means something for a <c>connect</c> (blackhole and systemd are for bind only).</summary>
    public virtual bool Connects => true;
}

/// <summary>Bind succeeds on a socket that nobody can reach (its file is removed at once); connects skip the rule.</summary>
public sealed record BlackholeAction : DestinationAction
{
    public override bool Connects => false;
}

/// <summary>
/// An abstract-namespace AF_UNIX socket named by <see cref="Template"/> (placeholders as for <c>unix</c>). No file:
/// file-system permissions do not apply, anyone in the network namespace may connect.
/// </summary>
public sealed record AbstractAction : DestinationAction
{
    /// <summary>sun_path holds 108 bytes, the first of which is the NUL that makes a name abstract.</summary>
    public const int MaxNameBytes = 107;

    public AbstractAction(string template)
    {
        ArgumentNullException.ThrowIfNull(template);
        if (CheckTemplate(template) is string problem)
        {
            throw new ArgumentException($"\"{template}\" {problem}", nameof(template));
        }
        Template = template;
    }

    public string Template { get; }

    /// <summary>The abstract name (without the leading NUL) for a call to <paramref name="address"/>:<paramref name="port"/>.</summary>
    public string ResolveName(IPAddress address, int port, RuleProtocol protocol) =>
        UnixAction.Expand(Template, address, port, protocol);

    /// <summary>The name of a <c>fromUnix</c>/<c>fromAbstract</c> rule, whose template has no placeholders but <c>%%</c>.</summary>
    public string ResolveFixedName() => Template.Replace("%%", "%", StringComparison.Ordinal);

    public bool HasPlaceholders => UnixAction.HasAddressPlaceholders(Template);

    internal static string? CheckTemplate(string template)
    {
        if (template.Length == 0) return "is empty; an abstract socket needs a name";
        if (UnixAction.CheckPlaceholders(template) is string problem) return problem;
        // With placeholders the length is known only per call (the bind or connect then fails with ENAMETOOLONG).
        int bytes = Encoding.UTF8.GetByteCount(template.Replace("%%", "%", StringComparison.Ordinal));
        if (!UnixAction.HasAddressPlaceholders(template) && bytes > MaxNameBytes) return $"is {bytes} bytes long; an abstract name is at most {MaxNameBytes}";
        return null;
    }
}

/// <summary>An AF_VSOCK socket: bind at <see cref="Port"/> (on <see cref="Cid"/>), or connect to <see cref="Cid"/>:<see cref="Port"/>.</summary>
public sealed record VsockAction(uint Cid, uint Port) : DestinationAction
{
    /// <summary>The same destination as a control file would give (its bytes are what bind/connect take).</summary>
    public ControlFile ToControlFile() => ControlFile.ForVsock(Port, Cid);

    public override string ToString() => new VsockAddress(Port, Cid).ToString();
}

/// <summary>An AF_TIPC socket at the given address (the UNSOCK_TIPC_* values of a control file).</summary>
public sealed record TipcAction(byte AddrType, sbyte Scope, uint Type, uint Lower, uint Upper) : DestinationAction
{
    public ControlFile ToControlFile() => ControlFile.ForTipc(AddrType, Scope, Type, Lower, Upper);

    public override string ToString() => new TipcAddress(AddrType, Scope, Type, Lower, Upper).ToString();
}

/// <summary>A connection through a Firecracker vsock multiplexer at <see cref="Socket"/> to guest port <see cref="Port"/>; bind fails with EINVAL.</summary>
public sealed record FirecrackerAction : DestinationAction
{
    public FirecrackerAction(string socket, uint port)
    {
        ArgumentNullException.ThrowIfNull(socket);
        if (CheckSocket(socket) is string problem)
        {
            throw new ArgumentException($"\"{socket}\" {problem}", nameof(socket));
        }
        Socket = socket;
        Port = port;
    }

    public string Socket { get; }

    public uint Port { get; }

    public ControlFile ToControlFile() => ControlFile.ForFirecracker(Socket, Port);

    internal static string? CheckSocket(string socket)
    {
        if (!socket.StartsWith('/')) return "is not an absolute path (it must start with '/')";
        if (socket.Contains('\0')) return "contains a NUL character";
        int bytes = Encoding.UTF8.GetByteCount(socket);
        if (bytes > 108) return $"is {bytes} bytes long; a Firecracker socket path is at most 108 bytes (it is stored in a sockaddr_un)";
        return null;
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"Firecracker proxy {Socket}, guest port {Port}");
}

/// <summary>
/// Bind takes a listening socket that systemd passed to the program (LISTEN_FDS, LISTEN_FDNAMES): the one named
/// <see cref="Name"/>, or without a name the next one not yet taken, in order. Connects skip the rule.
/// </summary>
public sealed record SystemdAction(string? Name) : DestinationAction
{
    public override bool Connects => false;
}
