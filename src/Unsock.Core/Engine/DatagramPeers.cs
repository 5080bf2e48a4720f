using System.Buffers.Binary;
using System.Net;
using System.Runtime.CompilerServices;
using System.Text;
using Unsock.Core.Addressing;

namespace Unsock.Core.Engine;

/// <summary>
/// The IP:port each datagram peer without a socket file of ours is reported as, and back: what lets a UDP
/// server reply to the address recvfrom gave it. Holds the autobound names of the sockets we swapped in
/// (while they live) and the names of other AF_UNIX senders (native peers), each with a port of its own.
/// One table per registry, bounded: a flood of new senders evicts senders, never our own sockets.
/// </summary>
internal sealed class DatagramPeers
{
    private const int Capacity = 4096;
    private const int First = 32768, Last = 60999;
    private static readonly ConditionalWeakTable<SocketRegistry, DatagramPeers> PerRegistry = new();
    private readonly SocketRegistry _registry;
    private readonly object _gate = new();
    private readonly Dictionary<string, Peer> _byName = new(StringComparer.Ordinal);
    private readonly Dictionary<(IPAddress Address, int Port), string> _byEndpoint = new();
    private int _nextPort = Random.Shared.Next(First, Last + 1);

    private sealed record Peer(InetEndpoint Endpoint, ConvertedSocket? Owner);

    private DatagramPeers(SocketRegistry registry) => _registry = registry;

    public static DatagramPeers For(SocketRegistry registry) => PerRegistry.GetValue(registry, r => new DatagramPeers(r));

    private static (IPAddress, int) Key(InetEndpoint endpoint) => (endpoint.MatchAddress, endpoint.Port);

    /// <summary>Records the autobound <paramref name="name"/> of a socket we swapped in, reported as <paramref name="endpoint"/>.</summary>
    public void Add(string name, InetEndpoint endpoint, ConvertedSocket owner)
    {
        lock (_gate)
        {
            MakeRoom();
            _byName[name] = new Peer(endpoint, owner);
            _byEndpoint[Key(endpoint)] = name;
        }
    }

    /// <summary>The endpoint <paramref name="name"/> is reported as; null when it is not one we know (or its socket is gone).</summary>
    public InetEndpoint? EndpointOf(string name)
    {
        lock (_gate)
        {
            if (!_byName.TryGetValue(name, out var peer)) return null;
            if (IsLive(peer)) return peer.Endpoint;
            Remove(name, peer);
            return null;
        }
    }

    /// <summary>The name behind an endpoint we reported; null when none (or its socket is gone).</summary>
    public string? NameOf(InetEndpoint endpoint)
    {
        lock (_gate)
        {
            if (!_byEndpoint.TryGetValue(Key(endpoint), out var name)) return null;
            if (_byName.TryGetValue(name, out var peer) && IsLive(peer)) return name;
            _byEndpoint.Remove(Key(endpoint));
            if (peer is not null) Remove(name, peer);
            return null;
        }
    }

    /// <summary>Also answers <paramref name="alias"/> for <paramref name="name"/> (an IPv6 peer reported to an IPv4 socket).</summary>
    public void Alias(InetEndpoint alias, string name)
    {
        lock (_gate)
        {
            if (_byName.ContainsKey(name)) _byEndpoint[Key(alias)] = name;
        }
    }

    /// <summary>The endpoint of an AF_UNIX sender we did not make: <paramref name="address"/> and a port not in use here.</summary>
    public InetEndpoint EndpointForStranger(string name, IPAddress address)
    {
        lock (_gate)
        {
            if (_byName.TryGetValue(name, out var known)) return known.Endpoint;
            MakeRoom();
            int port = _nextPort;
            for (int i = 0; i < Capacity * 2 && _byEndpoint.ContainsKey((address, port)); i++) port = port == Last ? First : port + 1;
            _nextPort = port == Last ? First : port + 1;
            var endpoint = new InetEndpoint(address, port);
            _byName[name] = new Peer(endpoint, null);
            _byEndpoint[Key(endpoint)] = name;
            return endpoint;
        }
    }

    public int Count
    {
        get { lock (_gate) return _byName.Count; }
    }

    private bool IsLive(Peer peer) => peer.Owner is null || ReferenceEquals(_registry.Find(peer.Owner.Inode), peer.Owner);

    private void Remove(string name, Peer peer)
    {
        _byName.Remove(name);
        if (_byEndpoint.TryGetValue(Key(peer.Endpoint), out var n) && n == name) _byEndpoint.Remove(Key(peer.Endpoint));
    }

    /// <summary>Keeps the table bounded: drops closed sockets of ours, then, if still full, every stranger.</summary>
    private void MakeRoom()
    {
        if (_byName.Count < Capacity && _byEndpoint.Count < Capacity * 2) return;
        foreach (var (name, peer) in _byName.ToList())
            if (!IsLive(peer) || (_byName.Count >= Capacity / 2 && peer.Owner is null)) Remove(name, peer);
        foreach (var (key, name) in _byEndpoint.ToList())
            if (!_byName.ContainsKey(name)) _byEndpoint.Remove(key);
    }

    /// <summary>
    /// The table's key for a sockaddr_un as the kernel reports it: the path up to its NUL, or the whole abstract
    /// name; raw bytes, one char each. Null for an unnamed socket.
    /// </summary>
    public static string? NameKey(ReadOnlySpan<byte> sockaddr)
    {
        if (sockaddr.Length <= UnixAddress.PathOffset || BinaryPrimitives.ReadUInt16LittleEndian(sockaddr) != 1) return null;
        var name = sockaddr[UnixAddress.PathOffset..];
        if (name[0] != 0)
        {
            int nul = name.IndexOf((byte)0);
            if (nul >= 0) name = name[..nul];
        }
        return name.IsEmpty ? null : Encoding.Latin1.GetString(name);
    }

    /// <summary>The sockaddr_un for a <see cref="NameKey"/>; its size.</summary>
    public static int EncodeName(string key, Span<byte> sockaddr)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(sockaddr, 1);
        int n = Encoding.Latin1.GetBytes(key, sockaddr[UnixAddress.PathOffset..]);
        if (key[0] != '\0') sockaddr[UnixAddress.PathOffset + n++] = 0;
        return UnixAddress.PathOffset + n;
    }
}
