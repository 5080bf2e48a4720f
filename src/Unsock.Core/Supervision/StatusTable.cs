using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Unsock.Core.Supervision;

/// <summary>How <c>status</c> prints the supervisor's targets, for <c>unsock-supervisor status</c> and <c>unsock-launch status</c> alike.</summary>
public static class StatusTable
{
    private static readonly string[] Headers = ["PID", "USER", "POLICY", "SINCE", "REDIRECTED", "FAILED", "PASSED", "EMULATED", "PARKED", "FILES", "COMMAND"];

    /// <summary>One line per target under a header line, columns aligned; "no targets" when there are none.</summary>
    public static string Format(IReadOnlyList<TargetStatus> targets)
    {
        if (targets.Count == 0) return "no targets attached\n";
        var rows = new List<string[]> { Headers };
        foreach (var t in targets.OrderBy(t => t.Since))
        {
            rows.Add([
                t.Pid.ToString(CultureInfo.InvariantCulture),
                t.User.Length > 0 ? t.User : t.Uid.ToString(CultureInfo.InvariantCulture),
                t.Policy,
                t.Since.ToUniversalTime().ToString("yyyy-MM-dd HH:mm:ss'Z'", CultureInfo.InvariantCulture),
                N(t.Redirected), N(t.Failed), N(t.Passed), N(t.Emulated), N(t.ParkedCalls),
                t.SocketFiles.Count == 0 ? "-" : string.Join(",", t.SocketFiles),
                t.Command,
            ]);
        }
        var widths = new int[Headers.Length];
        foreach (var row in rows)
            for (int i = 0; i < row.Length; i++) widths[i] = Math.Max(widths[i], row[i].Length);
        var text = new StringBuilder();
        foreach (var row in rows)
        {
            for (int i = 0; i < row.Length; i++)
            {
                bool last = i == row.Length - 1;
                bool number = i is 0 or >= 4 and <= 8;
                string cell = last ? row[i] : number ? row[i].PadLeft(widths[i]) : row[i].PadRight(widths[i]);
                text.Append(cell);
                if (!last) text.Append("  ");
            }
            text.Append('\n');
        }
        return text.ToString();
    }

    /// <summary>The targets as an indented JSON document: <c>{"targets": [...]}</c>, the fields of <see cref="TargetStatus"/>.</summary>
    public static string ToJson(IReadOnlyList<TargetStatus> targets) =>
        JsonSerializer.Serialize(new StatusDocument { Targets = targets.ToList() }, StatusJson.Default.StatusDocument) + "\n";

    /// <summary>Reads what <see cref="ToJson"/> wrote.</summary>
    public static IReadOnlyList<TargetStatus> FromJson(string json) =>
        JsonSerializer.Deserialize(json, StatusJson.Default.StatusDocument)?.Targets ?? [];

    private static string N(long n) => n.ToString(CultureInfo.InvariantCulture);
}

internal sealed record StatusDocument
{
    public List<TargetStatus> Targets { get; init; } = [];
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[JsonSerializable(typeof(StatusDocument))]
internal sealed partial class StatusJson : JsonSerializerContext;
