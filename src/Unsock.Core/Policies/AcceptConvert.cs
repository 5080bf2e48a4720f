namespace Unsock.Core.Policies;

/// <summary>
/// Which accepted connections report an IPv4/IPv6 peer from <c>accept</c> instead of their AF_UNIX (or
/// VSOCK, TIPC) one. Whatever the value, <c>getpeername</c> of an accepted connection reports one.
/// </summary>
public enum AcceptConvert
{
    /// <summary>accept reports the real (AF_UNIX) peer.</summary>
    None,
    /// <summary>Every listener we converted, and VSOCK peers (the original's UNSOCK_ACCEPT_CONVERT_ALL).</summary>
    All,
    /// <summary>Only listeners converted to VSOCK (the original's UNSOCK_ACCEPT_CONVERT_VSOCK).</summary>
    Vsock,
    /// <summary>Every listener we converted, as the original always did: the default.</summary>
    Converted,
}
