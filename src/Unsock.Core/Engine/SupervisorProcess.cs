namespace Unsock.Core.Engine;

/// <summary>Process-wide settings a supervisor needs.</summary>
public static class SupervisorProcess
{
    /// <summary>
    /// Files created for targets get each target's umask on the creating thread alone (ThreadUmask), with
    /// their final mode from the start; 077 process-wide keeps anything else we create, and every thread's
    /// umask before it first creates a target's file, closed to others.
    /// </summary>
    public static void RestrictUmask() => global::Interop.FileSystem.SetUmask(0x3F /* 077 */);
}
