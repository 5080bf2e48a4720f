namespace Unsock.Core.ControlFiles;

/// <summary>Where a control file sends the connection.</summary>
public enum ControlFileKind
{
    /// <summary>Bind or connect an AF_VSOCK socket to the destination.</summary>
    Vsock,
    /// <summary>Bind or connect an AF_TIPC socket to the destination.</summary>
    Tipc,
    /// <summary>Connect to a Firecracker vsock multiplexer (AF_UNIX) and ask it for a guest port.</summary>
    FirecrackerProxy,
    /// <summary>A destination family we do not know; still preserved byte for byte.</summary>
    Other,
}
