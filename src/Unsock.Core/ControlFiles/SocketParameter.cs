using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using static Tmds.Linux.LibC;

namespace Unsock.Core.ControlFiles;

/// <summary>
/// One setsockopt a control file asks for on the socket it redirects to. The value's length is what
/// the original passes as optlen: a 16-byte timeval for SOL_SOCKET SO_RCVTIMEO/SO_SNDTIMEO, a
/// 16-byte tipc_group_req for SOL_TIPC TIPC_GROUP_JOIN, else a 4-byte int.
/// </summary>
public readonly record struct SocketParameter(int Level, int Option, ReadOnlyMemory<byte> Value)
{
    /// <summary>Bytes of one entry in the control file: u32 level, u32 option, 32 bytes value.</summary>
    public const int EntrySize = 40;
    public const int ValueCapacity = 32;

    public const int SolSocket = 1;
    public const int SoReceiveTimeout = 20; // SO_RCVTIMEO (x86_64/arm64 numbering)
    public const int SoSendTimeout = 21;    // SO_SNDTIMEO
    public const int SolTipc = 271;
    public const int TipcGroupJoin = 135;

    /// <summary>The optlen the original uses for this (level, option).</summary>
    public static int ValueLength(int level, int option) => (level, option) switch
    {
        (SolSocket, SoReceiveTimeout or SoSendTimeout) => 16,
        (SolTipc, TipcGroupJoin) => 16,
        _ => 4,
    };

    public static SocketParameter Timeout(int option, TimeSpan timeout)
    {
        if (option is not (SoReceiveTimeout or SoSendTimeout))
        {
            throw new ArgumentOutOfRangeException(nameof(option), option, "a timeout is SO_RCVTIMEO (20) or SO_SNDTIMEO (21)");
        }
        if (timeout < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "a socket timeout cannot be negative");
        }
        var value = new byte[16];
        long microseconds = timeout.Ticks / 10;
        BinaryPrimitives.WriteInt64LittleEndian(value, microseconds / 1_000_000);
        BinaryPrimitives.WriteInt64LittleEndian(value.AsSpan(8), microseconds % 1_000_000);
        return new SocketParameter(SolSocket, option, value);
    }

    public static SocketParameter Int32(int level, int option, int value)
    {
        var bytes = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, value);
        return new SocketParameter(level, option, bytes);
    }

    public static SocketParameter TipcGroup(uint type, uint instance, uint scope, uint flags)
    {
        var bytes = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, type);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), instance);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), scope);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(12), flags);
        return new SocketParameter(SolTipc, TipcGroupJoin, bytes);
    }

    /// <summary>Decodes one 40-byte entry; null when level or option is zero (the original skips those).</summary>
    internal static SocketParameter? Decode(ReadOnlySpan<byte> entry)
    {
        int level = BinaryPrimitives.ReadInt32LittleEndian(entry);
        int option = BinaryPrimitives.ReadInt32LittleEndian(entry[4..]);
        if (level == 0 || option == 0)
        {
            return null;
        }
        return new SocketParameter(level, option, entry.Slice(8, ValueLength(level, option)).ToArray());
    }

    /// <summary>Calls setsockopt on <paramref name="socketFd"/>; returns 0 or the errno.</summary>
    public unsafe int TryApplyTo(int socketFd)
    {
        fixed (byte* value = Value.Span)
        {
            if (setsockopt(socketFd, Level, Option, value, Value.Length) == 0)
            {
                return 0;
            }
            return errno;
        }
    }

    /// <summary>Calls setsockopt on <paramref name="socketFd"/>; throws <see cref="SocketParameterException"/> on failure.</summary>
    public void ApplyTo(int socketFd)
    {
        int error = TryApplyTo(socketFd);
        if (error != 0)
        {
            throw new SocketParameterException(error,
                $"setsockopt({Describe()}) on fd {socketFd} failed: {Marshal.GetPInvokeErrorMessage(error)} (errno {error})");
        }
    }

    /// <summary>"SOL_SOCKET SO_RCVTIMEO 5.5s", "level 6 option 1 = 1".</summary>
    public string Describe()
    {
        string level = Level switch { SolSocket => "SOL_SOCKET", SolTipc => "SOL_TIPC", _ => $"level {Level}" };
        string option = (Level, Option) switch
        {
            (SolSocket, SoReceiveTimeout) => "SO_RCVTIMEO",
            (SolSocket, SoSendTimeout) => "SO_SNDTIMEO",
            (SolTipc, TipcGroupJoin) => "TIPC_GROUP_JOIN",
            _ => $"option {Option}",
        };
        var span = Value.Span;
        string value;
        if (Level == SolSocket && Option is SoReceiveTimeout or SoSendTimeout && span.Length == 16)
        {
            long seconds = BinaryPrimitives.ReadInt64LittleEndian(span);
            long micros = BinaryPrimitives.ReadInt64LittleEndian(span[8..]);
            value = (seconds + micros / 1e6).ToString("0.######", CultureInfo.InvariantCulture) + "s";
        }
        else if (Level == SolTipc && Option == TipcGroupJoin && span.Length == 16)
        {
            value = string.Create(CultureInfo.InvariantCulture,
                $"type {BinaryPrimitives.ReadUInt32LittleEndian(span)}, instance {BinaryPrimitives.ReadUInt32LittleEndian(span[4..])}, scope {BinaryPrimitives.ReadUInt32LittleEndian(span[8..])}, flags {BinaryPrimitives.ReadUInt32LittleEndian(span[12..])}");
        }
        else if (span.Length == 4)
        {
            value = BinaryPrimitives.ReadInt32LittleEndian(span).ToString(CultureInfo.InvariantCulture);
        }
        else
        {
            value = Convert.ToHexString(span);
        }
        return $"{level} {option} = {value}";
    }
}

/// <summary>A setsockopt from a control file failed; <see cref="Errno"/> is what the kernel said.</summary>
public sealed class SocketParameterException(int errno, string message) : IOException(message)
{
    public int Errno { get; } = errno;
}
