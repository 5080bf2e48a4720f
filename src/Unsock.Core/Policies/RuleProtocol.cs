namespace Unsock.Core.Policies;

/// <summary>Which transport a rule applies to.</summary>
public enum RuleProtocol
{
    /// <summary>Both TCP and UDP.</summary>
    Any,
    /// <summary>Stream sockets (TCP).</summary>
    Tcp,
    /// <summary>Datagram sockets (UDP).</summary>
    Udp,
}
