namespace Unsock.Core.Policies;

/// <summary>
/// A glob over Unix socket paths or abstract names (<c>fromUnix</c>, <c>fromAbstract</c>): <c>*</c> any run of
/// characters without '/', <c>?</c> one character other than '/', <c>**</c> any run including '/' (any depth),
/// <c>[abc]</c>, <c>[a-z]</c>, <c>[!a-z]</c> one character of (or not of) a class, never '/' (as ip2unix's globs),
/// <c>\</c> takes the next character literally. Everything else matches itself.
/// </summary>
public sealed class UnixPathPattern : IEquatable<UnixPathPattern>
{
    private enum Kind : byte { Literal, One, Segment, Any, Class }

    private readonly (Kind Kind, char Char)[] _tokens;
    // The character classes, by token position: inclusive ranges and whether the class is negated.
    private readonly Dictionary<int, ((char First, char Last)[] Ranges, bool Negated)> _classes = new();

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
            else if (c == '[')
            {
                int end = ClassEnd(pattern, i);
                _classes[tokens.Count] = ParseClass(pattern[(i + 1)..end]);
                tokens.Add((Kind.Class, c));
                i = end;
            }
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
        for (int i = 0; i < pattern.Length; i++)
        {
            if (pattern[i] == '\\') i++;
            else if (pattern[i] == '[')
            {
                int end = ClassEnd(pattern, i);
                if (end < 0) return "has a '[' without its closing ']' (write \\[ for a bracket)";
                i = end;
            }
        }
        return null;
    }

    /// <summary>The index of the ']' that closes the class opening at <paramref name="open"/> ("[]a]" and "[!]a]" hold a ']'), or -1.</summary>
    private static int ClassEnd(string pattern, int open)
    {
        int i = open + 1;
        if (i < pattern.Length && pattern[i] == '!') i++;
        if (i < pattern.Length && pattern[i] == ']') i++;
        for (; i < pattern.Length; i++)
        {
            if (pattern[i] == ']') return i;
        }
        return -1;
    }

    private static ((char, char)[], bool) ParseClass(string body)
    {
        bool negated = body.StartsWith('!');
        if (negated) body = body[1..];
        var ranges = new List<(char, char)>();
        for (int i = 0; i < body.Length; i++)
        {
            if (i + 2 < body.Length && body[i + 1] == '-') { ranges.Add((body[i], body[i + 2])); i += 2; }
            else ranges.Add((body[i], body[i]));
        }
        return (ranges.ToArray(), negated);
    }

    private bool InClass(int token, char c)
    {
        if (c == '/') return false;
        var (ranges, negated) = _classes[token];
        bool found = false;
        foreach (var (first, last) in ranges) found |= c >= first && c <= last;
        return found != negated;
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
        for (int t = 0; t < _tokens.Length; t++)
        {
            var (kind, c) = _tokens[t];
            Array.Clear(next);
            bool any = false;
            for (int j = 0; j <= name.Length; j++)
            {
                switch (kind)
                {
                    case Kind.Literal:
                        if (j > 0 && reach[j - 1] && name[j - 1] == c) next[j] = true;
                        break;
                    case Kind.Class:
                        if (j > 0 && reach[j - 1] && InClass(t, name[j - 1])) next[j] = true;
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

    public bool Equals(UnixPathPattern? other) => other is not null && other.Pattern == Pattern;

    public override bool Equals(object? obj) => Equals(obj as UnixPathPattern);

    public override int GetHashCode() => Pattern.GetHashCode(StringComparison.Ordinal);

    public override string ToString() => Pattern;
}
