using System.Runtime.InteropServices;
using System.Text.Json;

namespace Unsock.Core.Supervision;

/// <summary>A control-protocol message that could not be sent, received or understood.</summary>
public sealed class ControlChannelException(string message) : Exception(message);

/// <summary>
/// One end of a control-socket connection: sends and receives whole <see cref="ControlRequest"/>/<see cref="ControlReply"/>
/// records, a listener fd riding along by SCM_RIGHTS. Every problem is a <see cref="ControlChannelException"/> in words.
/// </summary>
public sealed class ControlChannel : IDisposable
{
    private const int EMsgSize = 90;
    private int _fd;

    private ControlChannel(int fd, string peer)
    {
        _fd = fd;
        Peer = peer;
    }

    /// <summary>What the other end is, for messages (the socket path, or "launcher pid N").</summary>
    public string Peer { get; }

    public int Fd => _fd;

    /// <summary>Connects to the supervisor listening at <paramref name="path"/>.</summary>
    public static ControlChannel Connect(string path)
    {
        int err = Interop.ControlSocket.Connect(path, out int fd);
        if (err != 0)
        {
            throw new ControlChannelException($"cannot connect to the supervisor at {path}: {Marshal.GetPInvokeErrorMessage(err)}");
        }
        return new ControlChannel(fd, path);
    }

    /// <summary>Whether something accepts connections at <paramref name="path"/> (the launcher's default-socket probe).</summary>
    public static bool IsListening(string path)
    {
        if (Interop.ControlSocket.Connect(path, out int fd) != 0) return false;
        Interop.ControlSocket.Close(fd);
        return true;
    }

    /// <summary>Takes ownership of an accepted connection.</summary>
    public static ControlChannel Adopt(int fd, string peer) => new(fd, peer);

    /// <summary>The peer as the kernel recorded it at connect: pid, uid, gid.</summary>
    public (int Pid, uint Uid, uint Gid) PeerCredentials()
    {
        int err = Interop.ControlSocket.PeerCredentials(_fd, out int pid, out uint uid, out uint gid);
        if (err != 0) throw new ControlChannelException($"cannot read the credentials of {Peer}: {Marshal.GetPInvokeErrorMessage(err)}");
        return (pid, uid, gid);
    }

    /// <summary>A pidfd for the peer (SO_PEERPIDFD), or -1 where the kernel has none; the caller owns it.</summary>
    public int PeerPidfd() => Interop.ControlSocket.PeerPidfd(_fd, out int pidfd) == 0 ? pidfd : -1;

    public void Send(ControlRequest request, int passFd = -1) =>
        SendBytes(JsonSerializer.SerializeToUtf8Bytes(request, ControlJson.Default.ControlRequest), passFd);

    public void Send(ControlReply reply) =>
        SendBytes(JsonSerializer.SerializeToUtf8Bytes(reply, ControlJson.Default.ControlReply), -1);

    /// <summary>Waits up to <paramref name="timeout"/> for the supervisor's reply.</summary>
    public ControlReply ReceiveReply(TimeSpan timeout)
    {
        if (!Interop.ControlSocket.WaitReadable(_fd, (int)Math.Min(int.MaxValue, timeout.TotalMilliseconds)))
        {
            throw new ControlChannelException($"the supervisor at {Peer} did not answer within {timeout.TotalSeconds:0.#} s");
        }
        byte[] record = ReceiveBytes(out int fd);
        Interop.ControlSocket.Close(fd); // a reply carries no fd
        if (record.Length == 0) throw new ControlChannelException($"the supervisor at {Peer} closed the connection without answering");
        return Parse(record, ControlJson.Default.ControlReply, "reply");
    }

    /// <summary>
    /// Receives one request, with the fd it carried (else -1; the caller owns it). Null when the peer has
    /// closed the connection.
    /// </summary>
    public ControlRequest? ReceiveRequest(out int passedFd)
    {
        byte[] record = ReceiveBytes(out passedFd);
        if (record.Length == 0) return null; // SOCK_SEQPACKET: a zero-length read is the peer's close
        try
        {
            var request = Parse(record, ControlJson.Default.ControlRequest, "request");
            if (request.Version == 0) throw new ControlChannelException("the request has no \"version\"");
            if (request.Version != ControlProtocol.Version)
            {
                throw new ControlChannelException($"protocol version {request.Version} is not supported; this supervisor speaks version {ControlProtocol.Version}");
            }
            return request;
        }
        catch
        {
            Interop.ControlSocket.Close(passedFd);
            passedFd = -1;
            throw;
        }
    }

    public void Dispose()
    {
        int fd = Interlocked.Exchange(ref _fd, -1);
        Interop.ControlSocket.Close(fd);
    }

    private void SendBytes(byte[] record, int passFd)
    {
        if (record.Length > ControlProtocol.MaxMessageBytes)
        {
            throw new ControlChannelException($"the message is {record.Length} bytes, more than the {ControlProtocol.MaxMessageBytes} the protocol allows (is the policy that large?)");
        }
        int err = Interop.ControlSocket.Send(_fd, record, passFd);
        if (err != 0) throw new ControlChannelException($"cannot send to {Peer}: {Marshal.GetPInvokeErrorMessage(err)}");
    }

    private byte[] ReceiveBytes(out int passedFd)
    {
        // One byte more than allowed: a record that fills it was too long (and is refused whole).
        byte[] buffer = new byte[ControlProtocol.MaxMessageBytes + 1];
        int n = Interop.ControlSocket.Receive(_fd, buffer, out passedFd);
        if (n == -EMsgSize || n > ControlProtocol.MaxMessageBytes)
        {
            Interop.ControlSocket.Close(passedFd);
            passedFd = -1;
            throw new ControlChannelException($"a message from {Peer} is longer than the {ControlProtocol.MaxMessageBytes} bytes the protocol allows");
        }
        if (n < 0) throw new ControlChannelException($"cannot receive from {Peer}: {Marshal.GetPInvokeErrorMessage(-n)}");
        return buffer.AsSpan(0, n).ToArray();
    }

    private T Parse<T>(byte[] record, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, string what)
    {
        try
        {
            return JsonSerializer.Deserialize(record, type) ?? throw new ControlChannelException($"the {what} from {Peer} is empty (null)");
        }
        catch (JsonException e)
        {
            throw new ControlChannelException($"the {what} from {Peer} is not a valid control message: {e.Message}");
        }
    }
}
