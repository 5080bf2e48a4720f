using System.Globalization;
using System.Text.Json;
using Unsock.Core.Policies;

namespace Unsock.Core.Supervision;

/// <summary>
/// Who may run programs under a named policy of the supervisor: a policy file's
/// <c>"allowed": {"users": [...], "groups": [...]}</c> (names or numeric ids). Without it, root only; root
/// is always allowed. Names are looked up when the file is read, so a name nobody has is an error then.
/// </summary>
public sealed class PolicyAccess
{
    private static readonly JsonDocumentOptions DocumentOptions = new() { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };
    private readonly HashSet<uint> _users, _groups;

    private PolicyAccess(HashSet<uint> users, HashSet<uint> groups)
    {
        _users = users;
        _groups = groups;
    }

    /// <summary>No "allowed" section: root alone.</summary>
    public static PolicyAccess RootOnly { get; } = new([], []);

    public IReadOnlyCollection<uint> Users => _users;
    public IReadOnlyCollection<uint> Groups => _groups;

    /// <summary>Whether a caller with this uid, primary gid and supplementary groups may use the policy.</summary>
    public bool Allows(uint uid, uint gid, IEnumerable<uint> groups) =>
        uid == 0 || _users.Contains(uid) || _groups.Contains(gid) || groups.Any(_groups.Contains);

    /// <summary>"root only", or the users and groups by name.</summary>
    public override string ToString()
    {
        if (_users.Count == 0 && _groups.Count == 0) return "root only";
        var parts = _users.Order().Select(u => "user " + Accounts.UserName(u)).Concat(_groups.Order().Select(g => "group " + Accounts.GroupName(g)));
        return string.Join(", ", parts);
    }

    /// <summary>Reads the "allowed" section of a policy's JSON text (the rest is the policy reader's).</summary>
    /// <exception cref="PolicyException">The section is malformed or names a user or group that does not exist.</exception>
    public static PolicyAccess Read(string json, string source)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, DocumentOptions);
        }
        catch (JsonException e)
        {
            throw new PolicyException($"{source}: invalid JSON: {e.Message}", source);
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object || !document.RootElement.TryGetProperty("allowed", out var allowed))
                return RootOnly;
            if (allowed.ValueKind != JsonValueKind.Object)
                throw Error(source, "allowed", $"{Show(allowed)} is not an object; write {{\"users\": [...], \"groups\": [...]}}");
            var users = new HashSet<uint>();
            var groups = new HashSet<uint>();
            foreach (var property in allowed.EnumerateObject())
            {
                switch (property.Name)
                {
                    case "users": ReadIds(property.Value, source, "allowed.users", "user", Accounts.TryUser, users); break;
                    case "groups": ReadIds(property.Value, source, "allowed.groups", "group", Accounts.TryGroup, groups); break;
                    default: throw Error(source, "allowed." + property.Name, "is not a known key; \"allowed\" takes \"users\" and \"groups\"");
                }
            }
            return new PolicyAccess(users, groups);
        }
    }

    private delegate bool Lookup(string text, out uint id);

    private static void ReadIds(JsonElement list, string source, string field, string kind, Lookup lookup, HashSet<uint> into)
    {
        if (list.ValueKind != JsonValueKind.Array)
            throw Error(source, field, $"{Show(list)} is not an array of {kind} names or numbers");
        int i = 0;
        foreach (var item in list.EnumerateArray())
        {
            string at = $"{field}[{i++}]";
            switch (item.ValueKind)
            {
                case JsonValueKind.Number when item.TryGetUInt32(out uint id):
                    into.Add(id);
                    break;
                case JsonValueKind.String when item.GetString() is { Length: > 0 } text:
                    if (!lookup(text, out uint found)) throw Error(source, at, $"\"{text}\" is not a {kind} on this system");
                    into.Add(found);
                    break;
                default:
                    throw Error(source, at, $"{Show(item)} is not a {kind} name or a number 0-{uint.MaxValue}");
            }
        }
    }

    private static PolicyException Error(string source, string field, string problem) =>
        new($"{source}: {field}: {problem}", source, null, field);

    private static string Show(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => $"\"{e.GetString()}\"",
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        _ => e.GetRawText(),
    };
}
