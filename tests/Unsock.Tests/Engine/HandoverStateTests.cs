using System.Net;
using System.Net.Sockets;
using Unsock.Core.Addressing;
using Unsock.Core.Engine;
using Unsock.Tests.Integration;
using static Tmds.Linux.LibC;

namespace Unsock.Tests.Engine;

/// <summary>
/// What one supervisor leaves the next: the journal of unanswered calls (written in place, read after the writer is
/// gone) and the registry of converted sockets and socket files, whose files are checked again before they are taken back.
/// </summary>
public sealed class HandoverStateTests
{
    private static SyscallRequest Call(ulong id, int nr = 43) => new(id, 1234, nr, 0xC000003E, 3, 0x7fff0000, 16, 0x80000, 5, 6);

    [Fact]
    public void TheJournalKeepsWhatIsRecordedAndNotClearedAndNothingElse()
    {
        using var dir = new TempDir();
        string path = dir["calls"];
        using (var journal = CallJournal.Open(path, 8, out var none))
        {
            Assert.Empty(none);
            int a = journal.Rent(), b = journal.Rent(), c = journal.Rent();
            journal.Record(a, 7, Call(100));
            journal.Record(b, 7, Call(101, nr: 42));
            journal.Record(c, 9, Call(200));
            journal.Clear(b); // answered
            journal.Record(journal.Rent(), 0, Call(300)); // a target without a key is never journaled
            // A parked call is in its thread's slot and the poller's for a moment: one call, not two.
            journal.Record(journal.Rent(), 7, Call(100));
        }
        var left = CallJournal.ReadLeft(path);
        Assert.Equal([(7L, 100UL), (9L, 200UL)], left.Select(l => (l.Key, l.Request.Id)).Order().ToArray());
        Assert.Equal(Call(100), left.Single(l => l.Request.Id == 100).Request);

        // Opening reads what was left and starts anew.
        using (var next = CallJournal.Open(path, 8, out var taken))
            Assert.Equal(2, taken.Count);
        Assert.Empty(CallJournal.ReadLeft(path));
    }

    [Fact]
    public void AFullJournalRecordsNothingRatherThanOverwriting()
    {
        using var dir = new TempDir();
        using var journal = CallJournal.Open(dir["calls"], 2, out _);
        int a = journal.Rent(), b = journal.Rent();
        Assert.Equal(-1, journal.Rent());
        journal.Record(a, 1, Call(1));
        journal.Record(b, 1, Call(2));
        journal.Record(-1, 1, Call(3));
        journal.Return(a);
        Assert.Equal(a, journal.Rent());
        Assert.Equal([2UL], CallJournal.ReadLeft(dir["calls"]).Select(l => l.Request.Id).ToArray());
    }

    [Fact]
    public void NotAJournalIsReadAsNoCalls()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["calls"], new string('x', 4096));
        Assert.Empty(CallJournal.ReadLeft(dir["calls"]));
        Assert.Empty(CallJournal.ReadLeft(dir["missing"]));
    }

    private static (ulong Device, ulong Inode) StatOf(string path)
    {
        Assert.Equal(0, global::Interop.FileSystem.Lstat(path, out var st));
        return (st.Device, st.Inode);
    }

    [Fact]
    public void ConvertedSocketsAndTheirFilesRoundTripAndAReplacedFileIsLeftAlone()
    {
        using var dir = new TempDir();
        using var kept = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        kept.Bind(new UnixDomainSocketEndPoint(dir["kept.sock"]));
        using var replaced = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        replaced.Bind(new UnixDomainSocketEndPoint(dir["replaced.sock"]));
        var (dev, ino) = StatOf(dir["kept.sock"]);
        var (dev2, ino2) = StatOf(dir["replaced.sock"]);
        var state = new AttachmentState
        {
            Files =
            [
                new FileState { Path = dir["kept.sock"], SunPath = dir["kept.sock"], Device = dev, Inode = ino, SocketInode = 1001 },
                new FileState { Path = dir["replaced.sock"], SunPath = dir["replaced.sock"], Device = dev2, Inode = ino2, SocketInode = 1002 },
            ],
            Sockets =
            [
                new SocketState { Inode = 1001, Family = AF_UNIX, Local = "127.0.0.1 8080", File = dir["kept.sock"] },
                new SocketState { Inode = 1002, Family = AF_UNIX, IPv6 = true, Local = "::1 8081", File = dir["replaced.sock"] },
                new SocketState
                {
                    Inode = 2001, Family = AF_UNIX, Local = "127.0.0.1 8080", Peer = "127.0.0.1 40000", AcceptedFromListener = true,
                    Options = [new OptionState { Level = 6, Option = 1, Value = [1, 0, 0, 0] }],
                },
                new SocketState { Inode = 2002, Family = AF_UNIX, Local = "not an address" },
            ],
        };
        // Somebody puts another file where the second socket file was.
        File.Delete(dir["replaced.sock"]);
        File.WriteAllText(dir["replaced.sock"], "not ours");

        var registry = new SocketRegistry();
        var problems = new List<string>();
        int files = registry.Import(AttachmentState.FromJson(state.ToJson()), Environment.ProcessId, problems);

        Assert.Equal(1, files);
        Assert.Equal(2, problems.Count);
        Assert.Contains(problems, p => p.Contains("replaced.sock") && p.Contains("gone or was replaced"));
        Assert.Contains(problems, p => p.Contains("2002") && p.Contains("does not parse"));
        Assert.Equal([dir["kept.sock"]], registry.FilePaths());
        var listener = registry.Find(1001)!;
        Assert.Equal(new InetEndpoint(IPAddress.Loopback, 8080), listener.Local);
        Assert.Same(listener, registry.FindFile(dir["kept.sock"])!.Listener);
        Assert.Null(registry.Find(1002)!.File);
        var accepted = registry.Find(2001)!;
        Assert.True(accepted.AcceptedFromListener && accepted.Answered);
        Assert.Equal(new InetEndpoint(IPAddress.Loopback, 40000), accepted.Peer);
        Assert.Equal([1, 0, 0, 0], accepted.GetOption(6, 1));

        // Exported again, it says the same.
        var again = registry.Export();
        Assert.Equal(3, again.Sockets.Count);
        Assert.Single(again.Files);
        Assert.Single(registry.Export(filesOnly: true).Sockets);

        // The file taken back is removed as any other once its socket is gone; the other was never ours.
        Assert.True(registry.FindFile(dir["kept.sock"])!.RemoveIfStillOurs());
        Assert.False(File.Exists(dir["kept.sock"]));
        Assert.Equal("not ours", File.ReadAllText(dir["replaced.sock"]));
    }

    [Fact]
    public unsafe void AListenerSentToTheServiceTravelsAloneNotWithOurStdin()
    {
        // Tmds.LibC's CMSG_LEN(4) is 24, which the kernel reads as two fds: the listener and fd 0.
        int* pair = stackalloc int[2];
        Assert.Equal(0, socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair));
        int passed = eventfd(0, EFD_CLOEXEC);
        try
        {
            Assert.Equal(0, global::Interop.ControlSocket.Send(pair[0], "attach"u8, passed));
            byte* data = stackalloc byte[64];
            byte* control = stackalloc byte[256];
            var iov = new Tmds.Linux.iovec { iov_base = data, iov_len = 64 };
            var msg = new Tmds.Linux.msghdr { msg_iov = &iov, msg_iovlen = 1, msg_control = control, msg_controllen = 256 };
            Assert.Equal(6, (long)recvmsg(pair[1], &msg, MSG_CMSG_CLOEXEC));
            var c = CMSG_FIRSTHDR(&msg);
            long count = ((long)(uint)c->cmsg_len - 16) / sizeof(int);
            for (int i = 0; i < count; i++) close(((int*)CMSG_DATA(c))[i]);
            Assert.Equal(1, count);
        }
        finally
        {
            close(passed);
            close(pair[0]);
            close(pair[1]);
        }
    }
}
