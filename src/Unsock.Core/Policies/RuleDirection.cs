namespace Unsock.Core.Policies;

/// <summary>Which socket call a rule applies to.</summary>
public enum RuleDirection
{
    /// <summary>Both <c>bind</c> and <c>connect</c>.</summary>
    Any,
    /// <summary><c>bind</c> (a server's listening or a client's local address).</summary>
    Bind,
    /// <summary><c>connect</c>.</summary>
    Connect,
}
