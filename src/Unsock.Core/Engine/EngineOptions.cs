using Microsoft.Extensions.Options;

namespace Unsock.Core.Engine;

/// <summary>How the engine is sized and paced; bound from configuration by the hosts (section "Engine").</summary>
public sealed class EngineOptions
{
    /// <summary>Threads that receive and answer notifications, at most (started as calls overlap); 0 picks 4 per CPU, between 8 and 32.</summary>
    /// <remarks>
    /// A swap waits in ADDFD for its target to take the fd; with 8 concurrent clients on 2 cores, 4 threads
    /// gave 19,400 connections/s and 8 gave 25,500.
    /// </remarks>
    public int NotificationThreads { get; set; }

    /// <summary>How often socket files and records of closed sockets are looked for.</summary>
    public TimeSpan SweepInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Calls of one listener's targets that may wait at once (full backlog, accept, proxy handshake).</summary>
    public int MaxParkedCallsPerListener { get; set; } = 4096;

    /// <summary>Calls that may wait at once over all listeners.</summary>
    public int MaxParkedCalls { get; set; } = 65536;

    /// <summary>How long a Firecracker proxy may take to answer CONNECT.</summary>
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Cached pidfds and /proc files per notification thread (per kind).</summary>
    public int MaxCachedFdsPerThread { get; set; } = 64;

    /// <summary>Live socket records a burst must reach before its end gives the heap back (a full compacting GC); tests lower it.</summary>
    internal int CompactAfterRecords { get; set; } = 4096;

    internal int EffectiveNotificationThreads =>
        NotificationThreads > 0 ? NotificationThreads : Math.Clamp(Environment.ProcessorCount * 4, 8, 32);
}

/// <summary>Refuses values the engine cannot run with, naming the option and the value.</summary>
public sealed class EngineOptionsValidator : IValidateOptions<EngineOptions>
{
    public ValidateOptionsResult Validate(string? name, EngineOptions o)
    {
        var problems = new List<string>();
        if (o.NotificationThreads is < 0 or > 256)
            problems.Add($"Engine:NotificationThreads must be 0 (automatic) or between 1 and 256, not {o.NotificationThreads}");
        if (o.SweepInterval < TimeSpan.FromMilliseconds(10) || o.SweepInterval > TimeSpan.FromHours(1))
            problems.Add($"Engine:SweepInterval must be between 00:00:00.010 and 01:00:00, not {o.SweepInterval}");
        if (o.MaxParkedCallsPerListener < 1)
            problems.Add($"Engine:MaxParkedCallsPerListener must be at least 1, not {o.MaxParkedCallsPerListener}");
        if (o.MaxParkedCalls < 1)
            problems.Add($"Engine:MaxParkedCalls must be at least 1, not {o.MaxParkedCalls}");
        if (o.HandshakeTimeout <= TimeSpan.Zero || o.HandshakeTimeout > TimeSpan.FromMinutes(10))
            problems.Add($"Engine:HandshakeTimeout must be more than 0 and at most 00:10:00, not {o.HandshakeTimeout}");
        if (o.MaxCachedFdsPerThread is < 1 or > 4096)
            problems.Add($"Engine:MaxCachedFdsPerThread must be between 1 and 4096, not {o.MaxCachedFdsPerThread}");
        return problems.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(problems);
    }

    /// <summary>Throws <see cref="OptionsValidationException"/> when <paramref name="options"/> is not valid.</summary>
    public static EngineOptions Checked(EngineOptions options)
    {
        var result = new EngineOptionsValidator().Validate(Options.DefaultName, options);
        if (result.Failed) throw new OptionsValidationException(Options.DefaultName, typeof(EngineOptions), result.Failures);
        return options;
    }
}
