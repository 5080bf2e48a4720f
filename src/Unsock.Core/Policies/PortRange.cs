namespace Unsock.Core.Policies;

/// <summary>An inclusive range of TCP/UDP ports; a single port is a range of one.</summary>
public readonly record struct PortRange
{
    public PortRange(int first, int last)
    {
        if (first < 0 || first > MaxPort)
        {
            throw new ArgumentOutOfRangeException(nameof(first), first, "a port is 0-65535");
        }
        if (last < first || last > MaxPort)
        {
            throw new ArgumentOutOfRangeException(nameof(last), last, "the last port must be first-65535");
        }
        First = first;
        Last = last;
    }

    public const int MaxPort = 65535;

    public int First { get; }

    public int Last { get; }

    public bool Contains(int port) => port >= First && port <= Last;

    /// <summary>"8000" for a single port, "5000-5999" for a range.</summary>
    public override string ToString() => First == Last ? $"{First}" : $"{First}-{Last}";
}
