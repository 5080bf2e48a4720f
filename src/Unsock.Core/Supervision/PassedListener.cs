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

    /// <summary>
    /// True when no task uses the listener's filter any more (it polls as hung up, 5.9+): its targets are all gone.
    /// </summary>
    public static unsafe bool IsAbandoned(int fd)
    {
        var p = new Tmds.Linux.pollfd { fd = fd, events = Tmds.Linux.LibC.POLLIN };
        return Tmds.Linux.LibC.poll(&p, 1, 0) > 0 && (p.revents & Tmds.Linux.LibC.POLLHUP) != 0;
    }

    public static void Close(int fd) => global::Interop.ControlSocket.Close(fd);
}
