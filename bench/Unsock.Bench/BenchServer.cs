using static Tmds.Linux.LibC;

namespace Unsock.Bench;

/// <summary>
/// The server of every variant. The first byte a client sends picks what the connection is:
/// 'c' short connection (answer one byte, close), 'p' ping-pong (echo every byte until end of stream),
/// 's' stream (read to end of stream, then answer one byte). A fixed pool of threads blocks in accept,
/// so no thread is created per connection.
/// </summary>
internal static unsafe class BenchServer
{
    public const byte ShortConnection = (byte)'c', PingPong = (byte)'p', Stream = (byte)'s';
    private const int StreamBuffer = 256 * 1024;

    public static int Serve(BenchEndpoint endpoint, int threads, string? readyFile)
    {
        StartAccepting(endpoint.Listen(), threads);
        Ready(readyFile);
        Thread.Sleep(Timeout.Infinite);
        return 0;
    }

    /// <summary>Listens and never accepts: connections stay in the backlog (the scale scenario's idle targets).</summary>
    public static int ListenOnly(BenchEndpoint endpoint, string? readyFile)
    {
        endpoint.Listen();
        Ready(readyFile);
        Thread.Sleep(Timeout.Infinite);
        return 0;
    }

    /// <summary>Serves <paramref name="listener"/> on <paramref name="threads"/> background threads.</summary>
    public static void StartAccepting(int listener, int threads)
    {
        for (int i = 0; i < threads; i++)
            new Thread(() => AcceptLoop(listener), 256 * 1024) { IsBackground = true, Name = "bench-accept" }.Start();
    }

    private static void Ready(string? readyFile)
    {
        if (readyFile is not null) File.WriteAllText(readyFile, Environment.ProcessId.ToString());
    }

    private static void AcceptLoop(int listener)
    {
        byte* buffer = (byte*)System.Runtime.InteropServices.NativeMemory.Alloc(StreamBuffer);
        while (true)
        {
            int fd = accept4(listener, null, null, SOCK_CLOEXEC);
            if (fd < 0)
            {
                int e = errno;
                if (e == EINTR || e == ECONNABORTED || e == EMFILE || e == ENFILE) continue;
                Console.Error.WriteLine(new BenchIoException("accept", e).Message);
                return;
            }
            try
            {
                Handle(fd, buffer);
            }
            catch (BenchIoException)
            {
                // A client that went away mid-exchange costs only its connection.
            }
            finally
            {
                close(fd);
            }
        }
    }

    private static void Handle(int fd, byte* buffer)
    {
        if (RawIo.ReadSome(fd, buffer, 1) != 1) return;
        switch (buffer[0])
        {
            case ShortConnection:
                RawIo.WriteByte(fd, 1);
                break;
            case PingPong:
                RawIo.WriteByte(fd, 1);
                while (RawIo.ReadSome(fd, buffer, 1) == 1) RawIo.WriteAll(fd, buffer, 1);
                break;
            case Stream:
                while (RawIo.ReadSome(fd, buffer, StreamBuffer) > 0) { }
                RawIo.WriteByte(fd, 1);
                break;
        }
    }
}
