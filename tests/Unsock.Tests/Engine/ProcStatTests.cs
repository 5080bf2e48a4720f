using Unsock.Core.Engine;

namespace Unsock.Tests.Engine;

public sealed class ProcStatTests
{
    [Fact]
    public void FieldsCountAfterTheCommandNameAndAGoneProcessIsZero()
    {
        // ppid (4) of this process is what the kernel says it is; starttime (22) is set and stays.
        Assert.Equal((ulong)(int)Tmds.Linux.LibC.getppid(), ProcStat.Field(Environment.ProcessId, 4));
        ulong start = ProcStat.Field(Environment.ProcessId, 22);
        Assert.NotEqual(0UL, start);
        Assert.Equal(start, ProcStat.Field(Environment.ProcessId, 22));
        Assert.Equal(0UL, ProcStat.Field(int.MaxValue, 4));
        Assert.Equal(0UL, ProcStat.Field(Environment.ProcessId, 2)); // the command is not a number field
    }
}
