using System.Runtime.CompilerServices;
using static Interop.Libseccomp;
using static Interop.SeccompFilter;

namespace Unsock.Tests.Filter;

/// <summary>The interop structs have the kernel's and libseccomp's layout.</summary>
public class FilterInteropLayoutTests
{
    [Fact]
    public unsafe void SockFilterIsEightBytesCodeJtJfK()
    {
        Assert.Equal(8, sizeof(SockFilter));
        var f = default(SockFilter);
        byte* start = (byte*)&f;
        Assert.Equal(0, (byte*)&f.Code - start);
        Assert.Equal(2, &f.Jt - start);
        Assert.Equal(3, &f.Jf - start);
        Assert.Equal(4, (byte*)&f.K - start);
    }

    [Fact]
    public unsafe void SockFprogIsSixteenBytesWithThePointerAtEight()
    {
        Assert.Equal(16, sizeof(SockFprog));
        var p = default(SockFprog);
        Assert.Equal(8, (byte*)&p.Filter - (byte*)&p);
    }

    [Fact]
    public unsafe void ScmpArgCmpIsTwentyFourBytes()
    {
        Assert.Equal(24, sizeof(ScmpArgCmp));
        var c = default(ScmpArgCmp);
        byte* start = (byte*)&c;
        Assert.Equal(4, (byte*)&c.Op - start);
        Assert.Equal(8, (byte*)&c.DatumA - start);
        Assert.Equal(16, (byte*)&c.DatumB - start);
        Assert.Equal(24, Unsafe.SizeOf<ScmpArgCmp>());
    }
}
