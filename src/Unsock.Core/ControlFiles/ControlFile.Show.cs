using System.Buffers;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Unsock.Core.ControlFiles;

// What `unsock-launch control show` prints.
public sealed partial class ControlFile
{
    /// <summary>What the file says, as indented JSON: its kind, destination and socket options.</summary>
    public string ToJson(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("file", path);
            switch (Kind)
            {
                case ControlFileKind.Vsock:
                    w.WriteString("kind", "vsock");
                    w.WriteStartObject("vsock");
                    if (VsockCid == VsockAddress.CidAny) w.WriteString("cid", "any");
                    else w.WriteNumber("cid", VsockCid);
                    w.WriteNumber("port", VsockPort);
                    w.WriteEndObject();
                    break;
                case ControlFileKind.Tipc:
                    w.WriteString("kind", "tipc");
                    w.WriteStartObject("tipc");
                    w.WriteNumber("addrtype", TipcAddrType);
                    w.WriteNumber("scope", TipcScope);
                    w.WriteNumber("type", TipcType);
                    w.WriteNumber("lower", TipcLower);
                    w.WriteNumber("upper", TipcUpper);
                    w.WriteEndObject();
                    break;
                case ControlFileKind.FirecrackerProxy:
                    w.WriteString("kind", "firecracker");
                    w.WriteStartObject("firecracker");
                    w.WriteString("socket", ProxyPath);
                    w.WriteNumber("port", VsockPort);
                    w.WriteEndObject();
                    break;
                default:
                    w.WriteString("kind", "other");
                    w.WriteNumber("family", DestinationFamily);
                    w.WriteString("destination", Convert.ToHexString(Destination.Span));
                    break;
            }
            w.WriteStartArray("parameters");
            foreach (var p in Parameters)
            {
                w.WriteStartObject();
                w.WriteNumber("level", p.Level);
                w.WriteNumber("option", p.Option);
                w.WriteString("value", Convert.ToHexString(p.Value.Span));
                w.WriteString("means", p.Describe());
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteString("description", ToString());
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>
    /// Why <paramref name="path"/> is not a control file, in plain words ("no such file", "it is a directory", "it is
    /// 12 bytes; a control file is exactly 452"), for a path <see cref="TryLoad(string, out ControlFile?)"/> turned down.
    /// </summary>
    public static string WhyNot(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (path.Length == 0) return "the file name is empty";
        FileSystemInfo? target;
        try
        {
            target = File.ResolveLinkTarget(path, returnFinalTarget: true);
        }
        catch (IOException)
        {
            target = null;
        }
        string real = target?.FullName ?? path;
        if (Directory.Exists(real)) return "it is a directory";
        if (!File.Exists(real)) return target is null ? "no such file" : $"it is a symlink to {real}, which does not exist";
        if (IsSpecial(real)) return "it is not a regular file (a socket, FIFO or device)";
        var info = new FileInfo(real);
        if (info.Length != Size) return $"it is {info.Length} bytes; a control file is a regular file of exactly {Size}";
        return "it does not start with the control-file magic \"UNSK\"";
    }

    private static unsafe bool IsSpecial(string path)
    {
        Tmds.Linux.stat st;
        fixed (byte* p = Encoding.UTF8.GetBytes(path + "\0"))
        {
            if (Tmds.Linux.LibC.stat(p, &st) != 0) return false;
        }
        return (st.st_mode & Tmds.Linux.LibC.S_IFMT) != Tmds.Linux.LibC.S_IFREG;
    }
}
