namespace Unsock.Core.Policies;

/// <summary>
/// A policy that cannot be used. The message reads <c>source: rules[2].address: "300.1.1.1/8" is not ...</c>:
/// where the policy came from, which rule and field, and what is wrong with the value.
/// </summary>
public sealed class PolicyException : Exception
{
    public PolicyException(string message, string source, int? ruleIndex = null, string? field = null, Exception? innerException = null)
        : base(message, innerException)
    {
        Source = source;
        base.Source = source; // so that code holding it as an Exception sees the same thing
        RuleIndex = ruleIndex;
        Field = field;
    }

    /// <summary>The policy file's path, or "environment".</summary>
    public new string Source { get; }

    /// <summary>The index of the offending rule in "rules", or null for a top-level problem.</summary>
    public int? RuleIndex { get; }

    /// <summary>The offending key (e.g. "address") or environment variable, when there is one.</summary>
    public string? Field { get; }

    /// <summary>"source: rules[i].field: problem", leaving out the parts that are null.</summary>
    internal static PolicyException At(string source, int? ruleIndex, string? field, string problem, Exception? innerException = null)
    {
        string location = (ruleIndex, field) switch
        {
            (int i, string f) => $"rules[{i}].{f}: ",
            (int i, null) => $"rules[{i}]: ",
            (null, string f) => $"{f}: ",
            _ => "",
        };
        return new PolicyException($"{source}: {location}{problem}", source, ruleIndex, field, innerException);
    }
}
