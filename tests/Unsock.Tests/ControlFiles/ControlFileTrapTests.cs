using Unsock.Core.ControlFiles;
using Unsock.Tests.Integration;
using static Unsock.Tests.ControlFiles.ControlFileTestSupport;

namespace Unsock.Tests.ControlFiles;

/// <summary>Files a hostile program puts where a control file could be: looking at them must never block.</summary>
public class ControlFileTrapTests
{
    private static readonly TimeSpan Prompt = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task TryLoadNeverBlocksWhileAFifoAndA452ByteFileTradePlaces()
    {
        using var dir = new ControlFileTempDirectory();
        File.WriteAllBytes(dir["80.sock"], new byte[452]);
        using (var mk = new RunningProgram("mkfifo", [dir["fifo"]])) Assert.Equal(0, mk.WaitForExit(Prompt));
        using var swapper = new RunningProgram(Integration.Launcher.Python, [Integration.Launcher.Program("fileattack.py"), "swap-dirs", dir["80.sock"], dir["fifo"]]);
        var load = Task.Run(() =>
        {
            for (int i = 0; i < 20000; i++) ControlFile.TryLoad(dir["80.sock"], out _);
        });
        await load.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.False(swapper.HasExited, swapper.Describe());
    }

    [Fact]
    public async Task TryLoadAnswersAtOnceWhenAWriteLeaseIsHeld()
    {
        using var dir = new ControlFileTempDirectory();
        File.WriteAllBytes(dir["80.sock"], Fixture(VsockAny5678));
        string hold = $$"""
            import fcntl, os, signal, sys, time
            signal.signal(signal.SIGIO, signal.SIG_IGN)
            fd = os.open(sys.argv[1], os.O_RDONLY)
            fcntl.fcntl(fd, 1024, fcntl.F_WRLCK)  # F_SETLEASE
            print("leased", flush=True)
            time.sleep(60)
            """;
        using var holder = new RunningProgram(Integration.Launcher.Python, ["-c", hold, dir["80.sock"]]);
        Assert.True(Wait.Until(() => holder.Stdout.Contains("leased") || holder.HasExited, TimeSpan.FromSeconds(20)), holder.Describe());
        var load = Task.Run(() => ControlFile.TryLoad(dir["80.sock"], out _));
        var e = await Assert.ThrowsAsync<ControlFileException>(() => load.WaitAsync(Prompt));
        Assert.Contains("lease", e.Message);
        Assert.Contains(dir["80.sock"], e.Message);
    }
}
