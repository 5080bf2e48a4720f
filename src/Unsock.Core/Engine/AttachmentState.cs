using System.Net;
using System.Text.Json;
using System.Text.Json.Serialization;
using Unsock.Core.Addressing;
using Native = global::Interop;

namespace Unsock.Core.Engine;

/// <summary>
/// What an attachment knows that the kernel does not, in a form that outlives the process: the sockets it
/// converted (so that getsockname/getpeername, accept and options go on being answered as before) and the
/// socket files its targets bound (so that they are removed when their sockets are gone). A supervisor that
/// restarts writes it before it exits and gives it back to <see cref="NotificationEngine.Attach"/>.
/// </summary>
public sealed class AttachmentState
{
    public List<SocketState> Sockets { get; set; } = [];
    public List<FileState> Files { get; set; } = [];

    public string ToJson() => JsonSerializer.Serialize(this, AttachmentStateJson.Default.AttachmentState);

    /// <exception cref="JsonException">The text is not a state document.</exception>
    public static AttachmentState FromJson(string json) =>
        JsonSerializer.Deserialize(json, AttachmentStateJson.Default.AttachmentState) ?? throw new JsonException("the state document is null");
}

/// <summary>One converted socket (<see cref="ConvertedSocket"/>): the inode is the kernel's, the rest is ours.</summary>
public sealed class SocketState
{
    public ulong Inode { get; set; }
    public int Family { get; set; }
    public bool IPv6 { get; set; }
    /// <summary>Addresses as "address port" pairs; null when the socket has none.</summary>
    public string? Local { get; set; }
    public string? Peer { get; set; }
    public bool AcceptedFromListener { get; set; }
    /// <summary>
    /// False for a socket swapped in by a call not answered yet (its answer waited for an epoll move): handed over, that
    /// call is handled again and answered as a restarted one, not refused as a second bind or connect.
    /// </summary>
    public bool Answered { get; set; } = true;
    /// <summary>The sun_path of its socket file, when it is a listener we bound.</summary>
    public string? File { get; set; }
    public byte[]? UnixName { get; set; }
    public bool UnixNameIsPeer { get; set; }
    public List<OptionState>? Options { get; set; }
}

public sealed class OptionState
{
    public int Level { get; set; }
    public int Option { get; set; }
    public byte[] Value { get; set; } = [];
}

/// <summary>A socket file a target bound through us (<see cref="BoundFile"/>).</summary>
public sealed class FileState
{
    public string Path { get; set; } = "";
    public string SunPath { get; set; } = "";
    public ulong Device { get; set; }
    public ulong Inode { get; set; }
    public ulong SocketInode { get; set; }
    /// <summary>Who created it and removes it: null for the supervisor itself.</summary>
    public uint? OwnerUid { get; set; }
    public uint? OwnerGid { get; set; }
    public uint[]? OwnerGroups { get; set; }
    public bool NoRemove { get; set; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, WriteIndented = false)]
[JsonSerializable(typeof(AttachmentState))]
internal sealed partial class AttachmentStateJson : JsonSerializerContext;

internal sealed partial class SocketRegistry
{
    /// <summary>Everything registered now (or only socket files and their listeners), for <see cref="AttachmentState"/>.</summary>
    public AttachmentState Export(bool filesOnly = false)
    {
        var state = new AttachmentState();
        lock (_gate)
        {
            foreach (var f in _files.Values)
                state.Files.Add(new FileState
                {
                    Path = f.Path, SunPath = f.SunPath, Device = f.Device, Inode = f.Inode, SocketInode = f.SocketInode,
                    OwnerUid = f.Owner?.Uid, OwnerGid = f.Owner?.Gid, OwnerGroups = f.Owner?.Groups, NoRemove = f.NoRemove,
                });
            foreach (var s in _sockets.Values)
                if (!filesOnly || s.File is not null)
                    state.Sockets.Add(new SocketState
                {
                    Inode = s.Inode, Family = s.Family, IPv6 = s.IPv6, Local = Format(s.Local), Peer = Format(s.Peer),
                    AcceptedFromListener = s.AcceptedFromListener, Answered = s.Answered, File = s.File?.SunPath, UnixName = s.UnixName,
                    UnixNameIsPeer = s.UnixNameIsPeer, Options = s.ExportOptions(),
                });
        }
        return state;
    }

    /// <summary>
    /// Takes back what <see cref="Export"/> wrote, for a target that is still the one it was written for. Socket
    /// files are checked again, as their owner and in the target's root: a file that is not there, not a socket,
    /// or not the same inode is not ours any more and is left alone. Sockets the kernel no longer has are dropped
    /// by the next sweep, as usual. Returns the number of files taken back and the problems found, in words.
    /// </summary>
    public int Import(AttachmentState state, int targetPid, List<string> problems)
    {
        var files = new Dictionary<string, BoundFile>(StringComparer.Ordinal);
        foreach (var f in state.Files)
        {
            var file = Reopen(f, targetPid, out string? problem);
            if (file is null) problems.Add($"socket file {f.Path}: {problem}; left alone");
            else files[f.SunPath] = file;
        }
        lock (_gate)
        {
            foreach (var s in state.Sockets)
            {
                InetEndpoint? local = null, peer = null;
                if ((s.Local is not null && !TryParse(s.Local, out local)) || (s.Peer is not null && !TryParse(s.Peer, out peer)))
                {
                    problems.Add($"socket {s.Inode}: an address that does not parse (\"{s.Local}\", \"{s.Peer}\"); not taken back");
                    continue;
                }
                var socket = new ConvertedSocket(s.Inode, s.Family, s.IPv6)
                {
                    Local = local, Peer = peer, Answered = s.Answered, AcceptedFromListener = s.AcceptedFromListener,
                    UnixName = s.UnixName, UnixNameIsPeer = s.UnixNameIsPeer, Sequence = ++_sequence,
                };
                if (s.File is not null && files.TryGetValue(s.File, out var file) && file.SocketInode == s.Inode)
                {
                    socket.File = file;
                    file.Listener = socket;
                }
                foreach (var o in s.Options ?? []) socket.SetOption(o.Level, o.Option, o.Value);
                _sockets[s.Inode] = socket;
            }
            foreach (var (sunPath, file) in files)
            {
                file.Sequence = ++_sequence;
                _files[sunPath] = file;
            }
            _count = _sockets.Count;
        }
        return files.Count;
    }

    /// <summary>Opens the directory of a recorded socket file again and checks the entry; null (and why) unless it is still ours.</summary>
    private static BoundFile? Reopen(FileState f, int targetPid, out string? problem)
    {
        problem = null;
        string name = System.IO.Path.GetFileName(f.Path);
        string directoryPath = System.IO.Path.GetDirectoryName(f.Path) ?? "/";
        if (name.Length == 0 || !f.Path.StartsWith('/'))
        {
            problem = "not an absolute path to a file";
            return null;
        }
        var owner = f.OwnerUid is { } uid && f.OwnerGid is { } gid ? new FsCredentials(uid, gid, f.OwnerGroups ?? []) : null;
        // Its root first, as ourselves; then the directory as the file's owner, as at bind.
        int err = TargetIdentity.OpenForeignRoot(targetPid, out int root);
        if (err != 0)
        {
            problem = $"the target's root cannot be opened ({Errors.Name(err)})";
            return null;
        }
        Native.FileSystem.DirectoryHandle? directory;
        try
        {
            using var identity = TargetIdentity.Assume(owner);
            if (identity.Errno != 0)
            {
                problem = $"its owner's identity ({owner}) cannot be taken";
                return null;
            }
            err = root >= 0 ? Native.FileSystem.OpenDirectoryInRoot(root, directoryPath, out directory)
                : Native.FileSystem.OpenDirectory(directoryPath, out directory);
        }
        finally
        {
            if (root >= 0) Native.Socket.Close(root);
        }
        if (err != 0 || directory is null)
        {
            problem = $"its directory cannot be opened ({Errors.Name(err)})";
            return null;
        }
        if (Native.FileSystem.StatAt(directory.Fd, name, out var st) != 0 || !st.IsSocket || st.Device != f.Device || st.Inode != f.Inode)
        {
            directory.Dispose();
            problem = "it is gone or was replaced";
            return null;
        }
        return new BoundFile(f.Path, f.SunPath, directory, name, f.Device, f.Inode, f.SocketInode, owner) { NoRemove = f.NoRemove };
    }

    private static string? Format(InetEndpoint? e) => e is { } v ? $"{v.Address} {v.Port}" : null;

    private static bool TryParse(string text, out InetEndpoint? endpoint)
    {
        endpoint = null;
        int space = text.LastIndexOf(' ');
        if (space <= 0 || !IPAddress.TryParse(text.AsSpan(0, space), out var address) || !int.TryParse(text.AsSpan(space + 1), out int port)
            || port is < 0 or > 65535)
            return false;
        endpoint = new InetEndpoint(address, port);
        return true;
    }
}
