using System.Net;
using Unsock.Core.Addressing;
using Unsock.Core.Engine;
using Unsock.Tests.Integration;

namespace Unsock.Tests.Engine;

/// <summary>
/// What the hot path allocates. Garbage made per call is memory the GC holds between collections: a supervisor's
/// memory after 100k short connections must not be the sum of what each of them left behind.
/// </summary>
public class HotPathAllocationTests
{
    private static string Py => Integration.Launcher.Python;
    private static string EngineProbe => Integration.Launcher.Program("engineprobe.py");

    [Fact]
    public void RedirectedConnectsAndAcceptsAllocateLittleMoreThanTheirRecords()
    {
        using var dir = new TempDir();
        using var engine = new NotificationEngine();
        engine.Start();
        var policy = NotificationEngineTests.PolicyFor(dir, "socks");
        // A first program warms the engine up (first calls compile our code and fill the caches).
        NotificationEngineTests.RunAttached(engine, policy, $"{Py} {EngineProbe} victim 127.0.0.1 9671 20 > {dir["warm"]} 2>&1");

        var before = engine.HandlingAllocations;
        // 3000 times: connect to itself (redirected), accept (converted), one byte each way.
        NotificationEngineTests.RunAttached(engine, policy, $"{Py} {EngineProbe} victim 127.0.0.1 9672 3000 > {dir["out"]} 2>&1", seconds: 60);
        var after = engine.HandlingAllocations;
        long calls = after.Calls - before.Calls, bytes = after.Bytes - before.Bytes;
        Assert.True(calls >= 6000, $"{calls} calls handled");
        // Each connection leaves two records (its connect's and its accept's, about 130 bytes each, and their share of
        // the registry's tables), about 245 bytes per call in all. A new path string and IPAddress per call made it 320+.
        Assert.True(bytes / calls < 300, $"{bytes} bytes allocated handling {calls} calls: {bytes / calls} per call");
    }

    [Fact]
    public void DecodingTheSameIPv4AddressAgainAllocatesNothing()
    {
        byte[] sockaddr = [2, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        Assert.True(InetEndpoint.TryDecode(sockaddr, out var first));
        Assert.Equal(new InetEndpoint(IPAddress.Loopback, 8080), first);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            Assert.True(InetEndpoint.TryDecode(sockaddr, out var again));
            Assert.Same(first.Address, again.Address);
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        // Another address is another object, with its own value.
        sockaddr[7] = 2;
        Assert.True(InetEndpoint.TryDecode(sockaddr, out var other));
        Assert.Equal(IPAddress.Parse("127.0.0.2"), other.Address);
        Assert.NotSame(first.Address, other.Address);
    }
}
