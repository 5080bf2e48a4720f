using System.Globalization;
using Unsock.Core.Engine;

namespace Unsock.Core.Supervision;

/// <summary>
/// Who is at the other end of a control connection, as the kernel says: the pid, uid and gid recorded at
/// connect (SO_PEERCRED), and the supplementary groups of that process, read from /proc/PID/status and
/// trusted only because a pidfd for the same process (SO_PEERPIDFD) shows it still alive afterwards, so
/// the pid was not reused in between.
/// </summary>
public sealed record Caller(int Pid, uint Uid, uint Gid, IReadOnlyList<uint> Groups)
{
    /// <summary>Reads the caller of <paramref name="channel"/>.</summary>
    /// <exception cref="ControlChannelException">The kernel's answer cannot be read, or the caller is gone.</exception>
    public static Caller Of(ControlChannel channel)
    {
        var (pid, uid, gid) = channel.PeerCredentials();
        if (pid <= 0) throw new ControlChannelException($"{channel.Peer}: the kernel names no process for the caller (pid {pid})");
        int pidfd = channel.PeerPidfd();
        // Before 6.5 there is no SO_PEERPIDFD: a pidfd opened now is the next best (the pid is reused only after exit).
        if (pidfd < 0) pidfd = global::Interop.Pidfd.Open(pid, 0);
        if (pidfd < 0) throw new ControlChannelException($"pid {pid} (uid {uid}): the caller has exited");
        try
        {
            if (TargetProcess.ReadStatus(pid, "Groups:") is not [var groupList])
                throw new ControlChannelException($"pid {pid} (uid {uid}): cannot read /proc/{pid}/status for the caller's groups");
            var groups = new List<uint>();
            foreach (string part in (groupList ?? "").Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries))
            {
                if (!uint.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out uint g))
                    throw new ControlChannelException($"pid {pid} (uid {uid}): /proc/{pid}/status has a group \"{part}\" that is not a number");
                groups.Add(g);
            }
            // A pidfd becomes readable when its process exits: the groups read above were that process's own.
            if (global::Interop.Socket.Poll(pidfd, 1 /* POLLIN */, 0))
                throw new ControlChannelException($"pid {pid} (uid {uid}): the caller exited while it was being identified");
            return new Caller(pid, uid, gid, groups);
        }
        finally
        {
            global::Interop.ControlSocket.Close(pidfd);
        }
    }

    public override string ToString() => $"pid {Pid} (uid {Uid})";
}
