namespace Unsock.Core.Engine;

/// <summary>Process-wide settings a supervisor needs.</summary>
public static class SupervisorProcess
{
    /// <summary>
    /// Socket files are created with our umask, then chmod-ed to what the target or the rule wants: with
    /// 077 nobody else can connect in between.
    /// </summary>
    public static void RestrictUmask() => global::Interop.FileSystem.SetUmask(0x3F /* 077 */);
}
