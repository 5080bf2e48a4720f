namespace Unsock.Core.Supervision;

/// <summary>An fd a launcher passed by SCM_RIGHTS, which must be a seccomp user-notification listener.</summary>
public static class PassedListener
{
    /// <summary>What /proc/self/fd/N reads for a seccomp listener (an anonymous inode of the kernel's).</summary>
    public const string LinkText = "anon_inode:seccomp notify";

    /// <summary>True when <paramref name="fd"/> is a seccomp listener; otherwise <paramref name="what"/> says what it is.</summary>
    public static bool IsSeccompListener(int fd, out string what)
    {
        try
        {
            what = new FileInfo($"/proc/self/fd/{fd}").LinkTarget ?? "not a link";
        }
        catch (IOException e)
        {
            what = e.Message;
            return false;
        }
        return what == LinkText;
    }

    public static void Close(int fd) => global::Interop.ControlSocket.Close(fd);
}
