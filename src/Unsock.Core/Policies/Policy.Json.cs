using System.Buffers;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Unsock.Core.Policies;

public sealed partial class Policy
{
    /// <summary>Reads a JSON policy file; <see cref="Source"/> is <paramref name="path"/>.</summary>
    /// <exception cref="PolicyException">The file cannot be read or is not a valid policy.</exception>
    public static Policy Load(string path) => Load(path, out _);

    /// <summary>Reads a JSON policy file and gives its text too (the launcher sends it to the supervisor as it read it).</summary>
    /// <exception cref="PolicyException">The file cannot be read or is not a valid policy.</exception>
    public static Policy Load(string path, out string json)
    {
        ArgumentNullException.ThrowIfNull(path);
        try
        {
            json = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            throw PolicyFileReader.CannotRead(path, e);
        }
        return Parse(json, path);
    }

    /// <summary>Reads a JSON policy; <paramref name="source"/> names it in error messages.</summary>
    /// <exception cref="PolicyException">The text is not a valid policy.</exception>
    public static Policy Parse(string json, string source)
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(source);
        return new PolicyFileReader(source).Read(json);
    }

    /// <summary>The effective policy as an indented JSON policy file, every default written out.</summary>
    public string ToJson()
    {
        var buffer = new ArrayBufferWriter<byte>();
        var options = new JsonWriterOptions
        {
            Indented = true,
            // Paths and names are written as they are (no \u escapes for '+', '&' or non-ASCII); still valid JSON.
            Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        };
        using (var writer = new Utf8JsonWriter(buffer, options))
        {
            writer.WriteStartObject();
            writer.WriteNumber("version", 1);
            writer.WriteString("fakeAddress", AddressNotation.Format(FakeAddress));
            writer.WriteString("acceptConvert", AcceptConvert switch
            {
                AcceptConvert.All => "all",
                AcceptConvert.Vsock => "vsock",
                AcceptConvert.None => "none",
                _ => "converted",
            });
            writer.WriteBoolean("blockInet", BlockInet);
            writer.WriteBoolean("blockInet6", BlockInet6);
            writer.WriteStartArray("rules");
            foreach (PolicyRule rule in _rules)
            {
                WriteRule(writer, rule);
            }
            writer.WriteEndArray();
            writer.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static void WriteRule(Utf8JsonWriter writer, PolicyRule rule)
    {
        writer.WriteStartObject();
        writer.WriteString("direction", rule.Direction switch
        {
            RuleDirection.Bind => "bind",
            RuleDirection.Connect => "connect",
            _ => "any",
        });
        writer.WriteString("protocol", rule.Protocol switch
        {
            RuleProtocol.Tcp => "tcp",
            RuleProtocol.Udp => "udp",
            _ => "any",
        });
        if (rule.FromUnix is { } fromUnix)
        {
            writer.WriteString("fromUnix", fromUnix.Pattern);
        }
        if (rule.FromAbstract is { } fromAbstract)
        {
            writer.WriteString("fromAbstract", fromAbstract.Pattern);
        }
        if (rule.Address is System.Net.IPNetwork network)
        {
            writer.WriteString("address", AddressNotation.Format(network));
        }
        if (rule.Port is PortRange port)
        {
            if (port.First == port.Last)
            {
                writer.WriteNumber("port", port.First);
            }
            else
            {
                writer.WriteString("port", port.ToString());
            }
        }
        switch (rule.Action)
        {
            case UnixAction unix:
                writer.WriteString("unix", unix.Template);
                break;
            case DirectoryAction directory:
                writer.WriteString("directory", directory.Directory);
                break;
            case RejectAction reject when ErrnoNames.TryGetNumber(reject.Name, out int number) && number == reject.Errno:
                writer.WriteString("reject", reject.Name);
                break;
            case RejectAction reject:
                writer.WriteNumber("reject", reject.Errno);
                break;
            case AllowAction:
                writer.WriteBoolean("allow", true);
                break;
            case AbstractAction abstractName:
                writer.WriteString("abstract", abstractName.Template);
                break;
            case BlackholeAction:
                writer.WriteBoolean("blackhole", true);
                break;
            case SystemdAction { Name: null }:
                writer.WriteBoolean("systemd", true);
                break;
            case SystemdAction systemd:
                writer.WriteString("systemd", systemd.Name);
                break;
            case VsockAction vsock:
                writer.WriteStartObject("vsock");
                if (vsock.Cid == ControlFiles.VsockAddress.CidAny) writer.WriteString("cid", "any");
                else writer.WriteNumber("cid", vsock.Cid);
                writer.WriteNumber("port", vsock.Port);
                writer.WriteEndObject();
                break;
            case TipcAction tipc:
                writer.WriteStartObject("tipc");
                writer.WriteNumber("addrtype", tipc.AddrType);
                writer.WriteNumber("scope", tipc.Scope);
                writer.WriteNumber("type", tipc.Type);
                writer.WriteNumber("lower", tipc.Lower);
                writer.WriteNumber("upper", tipc.Upper);
                writer.WriteEndObject();
                break;
            case FirecrackerAction firecracker:
                writer.WriteStartObject("firecracker");
                writer.WriteString("socket", firecracker.Socket);
                writer.WriteNumber("port", firecracker.Port);
                writer.WriteEndObject();
                break;
            default:
                throw new InvalidOperationException($"rules[{rule.Index}] has an action of unknown type {rule.Action.GetType().Name}");
        }
        if (rule.Mode is int mode)
        {
            writer.WriteString("mode", OctalMode.Format(mode));
        }
        if (rule.NoRemove)
        {
            writer.WriteBoolean("noremove", true);
        }
        writer.WriteEndObject();
    }
}
