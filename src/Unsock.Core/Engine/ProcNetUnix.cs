using System.Globalization;

namespace Unsock.Core.Engine;

/// <summary>
/// /proc/net/unix: the Unix sockets of this network namespace. A quick overview, not a proof: the list
/// is read while sockets come and go and can skip live ones, so absence must be confirmed elsewhere.
/// </summary>
internal static class ProcNetUnix
{
    private const uint AcceptConnection = 0x10000; // __SO_ACCEPTCON in the Flags column

    public readonly record struct Entry(ulong Inode, bool Listening, string? Path);

    /// <summary>The entries, or null when the file cannot be read.</summary>
    public static List<Entry>? Read()
    {
        try
        {
            var entries = new List<Entry>();
            using var reader = new StreamReader("/proc/net/unix");
            reader.ReadLine(); // Num RefCount Protocol Flags Type St Inode Path
            string? line;
            while ((line = reader.ReadLine()) is not null)
            {
                var f = line.Split(' ', 8, StringSplitOptions.RemoveEmptyEntries);
                if (f.Length < 7 || !ulong.TryParse(f[6], NumberStyles.None, CultureInfo.InvariantCulture, out var inode)) continue;
                bool listening = uint.TryParse(f[3], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var flags) && (flags & AcceptConnection) != 0;
                entries.Add(new(inode, listening, f.Length > 7 ? f[7] : null));
            }
            return entries;
        }
        catch (IOException)
        {
            return null;
        }
    }
}
