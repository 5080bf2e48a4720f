using System.Runtime.CompilerServices;

namespace Unsock.Core.Engine;

/// <summary>
/// The port each redirected connection reports for its client end: one from the ephemeral range, distinct
/// among live connections, shared by both ends when both are ours. Keyed by the inode of the connection's
/// client-side socket. At most one slot per port, so the table is bounded whatever the programs do; a port
/// is free again once the socket that holds it has left the registry (the sweep drops closed sockets).
/// </summary>
internal sealed class ConnectionPorts
{
    private const int First = 32768, Last = 60999, Tries = 64;
    private static readonly ConditionalWeakTable<SocketRegistry, ConnectionPorts> PerRegistry = new();
    private readonly SocketRegistry _registry;
    private readonly object _gate = new();
    private (ulong Key, ConvertedSocket Holder)[]? _slots;
    private readonly Dictionary<ulong, int> _portOfKey = new();
    private int _next = Random.Shared.Next(0, Last - First + 1);

    private ConnectionPorts(SocketRegistry registry) => _registry = registry;

    /// <summary>The table of the engine that owns <paramref name="registry"/>.</summary>
    public static ConnectionPorts For(SocketRegistry registry) => PerRegistry.GetValue(registry, r => new ConnectionPorts(r));

    /// <summary>The port of connection <paramref name="key"/>, given out now (held by <paramref name="holder"/>) if it has none.</summary>
    public int PortFor(ulong key, ConvertedSocket holder)
    {
        lock (_gate)
        {
            _slots ??= new (ulong, ConvertedSocket)[Last - First + 1];
            if (_portOfKey.TryGetValue(key, out int known) && _slots[known - First].Key == key) return known;
            int index = _next;
            for (int i = 0; i < Tries; i++)
            {
                int candidate = (_next + i) % _slots.Length;
                var slot = _slots[candidate];
                if (slot.Holder is null || !IsLive(slot.Holder)) { index = candidate; break; }
            }
            // Tries live ports in a row (tens of thousands of open connections): share one rather than search on.
            var previous = _slots[index];
            if (previous.Holder is not null) _portOfKey.Remove(previous.Key);
            _slots[index] = (key, holder);
            _portOfKey[key] = First + index;
            _next = (index + 1) % _slots.Length;
            return First + index;
        }
    }

    private bool IsLive(ConvertedSocket holder) => ReferenceEquals(_registry.Find(holder.Inode), holder);
}
