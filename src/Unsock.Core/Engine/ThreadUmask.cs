using Native = global::Interop;

namespace Unsock.Core.Engine;

/// <summary>
/// The umask files are created under, for this thread alone. Linux keeps the umask in the fs context that
/// a process's threads share; a thread that unshares it (CLONE_FS, once, when it first creates a file for a
/// target) can create each target's files with their final mode at once, with no chmod afterwards and no
/// moment in which they are open to others, without touching any other thread's umask.
/// </summary>
internal static class ThreadUmask
{
    // What the thread goes back to between creations: nothing else it creates is open to others.
    private const int Closed = 0x3F; // 077
    [ThreadStatic] private static bool t_ownContext;

    /// <summary>Sets this thread's umask; 0 or the errno of unshare (then nothing is created).</summary>
    public static int Set(int umask)
    {
        if (!t_ownContext)
        {
            int err = Native.FileSystem.UnshareFileSystemContext();
            if (err != 0) return err;
            t_ownContext = true;
        }
        Native.FileSystem.SetUmask(umask & 0x1FF);
        return 0;
    }

    /// <summary>Back to 077 after a creation.</summary>
    public static void Close()
    {
        if (t_ownContext) Native.FileSystem.SetUmask(Closed);
    }
}
