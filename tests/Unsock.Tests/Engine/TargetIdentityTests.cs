using System.Diagnostics;
using Unsock.Core;
using Unsock.Core.Engine;

namespace Unsock.Tests.Engine;

/// <summary>
/// How a root supervisor takes a target's filesystem identity: only ever the target's, checked after the
/// switch, and never its own instead when that fails.
/// </summary>
public class TargetIdentityTests
{
    private const uint Nobody = 65534;

    private static void RequireRoot() =>
        Assert.True(Environment.IsPrivilegedProcess, "these tests need root, as CI and the development machines have");

    /// <summary>Runs <paramref name="work"/> on a thread of its own: identities and capabilities are per thread.</summary>
    private static T OnOwnThread<T>(Func<T> work)
    {
        T result = default!;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try { result = work(); }
            catch (Exception e) { failure = e; }
        });
        thread.Start();
        thread.Join();
        if (failure is not null) throw new Xunit.Sdk.XunitException($"failed on its own thread: {failure}");
        return result;
    }

    /// <summary>"fsuid fsgid groups" of the calling thread, from the kernel.</summary>
    private static string ThreadIds()
    {
        string? uid = null, gid = null, groups = null;
        foreach (var line in File.ReadLines("/proc/thread-self/status"))
        {
            var f = line.Split((char[])['\t', ' '], StringSplitOptions.RemoveEmptyEntries);
            if (f[0] == "Uid:") uid = f[4];
            else if (f[0] == "Gid:") gid = f[4];
            else if (f[0] == "Groups:") groups = string.Join(',', f[1..]);
        }
        return $"{uid} {gid} [{groups}]";
    }

    [Fact]
    public void AssumeRefusesWithEaccesWhenTheCredentialsCannotBeRead()
    {
        RequireRoot();
        using var gone = Process.Start("true")!;
        gone.WaitForExit(); // reaped: /proc/PID is gone, as it is for a target that died meanwhile
        var (errno, acting, ids) = OnOwnThread(() =>
        {
            using var scope = TargetIdentity.Assume(null, gone.Id);
            return (scope.Errno, scope.Credentials, ThreadIds());
        });
        Assert.Equal(Errors.EACCES, errno);
        Assert.Null(acting);
        Assert.StartsWith("0 0 ", ids);
    }

    [Fact]
    public void AssumeTakesTheTargetsIdsAndGivesThemBack()
    {
        RequireRoot();
        using var target = Process.Start("setpriv", [$"--reuid={Nobody}", $"--regid={Nobody}", "--groups=100,4", "sleep", "30"]);
        try
        {
            string? during = null;
            Assert.True(SpinWait.SpinUntil(() => File.ReadAllText($"/proc/{target.Id}/status").Contains($"Uid:\t{Nobody}"), 10000));
            var (errno, after) = OnOwnThread(() =>
            {
                string before = ThreadIds();
                int err;
                using (var scope = TargetIdentity.Assume(null, target.Id))
                {
                    err = scope.Errno;
                    during = ThreadIds();
                }
                Assert.Equal(before, ThreadIds());
                return (err, ThreadIds());
            });
            Assert.Equal(0, errno);
            Assert.Equal($"{Nobody} {Nobody} [4,100]", during);
            Assert.StartsWith("0 0 ", after);
        }
        finally
        {
            target.Kill();
            target.WaitForExit();
        }
    }

    [Fact]
    public void AssumeRefusesWithEaccesWhenTheSwitchDoesNotTakeEffect()
    {
        RequireRoot();
        var (errno, ids) = OnOwnThread(() =>
        {
            // Without CAP_SETUID and CAP_SETGID the kernel ignores setfsuid/setfsgid without a word.
            DropFromEffective(6 /* CAP_SETGID */, 7 /* CAP_SETUID */);
            using var scope = TargetIdentity.Assume(new FsCredentials(Nobody, Nobody, []));
            return (scope.Errno, ThreadIds());
        });
        Assert.Equal(Errors.EACCES, errno);
        Assert.StartsWith("0 0 ", ids);
    }

    [Fact]
    public void NestedScopesOfOneTargetGiveBackWhatTheyFound()
    {
        RequireRoot();
        var ids = OnOwnThread(() =>
        {
            var owner = new FsCredentials(Nobody, Nobody, [5]);
            var seen = new List<string>();
            using (var outer = TargetIdentity.Assume(owner))
            {
                Assert.Equal(0, outer.Errno);
                using (var inner = TargetIdentity.Assume(new FsCredentials(Nobody, Nobody, [5])))
                    seen.Add(ThreadIds());
                seen.Add(ThreadIds());
            }
            seen.Add(ThreadIds());
            return seen;
        });
        Assert.Equal($"{Nobody} {Nobody} [5]", ids[0]);
        Assert.Equal($"{Nobody} {Nobody} [5]", ids[1]);
        Assert.StartsWith("0 0 ", ids[2]);
    }

    [Fact]
    public void AControlFileIsReadWithTheTargetsIdentity()
    {
        RequireRoot();
        var dir = Directory.CreateTempSubdirectory("unsock-identity-");
        try
        {
            File.SetUnixFileMode(dir.FullName, (UnixFileMode)0x1ED);
            byte[] control = Unsock.Core.ControlFiles.ControlFile.ForVsock(5678).ToBytes();
            string open = Path.Combine(dir.FullName, "80.sock"), closed = Path.Combine(dir.FullName, "81.sock");
            File.WriteAllBytes(open, control);
            File.SetUnixFileMode(open, (UnixFileMode)0x1A4); // 0644
            File.WriteAllBytes(closed, control);
            File.SetUnixFileMode(closed, (UnixFileMode)0x180); // 0600, root's
            var (readable, refused) = OnOwnThread(() =>
            {
                using var scope = TargetIdentity.Assume(new FsCredentials(Nobody, Nobody, []));
                Assert.Equal(0, scope.Errno);
                bool loaded = Unsock.Core.ControlFiles.ControlFile.TryLoad(open, out _);
                var e = Assert.Throws<Unsock.Core.ControlFiles.ControlFileException>(() => Unsock.Core.ControlFiles.ControlFile.TryLoad(closed, out _));
                return (loaded, e.Errno);
            });
            Assert.True(readable);
            Assert.Equal(Errors.EACCES, refused);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    /// <summary>capget, then capset without <paramref name="caps"/> in the effective set of this thread.</summary>
    private static unsafe void DropFromEffective(params int[] caps)
    {
        const long SysCapget = 125, SysCapset = 126;
        uint* header = stackalloc uint[2] { 0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0 /* this thread */ };
        uint* data = stackalloc uint[6]; // two of { effective, permitted, inheritable }
        Assert.Equal(0, Tmds.Linux.LibC.syscall((int)SysCapget, header, data));
        foreach (int cap in caps) data[0] &= ~(1u << cap);
        Assert.Equal(0, Tmds.Linux.LibC.syscall((int)SysCapset, header, data));
    }
    [Fact]
    public void ATreeSeenWhileAChangeIsUnderWayIsNotRememberedAndOneSeenBeforeIsForgotten()
    {
        // A sleeping child stands for a target: it sees our tree, and sits in clock_nanosleep (230), which stands for a
        // trapped chroot that has not run yet. The engine's thread cache is a TargetProcess.
        const int Nanosleep = 230;
        using var child = Process.Start("sleep", "30")!;
        using var target = new TargetProcess(16);
        try
        {
            Assert.True(Unsock.Tests.Integration.Wait.Until(() => File.ReadAllText($"/proc/{child.Id}/syscall").StartsWith($"{Nanosleep} "), TimeSpan.FromSeconds(10)));
            Assert.Equal(0, TargetIdentity.OpenForeignRoot(target, child.Id, out int root));
            Assert.Equal(-1, root);
            Assert.True(target.SeenInOwnTree(child.Id, TargetIdentity.RootChanges), "a target seen in our tree is remembered");

            TargetIdentity.RootMayChange(child.Id, Nanosleep);
            Assert.False(target.SeenInOwnTree(child.Id, TargetIdentity.RootChanges), "what was seen before a change is forgotten");
            Assert.False(TargetIdentity.NoChangeUnderWay());
            Assert.Equal(0, TargetIdentity.OpenForeignRoot(target, child.Id, out root));
            Assert.False(target.SeenInOwnTree(child.Id, TargetIdentity.RootChanges), "a look while the change may still run is not remembered");
        }
        finally
        {
            child.Kill();
            child.WaitForExit();
        }
        // Its thread is gone: the change is over, and later looks count again.
        Assert.True(TargetIdentity.NoChangeUnderWay());
    }
}
