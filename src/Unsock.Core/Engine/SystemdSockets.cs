using System.Globalization;
using System.Text;

namespace Unsock.Core.Engine;

/// <summary>
/// The sockets systemd passed to a program (sd_listen_fds(3)): LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES in its
/// environment, the sockets at fds 3, 4, ... Read from /proc/PID/environ, the environment the program was started with.
/// </summary>
internal sealed record SystemdSockets(int ListenPid, int Count, string[] Names)
{
    /// <summary>SD_LISTEN_FDS_START.</summary>
    public const int FirstFd = 3;

    // The environment can be as large as the program's argument space; what we read of it is bounded.
    private const int MaxEnvironmentBytes = 1 << 20;
    private const int MaxSockets = 4096;

    /// <summary>Parses an environ block (NUL-separated NAME=VALUE); null with <paramref name="problem"/> when there are no usable sockets.</summary>
    public static SystemdSockets? Parse(ReadOnlySpan<byte> environ, out string problem)
    {
        string? pid = null, fds = null, names = null;
        foreach (var range in environ.Split((byte)0))
        {
            var entry = environ[range];
            if (entry.StartsWith("LISTEN_PID="u8)) pid = Encoding.UTF8.GetString(entry["LISTEN_PID="u8.Length..]);
            else if (entry.StartsWith("LISTEN_FDS="u8)) fds = Encoding.UTF8.GetString(entry["LISTEN_FDS="u8.Length..]);
            else if (entry.StartsWith("LISTEN_FDNAMES="u8)) names = Encoding.UTF8.GetString(entry["LISTEN_FDNAMES="u8.Length..]);
        }
        if (fds is null)
        {
            problem = "no LISTEN_FDS in the program's environment: systemd passed it no sockets";
            return null;
        }
        if (!int.TryParse(fds, NumberStyles.None, CultureInfo.InvariantCulture, out int count) || count < 1 || count > MaxSockets)
        {
            problem = $"LISTEN_FDS is \"{fds}\", not a number of sockets 1-{MaxSockets}";
            return null;
        }
        if (pid is null || !int.TryParse(pid, NumberStyles.None, CultureInfo.InvariantCulture, out int listenPid) || listenPid < 1)
        {
            problem = $"LISTEN_PID is {(pid is null ? "missing" : $"\"{pid}\"")}; systemd sets it to the process the sockets are for";
            return null;
        }
        // systemd names unnamed sockets "unknown"; fewer names than sockets leaves the rest unnamed.
        var list = new string[count];
        string[] given = names?.Split(':') ?? [];
        for (int i = 0; i < count; i++) list[i] = i < given.Length && given[i].Length > 0 ? given[i] : "unknown";
        problem = "";
        return new SystemdSockets(listenPid, count, list);
    }

    /// <summary>Reads them for thread <paramref name="tid"/>; LISTEN_PID must be its process or one of that process's ancestors (the launcher).</summary>
    public static SystemdSockets? Read(int tid, out string problem)
    {
        byte[] environ;
        try
        {
            using var file = new FileStream($"/proc/{tid}/environ", FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1, FileOptions.None);
            var buffer = new MemoryStream();
            var chunk = new byte[65536];
            int n;
            while (buffer.Length < MaxEnvironmentBytes && (n = file.Read(chunk, 0, chunk.Length)) > 0) buffer.Write(chunk, 0, n);
            environ = buffer.ToArray();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            problem = $"cannot read /proc/{tid}/environ: {e.Message}";
            return null;
        }
        var sockets = Parse(environ, out problem);
        if (sockets is null) return null;
        // LISTEN_PID names the process the sockets were passed to; under the launcher that is the launcher, an ancestor.
        int pid = tid;
        for (int depth = 0; depth < 64 && pid > 1; depth++)
        {
            if (TargetProcess.ReadStatus(pid, "Tgid:", "PPid:") is not [{ } tgid, { } ppid]) break;
            if (tgid == sockets.ListenPid.ToString(CultureInfo.InvariantCulture)) return sockets;
            if (!int.TryParse(ppid, out pid)) break;
        }
        problem = $"LISTEN_PID {sockets.ListenPid} is neither the program nor one of its ancestors: the sockets were passed to another process";
        return null;
    }

    /// <summary>
    /// The index of the socket a bind takes: the first named <paramref name="name"/>, or without a name the first not
    /// in <paramref name="taken"/>; -1 when there is none.
    /// </summary>
    public int Choose(string? name, IReadOnlySet<int> taken)
    {
        for (int i = 0; i < Count; i++)
        {
            if (name is null ? !taken.Contains(i) : Names[i] == name) return i;
        }
        return -1;
    }
}
