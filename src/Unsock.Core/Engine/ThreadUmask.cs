using Native = global::Interop;

namespace Unsock.Core.Engine;

/// <summary>
/// The umask files are created under, and the directory relative paths start from, for this thread alone.
/// Linux keeps both in the fs context that a process's threads share; a thread that unshares it (CLONE_FS,
/// once, when it first needs to) can create each target's files with their final mode at once, with no
/// chmod afterwards and no moment in which they are open to others, and resolve a target's relative paths
/// from the target's working directory, without touching any other thread's umask or directory.
/// </summary>
internal static class ThreadUmask
{
    // What the thread goes back to between creations: nothing else it creates is open to others.
    private const int Closed = 0x3F; // 077
    [ThreadStatic] private static bool t_ownContext;
    // The thread's own working directory (fd + 1; 0: not opened yet), to go back to after a target's.
    [ThreadStatic] private static int t_home;

    private static int OwnContext()
    {
        if (t_ownContext) return 0;
        int err = Native.FileSystem.UnshareFileSystemContext();
        if (err != 0) return err;
        t_ownContext = true;
        return 0;
    }

    /// <summary>Sets this thread's umask; 0 or the errno of unshare (then nothing is created).</summary>
    public static int Set(int umask)
    {
        int err = OwnContext();
        if (err != 0) return err;
        Native.FileSystem.SetUmask(umask & 0x1FF);
        return 0;
    }

    /// <summary>Back to 077 after a creation.</summary>
    public static void Close()
    {
        if (t_ownContext) Native.FileSystem.SetUmask(Closed);
    }

    /// <summary>
    /// Makes <paramref name="directoryFd"/> (a target's working directory) this thread's working directory
    /// until <see cref="LeaveDirectory"/>; 0 or errno (then the thread's directory is unchanged).
    /// </summary>
    public static int EnterDirectory(int directoryFd)
    {
        int err = OwnContext();
        if (err != 0) return err;
        if (t_home == 0)
        {
            int home = Native.TaskContext.OpenDirectory(".");
            if (home < 0) return -home;
            t_home = home + 1;
        }
        return Native.TaskContext.ChangeDirectory(directoryFd);
    }

    /// <summary>Back to the thread's own working directory.</summary>
    public static void LeaveDirectory()
    {
        if (t_home > 0 && Native.TaskContext.ChangeDirectory(t_home - 1) != 0)
            throw new InvalidOperationException("a notification thread could not go back to its own working directory");
    }
}
