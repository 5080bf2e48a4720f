using System.Net;
using System.Text;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace Unsock.Bench;

/// <summary>
/// An address as the bench takes it: <c>tcp:HOST:PORT</c> or <c>unix:PATH</c>. The sockaddr is built once,
/// so connecting on the hot path allocates nothing.
/// </summary>
internal sealed unsafe class BenchEndpoint
{
    private readonly byte[] _sockaddr;

    public int Family { get; }
    public string Text { get; }

    private BenchEndpoint(int family, byte[] sockaddr, string text)
    {
        Family = family;
        _sockaddr = sockaddr;
        Text = text;
    }

    public static BenchEndpoint Parse(string text)
    {
        if (text.StartsWith("unix:", StringComparison.Ordinal))
        {
            var path = Encoding.UTF8.GetBytes(text[5..]);
            if (path.Length == 0 || path.Length > 107) throw new BenchUsageException($"{text}: a unix path must have 1-107 bytes");
            var sa = new byte[2 + path.Length + 1];
            sa[0] = (byte)AF_UNIX;
            path.CopyTo(sa, 2);
            return new(AF_UNIX, sa, text);
        }
        if (text.StartsWith("tcp:", StringComparison.Ordinal))
        {
            int colon = text.LastIndexOf(':');
            string host = text[4..colon].Trim('[', ']');
            if (colon <= 4 || !IPAddress.TryParse(host, out var ip) || !ushort.TryParse(text[(colon + 1)..], out ushort port))
                throw new BenchUsageException($"{text}: expected tcp:HOST:PORT with a numeric IPv4/IPv6 host");
            byte[] sa;
            int family;
            if (ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork)
            {
                family = AF_INET;
                sa = new byte[16];
                ip.GetAddressBytes().CopyTo(sa, 4);
            }
            else
            {
                family = AF_INET6;
                sa = new byte[28];
                ip.GetAddressBytes().CopyTo(sa, 8);
            }
            sa[0] = (byte)family;
            sa[2] = (byte)(port >> 8);
            sa[3] = (byte)port;
            return new(family, sa, text);
        }
        throw new BenchUsageException($"{text}: an address is tcp:HOST:PORT or unix:PATH");
    }

    public int NewSocket()
    {
        int fd = socket(Family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) throw new BenchIoException("socket", errno);
        return fd;
    }

    /// <summary>A connected socket, or throws.</summary>
    public int Connect()
    {
        int fd = NewSocket();
        int r;
        fixed (byte* p = _sockaddr)
            do r = connect(fd, (sockaddr*)p, (uint)_sockaddr.Length); while (r < 0 && errno == EINTR);
        if (r < 0)
        {
            int e = errno;
            close(fd);
            throw new BenchIoException($"connect {Text}", e);
        }
        return fd;
    }

    /// <summary>A listening socket with a backlog large enough for the scale scenario's storm.</summary>
    public int Listen()
    {
        int fd = NewSocket();
        int one = 1;
        if (Family != AF_UNIX) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(int));
        else File.Delete(Text[5..]);
        fixed (byte* p = _sockaddr)
            if (bind(fd, (sockaddr*)p, (uint)_sockaddr.Length) < 0) throw new BenchIoException($"bind {Text}", errno);
        if (listen(fd, 4096) < 0) throw new BenchIoException($"listen {Text}", errno);
        return fd;
    }
}

internal sealed class BenchUsageException(string message) : Exception(message);

/// <summary>A failed system call (with its errno) or a failed step of the run (errno 0: the text says it all).</summary>
internal sealed class BenchIoException(string what, int errno)
    : Exception(errno == 0 ? what : $"{what}: {System.Runtime.InteropServices.Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");

/// <summary>Blocking whole-buffer I/O on raw fds, retrying EINTR and short transfers.</summary>
internal static unsafe class RawIo
{
    public static void WriteAll(int fd, byte* buf, int count)
    {
        while (count > 0)
        {
            long n = write(fd, buf, (size_t)(ulong)count);
            if (n < 0)
            {
                if (errno == EINTR) continue;
                throw new BenchIoException("write", errno);
            }
            buf += n;
            count -= (int)n;
        }
    }

    /// <summary>Reads up to <paramref name="count"/> bytes; 0 at end of stream.</summary>
    public static int ReadSome(int fd, byte* buf, int count)
    {
        while (true)
        {
            long n = read(fd, buf, (size_t)(ulong)count);
            if (n >= 0) return (int)n;
            if (errno != EINTR) throw new BenchIoException("read", errno);
        }
    }

    public static byte ReadByte(int fd)
    {
        byte b;
        if (ReadSome(fd, &b, 1) != 1) throw new BenchIoException("read: the peer closed the connection before answering", 0);
        return b;
    }

    public static void WriteByte(int fd, byte value) => WriteAll(fd, &value, 1);
}
