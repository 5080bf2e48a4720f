using System.Globalization;
using Microsoft.Extensions.Options;
using Unsock.Core.Supervision;

namespace Unsock.Supervisor;

/// <summary>The service's settings: section "Unsock" of /etc/unsock/supervisor.json, the environment (Unsock__X) and the command line (--Unsock:X=V).</summary>
public sealed class SupervisorOptions
{
    public const string Section = "Unsock";

    /// <summary>Where the supervisor binds its control socket when systemd did not pass one.</summary>
    public string ControlSocket { get; set; } = ControlProtocol.DefaultSocketPath;

    /// <summary>The control socket's permission bits (octal) when the supervisor binds it: who may connect.</summary>
    public string ControlSocketMode { get; set; } = "0666";

    /// <summary>The control socket's group (name or number) when the supervisor binds it; empty keeps ours.</summary>
    public string? ControlSocketGroup { get; set; }

    /// <summary>Where named policies live: NAME.json.</summary>
    public string PolicyDirectory { get; set; } = "/etc/unsock/policies";

    /// <summary>Targets attached at once; a registration beyond is refused.</summary>
    public int MaxTargets { get; set; } = 4096;

    /// <summary>Calls of one target that may wait at once (the engine's MaxParkedCallsPerListener); 0 leaves the engine's setting.</summary>
    public int MaxParkedCallsPerTarget { get; set; }

    /// <summary>Whether a launcher may send a policy's text instead of naming one of ours.</summary>
    public bool AllowInlinePolicies { get; set; } = true;

    /// <summary>Control connections open at once; past it the oldest that has sent nothing yet is closed.</summary>
    public int MaxConnections { get; set; } = 1024;

    /// <summary>Control connections one user other than root may hold open at once.</summary>
    public int MaxConnectionsPerUser { get; set; } = 64;

    /// <summary>How long a control connection may stay open (register to attach included), and bounds every send and receive on it.</summary>
    public TimeSpan ConnectionTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Threads that answer control requests.</summary>
    public int ControlThreads { get; set; } = 2;

    /// <summary>
    /// Where the targets kept across restarts are described (one file each) and the unanswered calls journaled; on
    /// tmpfs (the journal is a shared mapping that must outlive the process, not the machine).
    /// </summary>
    public string StateDirectory { get; set; } = "/run/unsock/state";

    /// <summary>
    /// Keep targets across restarts in systemd's fd store: null (default) when systemd says the store has room
    /// ($FDSTORE, systemd 254+); true for older systemd whose unit sets FileDescriptorStoreMax=; false never.
    /// </summary>
    public bool? KeepTargetsAcrossRestarts { get; set; }

    /// <summary>How long a stop waits for the calls in hand to finish before the targets are handed over.</summary>
    public TimeSpan HandoverTimeout { get; set; } = TimeSpan.FromSeconds(5);

    internal int ParsedMode => TryMode(ControlSocketMode, out int m) ? m : 0x1B6;

    internal uint? ParsedGroup => string.IsNullOrEmpty(ControlSocketGroup) ? null : Accounts.TryGroup(ControlSocketGroup, out uint g) ? g : null;

    internal static bool TryMode(string text, out int mode)
    {
        mode = 0;
        if (text.Length is 0 or > 5) return false;
        foreach (char c in text)
        {
            if (c is < '0' or > '7') return false;
            mode = mode * 8 + (c - '0');
        }
        return mode <= 0x1FF;
    }
}

/// <summary>Refuses values the service cannot run with, naming the option and the value.</summary>
public sealed class SupervisorOptionsValidator : IValidateOptions<SupervisorOptions>
{
    public ValidateOptionsResult Validate(string? name, SupervisorOptions o)
    {
        var problems = new List<string>();
        const string S = SupervisorOptions.Section;
        if (string.IsNullOrEmpty(o.ControlSocket) || !o.ControlSocket.StartsWith('/'))
            problems.Add($"{S}:ControlSocket must be an absolute path, not \"{o.ControlSocket}\"");
        else if (System.Text.Encoding.UTF8.GetByteCount(o.ControlSocket) > 107)
            problems.Add($"{S}:ControlSocket \"{o.ControlSocket}\" is longer than the 107 bytes a Unix socket path may have");
        if (!SupervisorOptions.TryMode(o.ControlSocketMode ?? "", out _))
            problems.Add($"{S}:ControlSocketMode must be an octal file mode 0-0777 such as \"0660\", not \"{o.ControlSocketMode}\"");
        if (!string.IsNullOrEmpty(o.ControlSocketGroup) && !Accounts.TryGroup(o.ControlSocketGroup, out _))
            problems.Add($"{S}:ControlSocketGroup: \"{o.ControlSocketGroup}\" is not a group on this system");
        if (string.IsNullOrEmpty(o.PolicyDirectory) || !o.PolicyDirectory.StartsWith('/'))
            problems.Add($"{S}:PolicyDirectory must be an absolute path, not \"{o.PolicyDirectory}\"");
        if (o.MaxTargets is < 1 or > 1_000_000)
            problems.Add($"{S}:MaxTargets must be between 1 and 1000000, not {o.MaxTargets}");
        if (o.MaxParkedCallsPerTarget is < 0 or > 1_000_000)
            problems.Add($"{S}:MaxParkedCallsPerTarget must be between 1 and 1000000 (0: the engine's setting), not {o.MaxParkedCallsPerTarget}");
        if (o.MaxConnections is < 1 or > 100_000)
            problems.Add($"{S}:MaxConnections must be between 1 and 100000, not {o.MaxConnections}");
        if (o.MaxConnectionsPerUser is < 1 or > 100_000)
            problems.Add($"{S}:MaxConnectionsPerUser must be between 1 and 100000, not {o.MaxConnectionsPerUser}");
        if (o.ConnectionTimeout < TimeSpan.FromMilliseconds(100) || o.ConnectionTimeout > TimeSpan.FromMinutes(10))
            problems.Add($"{S}:ConnectionTimeout must be between 00:00:00.1 and 00:10:00, not {o.ConnectionTimeout}");
        if (o.ControlThreads is < 1 or > 64)
            problems.Add($"{S}:ControlThreads must be between 1 and 64, not {o.ControlThreads}");
        if (string.IsNullOrEmpty(o.StateDirectory) || !o.StateDirectory.StartsWith('/'))
            problems.Add($"{S}:StateDirectory must be an absolute path, not \"{o.StateDirectory}\"");
        if (o.HandoverTimeout < TimeSpan.FromMilliseconds(100) || o.HandoverTimeout > TimeSpan.FromMinutes(1))
            problems.Add($"{S}:HandoverTimeout must be between 00:00:00.1 and 00:01:00, not {o.HandoverTimeout}");
        return problems.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(problems);
    }
}
