namespace Unsock.Core.Policies;

/// <summary>
/// Which peer addresses <c>accept</c>/<c>getpeername</c> report as the policy's fake IPv4/IPv6 address
/// (the original's UNSOCK_ACCEPT_CONVERT_ALL / UNSOCK_ACCEPT_CONVERT_VSOCK).
/// </summary>
public enum AcceptConvert
{
    /// <summary>Peers of redirected sockets only; other families are reported as they are.</summary>
    None,
    /// <summary>Every peer address that is not AF_INET.</summary>
    All,
    /// <summary>AF_VSOCK peers.</summary>
    Vsock,
}
