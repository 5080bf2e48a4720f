using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace Unsock.Core.ControlFiles;

/// <summary>
/// The client half of Firecracker's host-initiated vsock protocol: on a socket connected to the
/// multiplexer's AF_UNIX path, send <c>CONNECT &lt;port&gt;\n</c> and expect one line starting with
/// <c>OK </c> (e.g. <c>OK 1073741824\n</c>); after it the stream is the guest's port.
/// </summary>
public static class FirecrackerHandshake
{
    /// <summary>The original reads at most this many bytes, newline included, before giving up.</summary>
    public const int MaxReplyLength = 15;

    private static readonly TimeSpan CancellationCheckInterval = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// Runs the handshake on <paramref name="connectedFd"/> (blocking or non-blocking) within
    /// <paramref name="timeout"/> (<see cref="Timeout.InfiniteTimeSpan"/>: no limit); <paramref name="cancelled"/>
    /// is polled at least every 100 ms.
    /// Throws <see cref="FirecrackerHandshakeException"/>: ECONNREFUSED for a reply that is not OK or
    /// end of stream, ETIMEDOUT on timeout, EINTR when cancelled, the errno of a failed send/recv/poll.
    /// Reads byte by byte so nothing after the reply line is consumed.
    /// </summary>
    public static void Run(int connectedFd, uint port, TimeSpan timeout, Func<bool>? cancelled = null)
    {
        double ticks = timeout.TotalSeconds * Stopwatch.Frequency;
        long deadline = timeout == Timeout.InfiniteTimeSpan || ticks >= long.MaxValue / 2
            ? long.MaxValue
            : Stopwatch.GetTimestamp() + (long)ticks;
        byte[] request = Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"CONNECT {port}\n"));
        string requestText = $"CONNECT {port}";

        int sent = 0;
        while (sent < request.Length)
        {
            int n = Send(connectedFd, request.AsSpan(sent));
            if (n >= 0)
            {
                sent += n;
                continue;
            }
            int error = -n;
            if (error == EINTR)
            {
                continue;
            }
            if (error != EAGAIN && error != EWOULDBLOCK)
            {
                throw Failure(error, $"sending '{requestText}' to the Firecracker proxy failed: {Marshal.GetPInvokeErrorMessage(error)}");
            }
            Wait(connectedFd, POLLOUT, deadline, timeout, cancelled, $"sending '{requestText}'", ReadOnlySpan<byte>.Empty);
        }

        var reply = new FirecrackerReply(port);
        while (!reply.ReadAvailable(connectedFd))
            Wait(connectedFd, POLLIN, deadline, timeout, cancelled, $"waiting for the reply to '{requestText}'", reply.SoFar);
    }

    /// <summary>Sends <c>CONNECT &lt;port&gt;\n</c> without waiting; 0, or the errno (EAGAIN when it did not fit at once).</summary>
    public static int SendRequest(int connectedFd, uint port)
    {
        byte[] request = Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"CONNECT {port}\n"));
        int n = Send(connectedFd, request);
        return n == request.Length ? 0 : n < 0 ? -n : EAGAIN;
    }

    /// <summary>Reads what has already arrived of a bad reply, up to its newline, so the error can show it.</summary>
    internal static int DrainAvailable(int fd, Span<byte> rest)
    {
        int count = 0;
        while (count < rest.Length)
        {
            if (ReceiveByte(fd, out byte b) <= 0)
            {
                break;
            }
            rest[count++] = b;
            if (b == (byte)'\n')
            {
                break;
            }
        }
        return count;
    }

    private static unsafe int Send(int fd, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
        {
            // MSG_DONTWAIT: never block, whatever the fd's mode; MSG_NOSIGNAL: EPIPE instead of SIGPIPE.
            long n = send(fd, p, (size_t)data.Length, MSG_DONTWAIT | MSG_NOSIGNAL);
            return n >= 0 ? (int)n : -errno;
        }
    }

    internal static unsafe int ReceiveByte(int fd, out byte b)
    {
        byte value;
        long n = recv(fd, &value, 1, MSG_DONTWAIT);
        b = value;
        return n >= 0 ? (int)n : -errno;
    }

    private static unsafe void Wait(int fd, short events, long deadline, TimeSpan timeout, Func<bool>? cancelled, string doing, ReadOnlySpan<byte> replySoFar)
    {
        while (true)
        {
            if (cancelled?.Invoke() == true)
            {
                throw Failure(EINTR, $"cancelled while {doing} from the Firecracker proxy");
            }
            long remaining = deadline - Stopwatch.GetTimestamp();
            if (remaining <= 0)
            {
                throw Failure(ETIMEDOUT, $"the Firecracker proxy did not answer within {timeout.TotalMilliseconds:0} ms while {doing}"
                    + (replySoFar.IsEmpty ? "" : $" (reply so far {Quote(replySoFar)})"));
            }
            int sliceMs = (int)Math.Min(CancellationCheckInterval.TotalMilliseconds,
                Math.Ceiling(remaining * 1000.0 / Stopwatch.Frequency));
            pollfd pfd = default;
            pfd.fd = fd;
            pfd.events = events;
            int ready = poll(&pfd, 1, sliceMs);
            if (ready < 0)
            {
                int error = errno;
                if (error == EINTR)
                {
                    continue;
                }
                throw Failure(error, $"poll on the Firecracker proxy socket failed while {doing}: {Marshal.GetPInvokeErrorMessage(error)}");
            }
            if (ready > 0)
            {
                return; // readable, writable, or an error/hangup the next recv/send reports
            }
        }
    }

    internal static string Quote(ReadOnlySpan<byte> bytes)
    {
        var text = new StringBuilder("\"");
        foreach (byte b in bytes)
        {
            text.Append(b switch
            {
                (byte)'\n' => "\\n",
                (byte)'\r' => "\\r",
                (byte)'"' => "\\\"",
                (byte)'\\' => "\\\\",
                >= 0x20 and < 0x7f => ((char)b).ToString(),
                _ => $"\\x{b:x2}",
            });
        }
        return text.Append('"').ToString();
    }

    internal static FirecrackerHandshakeException Failure(int errno, string message)
        => new(errno, $"{message} (errno {errno}, {Marshal.GetPInvokeErrorMessage(errno)})");
}

/// <summary>
/// The proxy's reply line, read as it arrives (for callers that wait on a poller rather than in
/// <see cref="FirecrackerHandshake.Run"/>). Reads byte by byte so nothing after the line is consumed.
/// </summary>
public sealed class FirecrackerReply(uint port)
{
    private readonly byte[] _reply = new byte[FirecrackerHandshake.MaxReplyLength];
    private int _length;

    public ReadOnlySpan<byte> SoFar => _reply.AsSpan(0, _length);

    /// <summary>
    /// Reads what has arrived on <paramref name="fd"/> without waiting: true once the OK line is complete,
    /// false when more must arrive. Throws <see cref="FirecrackerHandshakeException"/> (ECONNREFUSED for a reply
    /// that is not OK or end of stream, the errno of a failed recv).
    /// </summary>
    public bool ReadAvailable(int fd)
    {
        string requestText = $"CONNECT {port}";
        while (true)
        {
            int n = FirecrackerHandshake.ReceiveByte(fd, out byte b);
            if (n == 0)
            {
                throw FirecrackerHandshake.Failure(ECONNREFUSED, $"the Firecracker proxy closed the connection after '{requestText}'"
                    + (_length == 0 ? " without a reply" : $" in the middle of its reply {FirecrackerHandshake.Quote(SoFar)}"));
            }
            if (n < 0)
            {
                int error = -n;
                if (error == EINTR) continue;
                if (error == EAGAIN || error == EWOULDBLOCK) return false;
                throw FirecrackerHandshake.Failure(error, $"reading the Firecracker proxy's reply to '{requestText}' failed after {FirecrackerHandshake.Quote(SoFar)}: {Marshal.GetPInvokeErrorMessage(error)}");
            }
            _reply[_length++] = b;
            bool fits = _length switch
            {
                1 => b == (byte)'O',
                2 => b == (byte)'K',
                3 => b == (byte)' ',
                _ => true,
            };
            if (!fits)
            {
                if (b != (byte)'\n') _length += FirecrackerHandshake.DrainAvailable(fd, _reply.AsSpan(_length));
                throw FirecrackerHandshake.Failure(ECONNREFUSED, $"the Firecracker proxy refused '{requestText}': it replied {FirecrackerHandshake.Quote(SoFar)}, expected 'OK <port>'");
            }
            if (b == (byte)'\n' && _length > 3) return true;
            if (_length == FirecrackerHandshake.MaxReplyLength)
                throw FirecrackerHandshake.Failure(ECONNREFUSED, $"the Firecracker proxy's reply to '{requestText}' has no newline within {FirecrackerHandshake.MaxReplyLength} bytes: {FirecrackerHandshake.Quote(SoFar)}");
        }
    }
}

/// <summary>The Firecracker handshake failed; <see cref="Errno"/> is what the redirected connect should fail with.</summary>
public sealed class FirecrackerHandshakeException(int errno, string message) : IOException(message)
{
    public int Errno { get; } = errno;
}
