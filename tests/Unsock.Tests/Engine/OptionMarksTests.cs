using Unsock.Core.Engine;

namespace Unsock.Tests.Engine;

/// <summary>The marks that say which SOL_SOCKET options a program set on a socket, so that a swap copies those only.</summary>
public class OptionMarksTests
{
    private const int SoSndBuf = 7, SoRcvBuf = 8, SoPriority = 12, SoKeepAlive = 9, SoLinger = 13;

    [Fact]
    public void EachTrappedOptionHasItsOwnBitAndTheOthersNone()
    {
        var bits = FilterPlan.MarkedSocketOptions.ToArray().Select(Redirector.OptionMarks.BitOf).ToList();
        Assert.All(bits, b => Assert.Equal(1, System.Numerics.BitOperations.PopCount((uint)b)));
        Assert.Equal(bits.Count, bits.Distinct().Count());
        Assert.Equal(0, Redirector.OptionMarks.BitOf(SoKeepAlive));
        Assert.Equal(0, Redirector.OptionMarks.BitOf(SoLinger));
    }

    [Fact]
    public void ASwapTakesTheOptionsMarkedOnItsSocketOnce()
    {
        var marks = new Redirector.OptionMarks(capacity: 4);
        Assert.True(marks.IsEmpty);
        marks.Mark(100, Redirector.OptionMarks.BitOf(SoSndBuf));
        marks.Mark(100, Redirector.OptionMarks.BitOf(SoPriority));
        marks.Mark(200, Redirector.OptionMarks.BitOf(SoRcvBuf));
        Assert.False(marks.IsEmpty);
        Assert.Equal(Redirector.OptionMarks.BitOf(SoSndBuf) | Redirector.OptionMarks.BitOf(SoPriority), marks.Take(100));
        Assert.Equal(0, marks.Take(100));
        Assert.Equal(0, marks.Take(300)); // never marked: nothing to copy
        Assert.Equal(Redirector.OptionMarks.BitOf(SoRcvBuf), marks.Take(200));
        Assert.True(marks.IsEmpty);
    }

    [Fact]
    public void PastItsCapacityEverySocketCountsAsHavingEveryOptionSet()
    {
        // Sockets marked and never swapped fill it; it must not forget a mark and so lose an option: it gives up knowing.
        var marks = new Redirector.OptionMarks(capacity: 2);
        Assert.False(marks.Mark(1, Redirector.OptionMarks.BitOf(SoSndBuf)));
        Assert.False(marks.Mark(2, Redirector.OptionMarks.BitOf(SoSndBuf)));
        Assert.True(marks.Mark(3, Redirector.OptionMarks.BitOf(SoSndBuf)));  // said once, to be logged
        Assert.False(marks.Mark(4, Redirector.OptionMarks.BitOf(SoSndBuf)));
        Assert.False(marks.IsEmpty);
        Assert.Equal(Redirector.OptionMarks.Unknown, marks.Take(1));
        Assert.Equal(Redirector.OptionMarks.Unknown, marks.Take(999));
        Assert.NotEqual(0, Redirector.OptionMarks.Unknown & Redirector.OptionMarks.BitOf(SoRcvBuf));
    }
}
