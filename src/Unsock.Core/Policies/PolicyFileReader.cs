using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Unsock.Core.ControlFiles;

namespace Unsock.Core.Policies;

/// <summary>Reads the JSON policy format (version 1) with JsonDocument, checking every key and value.</summary>
internal sealed class PolicyFileReader
{
    private static readonly string[] TopLevelKeys = ["version", "fakeAddress", "acceptConvert", "blockInet", "blockInet6", "rules", "allowed"];
    private static readonly string[] RuleKeys = ["direction", "protocol", "address", "port", "fromUnix", "fromAbstract",
        "unix", "directory", "abstract", "vsock", "tipc", "firecracker", "systemd", "blackhole", "reject", "allow", "mode", "noremove"];
    private static readonly string[] ActionKeys = ["unix", "directory", "abstract", "vsock", "tipc", "firecracker", "systemd", "blackhole", "reject", "allow"];
    private const string ActionList = "\"unix\", \"directory\", \"abstract\", \"vsock\", \"tipc\", \"firecracker\", \"systemd\", \"blackhole\", \"reject\", \"allow\"";

    // JsonDocument's default depth limit.
    private const int MaxDepth = 64;

    private static readonly JsonDocumentOptions DocumentOptions = new()
    {
        CommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
    };

    private readonly string _source;

    public PolicyFileReader(string source) => _source = source;

    public Policy Read(string json)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, DocumentOptions);
        }
        catch (JsonException e)
        {
            throw SyntaxError(json, e);
        }

        using (document)
        {
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new PolicyException($"{_source}: the top level must be an object with \"rules\" and settings", _source);
            }
            Dictionary<string, JsonElement> keys = ReadKeys(root, null, TopLevelKeys);

            if (keys.TryGetValue("version", out JsonElement version)
                && !(version.ValueKind == JsonValueKind.Number && version.TryGetInt32(out int number) && number == 1))
            {
                throw PolicyException.At(_source, null, "version", $"{Show(version)} is not a supported version; this program reads version 1");
            }

            IPAddress fakeAddress = Policy.DefaultFakeAddress;
            if (keys.TryGetValue("fakeAddress", out JsonElement fake))
            {
                string text = ReadString(fake, null, "fakeAddress", "an IPv4 or IPv6 address");
                if (!AddressNotation.TryParseAddress(text, out IPAddress? parsed))
                {
                    throw PolicyException.At(_source, null, "fakeAddress", $"{Show(fake)} is not an IPv4 or IPv6 address");
                }
                fakeAddress = parsed;
            }

            AcceptConvert acceptConvert = AcceptConvert.Converted;
            if (keys.TryGetValue("acceptConvert", out JsonElement convert))
            {
                acceptConvert = ReadString(convert, null, "acceptConvert", "\"converted\", \"none\", \"all\" or \"vsock\"") switch
                {
                    "converted" => AcceptConvert.Converted,
                    "none" => AcceptConvert.None,
                    "all" => AcceptConvert.All,
                    "vsock" => AcceptConvert.Vsock,
                    _ => throw PolicyException.At(_source, null, "acceptConvert", $"{Show(convert)} is not one of \"converted\", \"none\", \"all\", \"vsock\""),
                };
            }

            bool blockInet = ReadOptionalBoolean(keys, "blockInet");
            bool blockInet6 = ReadOptionalBoolean(keys, "blockInet6");

            var rules = new List<PolicyRule>();
            if (keys.TryGetValue("rules", out JsonElement ruleArray))
            {
                if (ruleArray.ValueKind != JsonValueKind.Array)
                {
                    throw PolicyException.At(_source, null, "rules", $"{DescribeKind(ruleArray)}, expected an array of rules");
                }
                foreach (JsonElement rule in ruleArray.EnumerateArray())
                {
                    rules.Add(ReadRule(rule, rules.Count));
                }
            }

            return new Policy(rules, fakeAddress, acceptConvert, blockInet, blockInet6, _source);
        }
    }

    private PolicyRule ReadRule(JsonElement rule, int index)
    {
        if (rule.ValueKind != JsonValueKind.Object)
        {
            throw PolicyException.At(_source, index, null, $"{DescribeKind(rule)}, expected a rule object");
        }
        Dictionary<string, JsonElement> keys = ReadKeys(rule, index, RuleKeys);

        string[] actions = ActionKeys.Where(keys.ContainsKey).ToArray();
        if (actions.Length == 0)
        {
            throw PolicyException.At(_source, index, null,
                $"has no action; give exactly one of {ActionList}");
        }
        if (actions.Length > 1)
        {
            throw new PolicyException(
                $"{_source}: rules[{index}]: has both \"{actions[0]}\" and \"{actions[1]}\"; a rule takes exactly one action",
                _source, index, actions[1]);
        }

        RuleDirection direction = RuleDirection.Any;
        if (keys.TryGetValue("direction", out JsonElement directionValue))
        {
            direction = ReadString(directionValue, index, "direction", "\"bind\", \"connect\" or \"any\"") switch
            {
                "bind" => RuleDirection.Bind,
                "connect" => RuleDirection.Connect,
                "any" => RuleDirection.Any,
                _ => throw PolicyException.At(_source, index, "direction", $"{Show(directionValue)} is not one of \"bind\", \"connect\", \"any\""),
            };
        }

        RuleProtocol protocol = RuleProtocol.Any;
        if (keys.TryGetValue("protocol", out JsonElement protocolValue))
        {
            protocol = ReadString(protocolValue, index, "protocol", "\"tcp\", \"udp\" or \"any\"") switch
            {
                "tcp" => RuleProtocol.Tcp,
                "udp" => RuleProtocol.Udp,
                "any" => RuleProtocol.Any,
                _ => throw PolicyException.At(_source, index, "protocol", $"{Show(protocolValue)} is not one of \"tcp\", \"udp\", \"any\""),
            };
        }

        IPNetwork? address = null;
        if (keys.TryGetValue("address", out JsonElement addressValue))
        {
            string text = ReadString(addressValue, index, "address", "an IPv4 or IPv6 address or CIDR");
            if (!AddressNotation.TryParseNetwork(text, out IPNetwork network, out string? problem))
            {
                throw PolicyException.At(_source, index, "address", $"{Show(addressValue)} {problem}");
            }
            address = network;
        }

        PortRange? port = null;
        if (keys.TryGetValue("port", out JsonElement portValue))
        {
            port = ReadPort(portValue, index);
        }

        RuleAction action = actions[0] switch
        {
            "unix" => ReadUnix(keys["unix"], index),
            "directory" => ReadDirectory(keys["directory"], index),
            "reject" => ReadReject(keys["reject"], index),
            "allow" => ReadAllow(keys["allow"], index),
            _ => ReadDestination(actions[0], keys[actions[0]], index),
        };

        UnixPathPattern? fromUnix = null, fromAbstract = null;
        if (keys.TryGetValue("fromUnix", out JsonElement fromUnixValue))
        {
            fromUnix = ReadPattern(fromUnixValue, index, "fromUnix", absolute: true);
        }
        if (keys.TryGetValue("fromAbstract", out JsonElement fromAbstractValue))
        {
            fromAbstract = ReadPattern(fromAbstractValue, index, "fromAbstract", absolute: false);
        }
        if (PolicyRule.UnixMatchProblem(address, port, action, fromUnix, fromAbstract) is string unixProblem)
        {
            string key = fromUnix is not null ? "fromUnix" : "fromAbstract";
            throw PolicyException.At(_source, index, key, $"{Show(keys[key])} with \"{actions[0]}\": {unixProblem}");
        }
        if (action is DestinationAction { Connects: false } && direction == RuleDirection.Connect)
        {
            throw PolicyException.At(_source, index, "direction",
                $"\"connect\" with \"{actions[0]}\": {actions[0]} decides what a bind gets; it cannot apply to connect");
        }

        bool noRemove = false;
        if (keys.TryGetValue("noremove", out JsonElement noRemoveValue))
        {
            if (noRemoveValue.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            {
                throw PolicyException.At(_source, index, "noremove", $"{DescribeKind(noRemoveValue)}, expected true or false");
            }
            noRemove = noRemoveValue.ValueKind == JsonValueKind.True;
            if (noRemove && action is not RedirectAction)
            {
                throw PolicyException.At(_source, index, "noremove",
                    $"applies only to unix and directory rules (the rules that create socket files), not to \"{actions[0]}\"");
            }
        }

        int? mode = null;
        if (keys.TryGetValue("mode", out JsonElement modeValue))
        {
            if (action is not RedirectAction)
            {
                throw PolicyException.At(_source, index, "mode",
                    $"applies only to unix and directory rules (it is the permission of the socket file a bind creates), not to \"{actions[0]}\"");
            }
            if (modeValue.ValueKind == JsonValueKind.Number)
            {
                throw PolicyException.At(_source, index, "mode",
                    $"{Show(modeValue)} is a number; write the mode as an octal string such as \"0660\" (JSON has no octal numbers)");
            }
            string text = ReadString(modeValue, index, "mode", OctalMode.Expected);
            if (!OctalMode.TryParse(text, out int parsed))
            {
                throw PolicyException.At(_source, index, "mode", $"{Show(modeValue)} is not {OctalMode.Expected}");
            }
            mode = parsed;
        }

        if (protocol == RuleProtocol.Udp && action is RedirectAction)
        {
            throw PolicyException.At(_source, index, "protocol",
                $"\"udp\" with \"{actions[0]}\": datagram rules are not supported yet (unix and directory rules redirect TCP only)");
        }

        if (protocol == RuleProtocol.Udp && action is DestinationAction)
        {
            throw PolicyException.At(_source, index, "protocol",
                $"\"udp\" with \"{actions[0]}\": {actions[0]} rules apply to stream (TCP) sockets only");
        }

        return new PolicyRule(index, direction, protocol, address, port, action, mode, fromUnix, fromAbstract, noRemove);
    }

    private UnixPathPattern ReadPattern(JsonElement value, int index, string key, bool absolute)
    {
        string text = ReadString(value, index, key, absolute ? "a path pattern such as \"/var/run/*.sock\"" : "an abstract name pattern such as \"app/*\"");
        if (absolute && !text.StartsWith('/'))
        {
            throw PolicyException.At(_source, index, key, $"{Show(value)} is not an absolute path pattern (it must start with '/')");
        }
        if (UnixPathPattern.Check(text) is string problem)
        {
            throw PolicyException.At(_source, index, key, $"{Show(value)} {problem}");
        }
        return new UnixPathPattern(text);
    }

    private DestinationAction ReadDestination(string key, JsonElement value, int index)
    {
        switch (key)
        {
            case "blackhole":
                if (value.ValueKind != JsonValueKind.True)
                {
                    throw PolicyException.At(_source, index, key, $"{Show(value)} is not allowed; \"blackhole\" takes only true (leave it out otherwise)");
                }
                return new BlackholeAction();
            case "systemd":
                if (value.ValueKind == JsonValueKind.True)
                {
                    return new SystemdAction(null);
                }
                string name = ReadString(value, index, key, "true (the next passed socket) or the socket's name in LISTEN_FDNAMES");
                if (name.Length == 0 || name.Length > 255 || name.Any(c => c == ':' || char.IsControl(c)))
                {
                    throw PolicyException.At(_source, index, key, $"{Show(value)} is not a systemd socket name (1-255 characters, no ':' or control characters)");
                }
                return new SystemdAction(name);
            case "abstract":
                string template = ReadString(value, index, key, "a name template such as \"unsock/%p\"");
                if (AbstractAction.CheckTemplate(template) is string problem)
                {
                    throw PolicyException.At(_source, index, key, $"{Show(value)} {problem}");
                }
                return new AbstractAction(template);
        }
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw PolicyException.At(_source, index, key, $"{DescribeKind(value)}, expected an object such as {ExampleOf(key)}");
        }
        string[] known = key switch
        {
            "vsock" => ["cid", "port"],
            "tipc" => ["addrtype", "scope", "type", "lower", "upper"],
            _ => ["socket", "port"],
        };
        var fields = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        foreach (JsonProperty property in value.EnumerateObject())
        {
            string at = $"{key}.{property.Name}";
            if (Array.IndexOf(known, property.Name) < 0)
            {
                throw PolicyException.At(_source, index, at, $"unknown key; the known keys are {string.Join(", ", known)}");
            }
            if (!fields.TryAdd(property.Name, property.Value))
            {
                throw PolicyException.At(_source, index, at, "appears twice");
            }
        }
        switch (key)
        {
            case "vsock":
            {
                uint port = ReadUInt32(fields, index, key, "port", required: true, 0, uint.MaxValue - 1, "a VSOCK port 0-4294967294")!.Value;
                uint cid = VsockAddress.CidAny;
                if (fields.TryGetValue("cid", out JsonElement cidValue))
                {
                    cid = cidValue.ValueKind == JsonValueKind.String && cidValue.GetString() == "any"
                        ? VsockAddress.CidAny
                        : ReadUInt32(fields, index, key, "cid", required: true, 0, uint.MaxValue, "a CID 0-4294967295 or \"any\"")!.Value;
                }
                return new VsockAction(cid, port);
            }
            case "tipc":
            {
                uint addrType = ReadUInt32(fields, index, key, "addrtype", required: false, 1, 3, "1 (service range), 2 (service address) or 3 (socket address)") ?? TipcAddress.ServiceAddress;
                uint scope = ReadUInt32(fields, index, key, "scope", required: false, 1, 3, "1 (zone), 2 (cluster) or 3 (node)") ?? (uint)TipcAddress.ClusterScope;
                uint type = ReadUInt32(fields, index, key, "type", required: true, 0, uint.MaxValue, "a number 0-4294967295")!.Value;
                uint lower = ReadUInt32(fields, index, key, "lower", required: true, 0, uint.MaxValue, "a number 0-4294967295")!.Value;
                uint upper = ReadUInt32(fields, index, key, "upper", required: false, 0, uint.MaxValue, "a number 0-4294967295") ?? lower;
                return new TipcAction((byte)addrType, (sbyte)scope, type, lower, upper);
            }
            default:
            {
                if (!fields.TryGetValue("socket", out JsonElement socketValue))
                {
                    throw PolicyException.At(_source, index, $"{key}.socket", "is missing; it names the Firecracker multiplexer's Unix socket");
                }
                string socket = ReadString(socketValue, index, $"{key}.socket", "an absolute path");
                if (FirecrackerAction.CheckSocket(socket) is string problem)
                {
                    throw PolicyException.At(_source, index, $"{key}.socket", $"{Show(socketValue)} {problem}");
                }
                uint port = ReadUInt32(fields, index, key, "port", required: true, 0, uint.MaxValue - 1, "a guest port 0-4294967294")!.Value;
                return new FirecrackerAction(socket, port);
            }
        }
    }

    private static string ExampleOf(string key) => key switch
    {
        "vsock" => "{ \"cid\": 2, \"port\": 5678 }",
        "tipc" => "{ \"type\": 128, \"lower\": 99 }",
        _ => "{ \"socket\": \"/run/fc/v.sock\", \"port\": 5678 }",
    };

    private uint? ReadUInt32(Dictionary<string, JsonElement> fields, int index, string key, string field, bool required, uint min, uint max, string expected)
    {
        if (!fields.TryGetValue(field, out JsonElement value))
        {
            return required ? throw PolicyException.At(_source, index, $"{key}.{field}", $"is missing; expected {expected}") : null;
        }
        if (value.ValueKind == JsonValueKind.Number && value.TryGetUInt32(out uint number) && number >= min && number <= max)
        {
            return number;
        }
        throw PolicyException.At(_source, index, $"{key}.{field}", $"{Show(value)} is not {expected}");
    }

    private PortRange ReadPort(JsonElement value, int index)
    {
        const string Expected = "a port number 0-65535 or a range string \"first-last\"";
        if (value.ValueKind == JsonValueKind.Number)
        {
            if (value.TryGetInt32(out int number) && number >= 0 && number <= PortRange.MaxPort)
            {
                return new PortRange(number, number);
            }
            throw PolicyException.At(_source, index, "port", $"{Show(value)} is not a port number (0-65535)");
        }
        string text = ReadString(value, index, "port", Expected);
        string[] parts = text.Split('-');
        if (parts.Length is 1 or 2
            && TryParsePort(parts[0], out int first)
            && TryParsePort(parts[^1], out int last))
        {
            if (first > last)
            {
                throw PolicyException.At(_source, index, "port", $"{Show(value)} is a range whose first port is greater than its last");
            }
            return new PortRange(first, last);
        }
        throw PolicyException.At(_source, index, "port", $"{Show(value)} is not {Expected}");
    }

    private static bool TryParsePort(string text, out int port)
    {
        port = 0;
        if (text.Length is 0 or > 5 || !text.All(char.IsAsciiDigit))
        {
            return false;
        }
        port = int.Parse(text, NumberStyles.None, CultureInfo.InvariantCulture);
        return port <= PortRange.MaxPort;
    }

    private UnixAction ReadUnix(JsonElement value, int index)
    {
        string template = ReadString(value, index, "unix", "a path template such as \"/run/app/%p.sock\"");
        if (UnixAction.CheckTemplate(template) is string problem)
        {
            throw PolicyException.At(_source, index, "unix", $"{Show(value)} {problem}");
        }
        return new UnixAction(template);
    }

    private DirectoryAction ReadDirectory(JsonElement value, int index)
    {
        string directory = ReadString(value, index, "directory", "an absolute directory path");
        if (DirectoryAction.CheckDirectory(directory) is string problem)
        {
            throw PolicyException.At(_source, index, "directory", $"{Show(value)} {problem}");
        }
        return new DirectoryAction(directory);
    }

    private RejectAction ReadReject(JsonElement value, int index)
    {
        const string Expected = "an errno name such as \"EACCES\" or \"ECONNREFUSED\", or a number 1-4095";
        if (value.ValueKind == JsonValueKind.Number)
        {
            if (value.TryGetInt32(out int number) && number >= 1 && number <= ErrnoNames.MaxErrno)
            {
                return RejectAction.FromNumber(number);
            }
            throw PolicyException.At(_source, index, "reject", $"{Show(value)} is not an errno number (1-4095)");
        }
        string name = ReadString(value, index, "reject", Expected).ToUpperInvariant();
        if (ErrnoNames.TryGetNumber(name, out int errno))
        {
            return new RejectAction(errno, name);
        }
        throw PolicyException.At(_source, index, "reject", $"{Show(value)} is not {Expected}");
    }

    private AllowAction ReadAllow(JsonElement value, int index)
    {
        if (value.ValueKind != JsonValueKind.True)
        {
            throw PolicyException.At(_source, index, "allow", $"{Show(value)} is not allowed; \"allow\" takes only true (leave it out otherwise)");
        }
        return new AllowAction();
    }

    private bool ReadOptionalBoolean(Dictionary<string, JsonElement> keys, string key)
    {
        if (!keys.TryGetValue(key, out JsonElement value))
        {
            return false;
        }
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw PolicyException.At(_source, null, key, $"{DescribeKind(value)}, expected true or false"),
        };
    }

    private Dictionary<string, JsonElement> ReadKeys(JsonElement obj, int? index, string[] known)
    {
        var keys = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        foreach (JsonProperty property in obj.EnumerateObject())
        {
            if (Array.IndexOf(known, property.Name) < 0)
            {
                throw PolicyException.At(_source, index, property.Name, $"unknown key; the known keys are {string.Join(", ", known)}");
            }
            if (!keys.TryAdd(property.Name, property.Value))
            {
                throw PolicyException.At(_source, index, property.Name, "appears twice");
            }
        }
        return keys;
    }

    private string ReadString(JsonElement value, int? index, string field, string expected) =>
        value.ValueKind == JsonValueKind.String
            ? value.GetString()!
            : throw PolicyException.At(_source, index, field, $"{DescribeKind(value)}, expected {expected}");

    /// <summary>Why a policy file could not be read, in our words (.NET's name the exception, not the problem).</summary>
    internal static PolicyException CannotRead(string path, Exception e)
    {
        string why = e switch
        {
            _ when path.Length == 0 => "the file name is empty",
            _ when Directory.Exists(path) => "it is a directory",
            FileNotFoundException or DirectoryNotFoundException => "no such file",
            UnauthorizedAccessException => "permission denied",
            PathTooLongException => "the path is too long",
            // On Linux an IOException's HResult is the errno when there is one; strerror names it.
            IOException { HResult: > 0 and < 4096 } => Marshal.GetPInvokeErrorMessage(e.HResult),
            _ => "it cannot be read",
        };
        return new PolicyException($"{path}: cannot read the policy file: {why}", path, innerException: e);
    }

    /// <summary>
    /// "line 3, column 34: invalid JSON: expected ',' or ']', found '}'". The reader is run again up to the error
    /// to know what was open and what came last: JsonException's own text is .NET's, not ours.
    /// </summary>
    private PolicyException SyntaxError(string json, JsonException e)
    {
        if (json.AsSpan().Trim().Length == 0)
        {
            return new PolicyException($"{_source}: invalid JSON: the file is empty; a policy is a JSON object such as {{ \"rules\": [] }}",
                _source, innerException: e);
        }

        byte[] utf8 = Encoding.UTF8.GetBytes(json);
        var reader = new Utf8JsonReader(utf8, new JsonReaderOptions
        {
            CommentHandling = JsonCommentHandling.Skip,
            AllowTrailingCommas = true,
        });
        var open = new Stack<char>();
        JsonTokenType last = JsonTokenType.None;
        string? lastKey = null;
        long consumed = 0;
        try
        {
            while (reader.Read())
            {
                last = reader.TokenType;
                switch (last)
                {
                    case JsonTokenType.StartObject:
                        open.Push('}');
                        break;
                    case JsonTokenType.StartArray:
                        open.Push(']');
                        break;
                    case JsonTokenType.EndObject or JsonTokenType.EndArray:
                        open.Pop();
                        break;
                    case JsonTokenType.PropertyName:
                        lastKey = reader.GetString();
                        break;
                }
                consumed = reader.BytesConsumed;
            }
        }
        catch (JsonException)
        {
            // Expected: the same error JsonDocument met; what was read up to it is what we need.
        }

        int at = Encoding.UTF8.GetCharCount(utf8, 0, (int)consumed);
        bool comma = false, openComment;
        while (true)
        {
            at = SkipSpaceAndComments(json, at, out openComment);
            if (!comma && at < json.Length && json[at] == ',' && last is not (JsonTokenType.None or JsonTokenType.StartObject or JsonTokenType.StartArray or JsonTokenType.PropertyName))
            {
                comma = true;
                at++;
                continue;
            }
            break;
        }

        string problem = openComment
            ? "a /* comment is not closed with */"
            : DescribeSyntaxError(json, at, open, last, lastKey, comma);
        int line = 1, lineStart = 0;
        for (int i = 0; i < at && i < json.Length; i++)
        {
            if (json[i] == '\n')
            {
                line++;
                lineStart = i + 1;
            }
        }
        return new PolicyException($"{_source}: line {line}, column {at - lineStart + 1}: invalid JSON: {problem}", _source, innerException: e);
    }

    private static string DescribeSyntaxError(string json, int at, Stack<char> open, JsonTokenType last, string? lastKey, bool comma)
    {
        if (open.Count >= MaxDepth)
        {
            return $"objects and arrays are nested more than {MaxDepth} deep";
        }
        bool inObject = open.Count > 0 && open.Peek() == '}';
        bool keyExpected = inObject && (last == JsonTokenType.StartObject || comma);
        bool valueExpected = last is JsonTokenType.None or JsonTokenType.PropertyName
            || (open.Count > 0 && open.Peek() == ']' && (last == JsonTokenType.StartArray || comma));

        if (at < json.Length)
        {
            char c = json[at];
            if (c == '"')
            {
                int end = StringEnd(json, at);
                if (end < 0)
                {
                    return $"the string {Shorten(json[at..LineEnd(json, at)])} is not closed: a '\"' is missing before the end of the line";
                }
                string text = json[at..(end + 1)];
                if (keyExpected)
                {
                    int next = SkipSpaceAndComments(json, end + 1, out _);
                    return $"expected ':' after the key {Shorten(text)}, found {Found(json, next)}";
                }
                return $"the string {Shorten(text)} is not valid JSON: {StringProblem(text)}";
            }
            if (valueExpected && (char.IsAsciiLetterOrDigit(c) || c == '-'))
            {
                string word = Word(json, at);
                return char.IsAsciiDigit(c) || c == '-'
                    ? $"'{Shorten(word)}' is not a JSON number"
                    : $"'{Shorten(word)}' is not a JSON value (text needs double quotes; the only bare words are true, false and null)";
            }
        }

        string expected;
        if (open.Count == 0)
        {
            expected = last == JsonTokenType.None ? "a JSON object" : "nothing after the end of the top-level value";
        }
        else if (inObject)
        {
            expected = keyExpected ? "a key in double quotes or '}'"
                : last == JsonTokenType.PropertyName ? $"the value of \"{lastKey}\""
                : "',' or '}'";
        }
        else
        {
            expected = valueExpected ? "a value or ']'" : "',' or ']'";
        }
        return $"expected {expected}, found {Found(json, at)}";
    }

    /// <summary>What stands at <paramref name="at"/>: "the end of the file", "'}'", "'rules'", "a single quote".</summary>
    private static string Found(string json, int at)
    {
        if (at >= json.Length)
        {
            return "the end of the file";
        }
        char c = json[at];
        if (c == '\'')
        {
            return "a single quote (JSON strings take double quotes)";
        }
        if (char.IsAsciiLetterOrDigit(c) || c == '-')
        {
            return $"'{Shorten(Word(json, at))}'";
        }
        if (c == '"')
        {
            int end = StringEnd(json, at);
            return Shorten(json[at..(end < 0 ? LineEnd(json, at) : end + 1)]);
        }
        if (char.IsControl(c))
        {
            return $"the control character U+{(int)c:X4}";
        }
        return char.IsSurrogate(c) && at + 1 < json.Length ? $"'{json.Substring(at, 2)}'" : $"'{c}'";
    }

    private static int SkipSpaceAndComments(string json, int at, out bool openComment)
    {
        openComment = false;
        while (at < json.Length)
        {
            char c = json[at];
            if (c is ' ' or '\t' or '\r' or '\n')
            {
                at++;
            }
            else if (c == '/' && at + 1 < json.Length && json[at + 1] == '/')
            {
                at = LineEnd(json, at);
            }
            else if (c == '/' && at + 1 < json.Length && json[at + 1] == '*')
            {
                int end = json.IndexOf("*/", at + 2, StringComparison.Ordinal);
                if (end < 0)
                {
                    openComment = true;
                    return at;
                }
                at = end + 2;
            }
            else
            {
                break;
            }
        }
        return at;
    }

    /// <summary>The index of the quote that closes the string starting at <paramref name="at"/>, or -1 if the line ends first.</summary>
    private static int StringEnd(string json, int at)
    {
        for (int i = at + 1; i < json.Length; i++)
        {
            switch (json[i])
            {
                case '\\':
                    i++;
                    break;
                case '"':
                    return i;
                case '\n':
                    return -1;
            }
        }
        return -1;
    }

    /// <summary>What JsonDocument refuses inside a closed string: a control character or an unknown escape.</summary>
    private static string StringProblem(string text)
    {
        for (int i = 1; i < text.Length - 1; i++)
        {
            if (char.IsControl(text[i]))
            {
                return $"it holds the control character U+{(int)text[i]:X4} (write it as an escape such as \\t or \\u0009)";
            }
            if (text[i] == '\\')
            {
                char next = text[i + 1];
                if (next == 'u' && (i + 5 >= text.Length - 1 || text.AsSpan(i + 2, 4).ContainsAnyExcept(HexDigits)))
                {
                    return "\\u must be followed by four hexadecimal digits";
                }
                if (next is not ('"' or '\\' or '/' or 'b' or 'f' or 'n' or 'r' or 't' or 'u'))
                {
                    return $"\\{next} is not an escape JSON knows (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)";
                }
                i++;
            }
        }
        return "it cannot be read as a JSON string";
    }

    private static readonly System.Buffers.SearchValues<char> HexDigits = System.Buffers.SearchValues.Create("0123456789abcdefABCDEF");

    private static int LineEnd(string json, int at)
    {
        int end = json.IndexOf('\n', at);
        return end < 0 ? json.Length : end;
    }

    private static string Word(string json, int at)
    {
        int end = at;
        while (end < json.Length && (char.IsAsciiLetterOrDigit(json[end]) || json[end] is '-' or '+' or '.' or '_'))
        {
            end++;
        }
        return json[at..end];
    }

    private static string Shorten(string text) => text.Length <= 40 ? text : text[..37] + "...";

    /// <summary>The value as written, shortened: <c>"300.1.1.1/8"</c>, <c>5</c>, <c>true</c>.</summary>
    private static string Show(JsonElement value)
    {
        string raw = value.GetRawText();
        return raw.Length <= 80 ? raw : raw[..77] + "...";
    }

    /// <summary>"5 is a number", "is an object": scalars are shown, objects and arrays only named.</summary>
    private static string DescribeKind(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => "is an object",
        JsonValueKind.Array => "is an array",
        JsonValueKind.String => $"{Show(value)} is a string",
        JsonValueKind.Number => $"{Show(value)} is a number",
        JsonValueKind.True or JsonValueKind.False => $"{Show(value)} is a boolean",
        _ => "is null",
    };
}
