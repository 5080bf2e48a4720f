using System.Buffers.Binary;
using Unsock.Core.ControlFiles;
using static Tmds.Linux.LibC;
using static Unsock.Tests.ControlFiles.ControlFileTestSupport;

namespace Unsock.Tests.ControlFiles;

[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public class ControlFileLoadTests
{
    public static TheoryData<string> Fixtures => new(AllFixtures);

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void TryLoad_reads_a_golden_control_file(string name)
    {
        Assert.True(ControlFile.TryLoad(FixturePath(name), out var file));

        Assert.NotNull(file);
        Assert.Equal(Fixture(name), file.ToBytes());
    }

    [Fact]
    public void TryLoad_follows_a_symlink_to_a_control_file_like_stat_does()
    {
        using var dir = new ControlFileTempDirectory();
        File.CreateSymbolicLink(dir["80.sock"], FixturePath(VsockCid2Port5000));

        Assert.True(ControlFile.TryLoad(dir["80.sock"], out var file));
        Assert.Equal(5000u, file!.VsockPort);
    }

    [Fact]
    public void TryLoad_accepts_the_path_as_raw_bytes_ending_at_nul()
    {
        byte[] path = NulTerminated(FixturePath(Firecracker5678)).Concat("garbage"u8.ToArray()).ToArray();

        Assert.True(ControlFile.TryLoad(path, out var file));
        Assert.Equal(ControlFileKind.FirecrackerProxy, file!.Kind);
    }

    [Fact]
    public void TryLoad_is_false_for_a_missing_path()
    {
        using var dir = new ControlFileTempDirectory();

        Assert.False(ControlFile.TryLoad(dir["80.sock"], out var file));
        Assert.Null(file);
        Assert.False(ControlFile.TryLoad(dir["no-such-dir/80.sock"], out _));
        Assert.False(ControlFile.TryLoad("", out _));
    }

    [Fact]
    public void TryLoad_is_false_for_a_socket_file()
    {
        using var dir = new ControlFileTempDirectory();
        using var listener = BindUnixSocket(dir["80.sock"]);

        Assert.False(ControlFile.TryLoad(dir["80.sock"], out _));
    }

    [Fact]
    public void TryLoad_is_false_for_a_directory()
    {
        using var dir = new ControlFileTempDirectory();
        Directory.CreateDirectory(dir["80.sock"]);

        Assert.False(ControlFile.TryLoad(dir["80.sock"], out _));
    }

    [Fact]
    public async Task TryLoad_is_false_for_a_fifo_and_does_not_block_on_it()
    {
        using var dir = new ControlFileTempDirectory();
        MakeFifo(dir["80.sock"]);

        var load = Task.Run(() => ControlFile.TryLoad(dir["80.sock"], out _));

        Assert.False(await load.WaitAsync(TimeSpan.FromSeconds(5)));
    }

    private static unsafe void MakeFifo(string path)
    {
        fixed (byte* p = NulTerminated(path))
        {
            Assert.Equal(0, mkfifo(p, (ushort)0x1A4));
        }
    }

    [Theory]
    [InlineData(451)]
    [InlineData(453)]
    [InlineData(904)]
    public void TryLoad_is_false_for_a_file_with_the_magic_but_another_size(int size)
    {
        using var dir = new ControlFileTempDirectory();
        byte[] bytes = new byte[size];
        Fixture(VsockAny5678).AsSpan(0, Math.Min(size, 452)).CopyTo(bytes);
        File.WriteAllBytes(dir["80.sock"], bytes);

        Assert.False(ControlFile.TryLoad(dir["80.sock"], out _));
    }

    [Fact]
    public void TryLoad_is_false_for_a_452_byte_file_without_the_magic()
    {
        using var dir = new ControlFileTempDirectory();
        byte[] bytes = Fixture(VsockAny5678);
        bytes[4] = 1; // the magic is a u64: "UNSK" followed by anything but zeros is not it
        File.WriteAllBytes(dir["80.sock"], bytes);
        File.WriteAllBytes(dir["81.sock"], new byte[452]);

        Assert.False(ControlFile.TryLoad(dir["80.sock"], out _));
        Assert.False(ControlFile.TryLoad(dir["81.sock"], out _));
    }

    [Fact]
    public void TryLoad_throws_for_a_corrupt_file_that_has_the_magic()
    {
        using var dir = new ControlFileTempDirectory();
        byte[] bytes = Fixture(VsockAny5678);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(20), 0); // destLen
        File.WriteAllBytes(dir["80.sock"], bytes);

        var e = Assert.Throws<ControlFileException>(() => ControlFile.TryLoad(dir["80.sock"], out _));

        Assert.Contains(dir["80.sock"], e.Message);
        Assert.Contains("destLen is 0", e.Message);
    }

    [Fact]
    public void CreateExclusive_writes_the_452_bytes_with_mode_0644_at_most()
    {
        using var dir = new ControlFileTempDirectory();
        var file = ControlFile.ForFirecracker("/path/to/firecracker/vsock", 5678);

        file.CreateExclusive(dir["80.sock"]);

        Assert.Equal(Fixture(Firecracker5678), File.ReadAllBytes(dir["80.sock"]));
        var mode = File.GetUnixFileMode(dir["80.sock"]);
        const UnixFileMode Allowed = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
        Assert.Equal(UnixFileMode.None, mode & ~Allowed);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, mode & (UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute));
        Assert.True(ControlFile.TryLoad(dir["80.sock"], out var loaded));
        Assert.Equal(file.ToBytes(), loaded!.ToBytes());
    }

    [Fact]
    public void CreateExclusive_refuses_an_existing_file_and_leaves_it_alone()
    {
        using var dir = new ControlFileTempDirectory();
        File.WriteAllText(dir["80.sock"], "keep me");

        var e = Assert.Throws<IOException>(() => ControlFile.ForVsock(1).CreateExclusive(dir["80.sock"]));

        Assert.Contains("File exists", e.Message);
        Assert.Contains(dir["80.sock"], e.Message);
        Assert.Equal("keep me", File.ReadAllText(dir["80.sock"]));
    }

    [Fact]
    public void CreateExclusive_refuses_to_follow_a_dangling_symlink()
    {
        using var dir = new ControlFileTempDirectory();
        File.CreateSymbolicLink(dir["80.sock"], dir["elsewhere"]);

        Assert.Throws<IOException>(() => ControlFile.ForVsock(1).CreateExclusive(dir["80.sock"]));
        Assert.False(File.Exists(dir["elsewhere"]));
    }
}
