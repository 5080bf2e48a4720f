using System.Text;

namespace Unsock.Core.Policies;

/// <summary>
/// A glob over Unix socket paths or abstract names (<c>fromUnix</c>, <c>fromAbstract</c>): <c>*</c> any run of
/// characters without '/', <c>?</c> one character other than '/', <c>**</c> any run including '/' (any depth),
/// <c>\</c> takes the next character literally. Everything else matches itself.
/// </summary>
public sealed class UnixPathPattern : IEquatable<UnixPathPattern>
{
    private enum Kind : byte { Literal, One, Segment, Any }

    private readonly (Kind Kind, char Char)[] _tokens;

    public UnixPathPattern(string pattern)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        if (Check(pattern) is string problem)
        {
            throw new ArgumentException($"\"{pattern}\" {problem}", nameof(pattern));
        }
        Pattern = pattern;
        var tokens = new List<(Kind, char)>(pattern.Length);
        for (int i = 0; i < pattern.Length; i++)
        {
            char c = pattern[i];
            if (c == '\\') tokens.Add((Kind.Literal, pattern[++i]));
            else if (c == '?') tokens.Add((Kind.One, c));
            else if (c == '*' && i + 1 < pattern.Length && pattern[i + 1] == '*')
            {
                while (i + 1 < pattern.Length && pattern[i + 1] == '*') i++;
                tokens.Add((Kind.Any, c));
            }
            else if (c == '*') tokens.Add((Kind.Segment, c));
            else tokens.Add((Kind.Literal, c));
        }
        _tokens = tokens.ToArray();
    }

    /// <summary>The pattern as written in the policy.</summary>
    public string Pattern { get; }

    /// <summary>Null when <paramref name="pattern"/> is usable, else the problem, to follow the quoted pattern.</summary>
    internal static string? Check(string pattern)
    {
        if (pattern.Length == 0) return "is empty";
        if (pattern.Contains('\0')) return "contains a NUL character";
        int backslashes = 0;
        for (int i = pattern.Length - 1; i >= 0 && pattern[i] == '\\'; i--) backslashes++;
        if (backslashes % 2 == 1) return "ends with a lone '\\' (write \\\\ for a backslash)";
        return null;
    }

    /// <summary>
    /// Whether <paramref name="name"/> matches. Linear in pattern times name length (no backtracking blow-up,
    /// whatever path a program passes).
    /// </summary>
    public bool IsMatch(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        // reach[j]: the tokens so far can consume exactly name[..j].
        var reach = new bool[name.Length + 1];
        var next = new bool[name.Length + 1];
        reach[0] = true;
        foreach (var (kind, c) in _tokens)
        {
            Array.Clear(next);
            bool any = false;
            for (int j = 0; j <= name.Length; j++)
            {
                switch (kind)
                {
                    case Kind.Literal:
                        if (j > 0 && reach[j - 1] && name[j - 1] == c) next[j] = true;
                        break;
                    case Kind.One:
                        if (j > 0 && reach[j - 1] && name[j - 1] != '/') next[j] = true;
                        break;
                    case Kind.Segment:
                        next[j] = reach[j] || (j > 0 && next[j - 1] && name[j - 1] != '/');
                        break;
                    case Kind.Any:
                        next[j] = reach[j] || (j > 0 && next[j - 1]);
                        break;
                }
                any |= next[j];
            }
            if (!any) return false;
            (reach, next) = (next, reach);
        }
        return reach[name.Length];
    }

    /// <summary>
    /// The path a rule is matched against for a sun_path: relative ones are taken against
    /// <paramref name="workingDirectory"/> (the calling thread's), "." and ".." and repeated slashes are resolved as
    /// text, symlinks are not followed (a rule names the path a program uses, as ip2unix matches it).
    /// Null when the path is relative and the working directory is unknown.
    /// </summary>
    public static string? AbsoluteSocketPath(string sunPath, string? workingDirectory)
    {
        ArgumentNullException.ThrowIfNull(sunPath);
        if (sunPath.Length == 0) return null;
        if (!sunPath.StartsWith('/'))
        {
            if (workingDirectory is null || !workingDirectory.StartsWith('/')) return null;
            sunPath = workingDirectory.TrimEnd('/') + "/" + sunPath;
        }
        var parts = new List<string>();
        foreach (string part in sunPath.Split('/'))
        {
            if (part.Length == 0 || part == ".") continue;
            if (part == "..")
            {
                if (parts.Count > 0) parts.RemoveAt(parts.Count - 1);
                continue;
            }
            parts.Add(part);
        }
        return "/" + string.Join('/', parts);
    }

    /// <summary>True when the pattern has no wildcard: it names exactly one path.</summary>
    public bool IsLiteral => _tokens.All(t => t.Kind == Kind.Literal);

    /// <summary>The literal text of a pattern without wildcards (escapes removed).</summary>
    public string LiteralText()
    {
        var text = new StringBuilder(_tokens.Length);
        foreach (var (_, c) in _tokens) text.Append(c);
        return text.ToString();
    }

    public bool Equals(UnixPathPattern? other) => other is not null && other.Pattern == Pattern;

    public override bool Equals(object? obj) => Equals(obj as UnixPathPattern);

    public override int GetHashCode() => Pattern.GetHashCode(StringComparison.Ordinal);

    public override string ToString() => Pattern;
}
