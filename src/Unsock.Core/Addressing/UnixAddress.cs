using System.Buffers.Binary;
using System.Text;

namespace Unsock.Core.Addressing;

/// <summary>sockaddr_un encoding. Paths longer than sun_path allows go through /proc/self/fd/DIRFD/NAME.</summary>
public static class UnixAddress
{
    public const int PathOffset = 2;
    public const int MaxPathBytes = 107; // 108 with the terminating NUL
    public const int MaxSize = 110;

    /// <summary>Encodes <paramref name="path"/>; false when it does not fit sun_path.</summary>
    public static bool TryEncode(string path, Span<byte> destination, out int size)
    {
        size = 0;
        int count = Encoding.UTF8.GetByteCount(path);
        if (count > MaxPathBytes || count == 0) return false;
        BinaryPrimitives.WriteUInt16LittleEndian(destination, 1);
        Encoding.UTF8.GetBytes(path, destination[PathOffset..]);
        destination[PathOffset + count] = 0;
        size = PathOffset + count + 1;
        return true;
    }

    /// <summary>The path of a bound sockaddr_un as getsockname returns it, or null if unnamed/abstract.</summary>
    public static string? DecodePath(ReadOnlySpan<byte> sockaddr)
    {
        if (sockaddr.Length <= PathOffset || BinaryPrimitives.ReadUInt16LittleEndian(sockaddr) != 1) return null;
        var path = sockaddr[PathOffset..];
        if (path[0] == 0) return null;
        int nul = path.IndexOf((byte)0);
        return Encoding.UTF8.GetString(nul < 0 ? path : path[..nul]);
    }
}
