using System.Globalization;
using Native = global::Interop;

namespace Unsock.Core.Supervision;

/// <summary>An fd systemd passed at start (LISTEN_FDS), with its LISTEN_FDNAMES name when it has one.</summary>
public readonly record struct PassedFd(int Fd, string? Name);

/// <summary>
/// The parts of systemd's service protocol the supervisor speaks itself: the fds it was passed at start
/// (sd_listen_fds_with_names(3)) and messages with fds to $NOTIFY_SOCKET (sd_pid_notify_with_fds(3)), which is
/// how a listener is kept in systemd's file descriptor store (FDSTORE=1) across a restart.
/// </summary>
public static class ServiceManager
{
    private const int FirstPassedFd = 3; // SD_LISTEN_FDS_START

    /// <summary>The name prefix of a target's listener in the fd store: "unsock-target-" and the target's number.</summary>
    public const string TargetFdPrefix = "unsock-target-";

    public static bool IsTargetFdName(string? name) => name is not null && name.StartsWith(TargetFdPrefix, StringComparison.Ordinal);

    /// <summary>The fd store name of target <paramref name="number"/>.</summary>
    public static string TargetFdName(long number) => TargetFdPrefix + number.ToString(CultureInfo.InvariantCulture);

    /// <summary>$NOTIFY_SOCKET, or null when nobody listens for our notifications.</summary>
    public static string? NotifySocket => Environment.GetEnvironmentVariable("NOTIFY_SOCKET") is { Length: > 0 } s ? s : null;

    /// <summary>
    /// How many fds systemd's store keeps for us: $FDSTORE (systemd 254 sets it from FileDescriptorStoreMax=), or
    /// null when it does not say.
    /// </summary>
    public static int? FdStoreMax =>
        int.TryParse(Environment.GetEnvironmentVariable("FDSTORE"), NumberStyles.None, CultureInfo.InvariantCulture, out int n) ? n : null;

    /// <summary>
    /// The fds systemd passed this process (LISTEN_PID is ours), from fd 3 on, made close-on-exec; the variables
    /// are cleared (they are for us, not our children). Empty when none were passed.
    /// </summary>
    /// <exception cref="ControlChannelException">LISTEN_FDS is not a number.</exception>
    public static IReadOnlyList<PassedFd> TakePassedFds()
    {
        string? pidText = Environment.GetEnvironmentVariable("LISTEN_PID");
        string? countText = Environment.GetEnvironmentVariable("LISTEN_FDS");
        string? names = Environment.GetEnvironmentVariable("LISTEN_FDNAMES");
        if (string.IsNullOrEmpty(pidText) || string.IsNullOrEmpty(countText)) return [];
        if (!int.TryParse(pidText, NumberStyles.None, CultureInfo.InvariantCulture, out int pid) || pid != Native.ServiceSocket.ProcessId())
            return []; // meant for another process (a parent that did not clear them)
        foreach (string v in (string[])["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]) Environment.SetEnvironmentVariable(v, null);
        if (!int.TryParse(countText, NumberStyles.None, CultureInfo.InvariantCulture, out int count) || count < 1 || count > 1_000_000)
            throw new ControlChannelException($"socket activation: LISTEN_FDS is \"{countText}\"; expected the number of fds passed (at least 1)");
        string[] list = string.IsNullOrEmpty(names) ? [] : names.Split(':');
        var passed = new List<PassedFd>(count);
        for (int i = 0; i < count; i++)
        {
            int fd = FirstPassedFd + i;
            Native.ServiceSocket.SetCloseOnExec(fd);
            passed.Add(new PassedFd(fd, i < list.Length && list[i].Length > 0 ? list[i] : null));
        }
        return passed;
    }

    /// <summary>Sends <paramref name="message"/> to $NOTIFY_SOCKET, with <paramref name="fd"/> attached unless -1; 0, or an errno (ENOENT without a socket).</summary>
    public static int Notify(string message, int fd = -1) =>
        NotifySocket is { } socket ? Native.Notify.Send(socket, message, fd) : Errors.ENOENT;

    /// <summary>Closes an fd that is ours (a passed fd we do not use).</summary>
    public static void Close(int fd) => Native.Socket.Close(fd);
}
