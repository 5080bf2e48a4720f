using Unsock.Core.Policies;

namespace Unsock.Core.Engine;

/// <summary>Who registered a listener: the process that installed the filter, as the host knows it.</summary>
/// <param name="Pid">The process that installed the filter (the launcher, or the program it became).</param>
/// <param name="Uid">Its user, when the host knows it (the service reads it from SO_PEERCRED).</param>
/// <param name="Gid">Its group, likewise.</param>
/// <param name="RootDirectory">Its root directory as the supervisor reaches it ("/" in embedded mode).</param>
/// <param name="Command">Its command line, for status output.</param>
/// <param name="PolicyName">The policy's name in metrics (a named policy's name, "inline", "embedded"): bounded, never a pid or path.</param>
/// <param name="Key">The host's number for the target, which a <see cref="CallJournal"/> records its unanswered calls under; 0: not journaled.</param>
public sealed record TargetContext(int Pid, uint? Uid = null, uint? Gid = null, string RootDirectory = "/", string? Command = null,
    string PolicyName = "embedded", long Key = 0);

/// <summary>What one attached listener's targets have had done to their calls.</summary>
public sealed class ListenerCounters
{
    private long _redirected, _passed, _failed, _emulated;

    public long Redirected => Interlocked.Read(ref _redirected);
    public long Passed => Interlocked.Read(ref _passed);
    public long Failed => Interlocked.Read(ref _failed);
    public long Emulated => Interlocked.Read(ref _emulated);

    internal void Count(string outcome)
    {
        switch (outcome)
        {
            case Outcomes.Redirected: Interlocked.Increment(ref _redirected); break;
            case Outcomes.Passed: Interlocked.Increment(ref _passed); break;
            case Outcomes.Failed: Interlocked.Increment(ref _failed); break;
            default: Interlocked.Increment(ref _emulated); break;
        }
    }
}

/// <summary>
/// One listener's attachment to the engine: the listener, the policy its targets run under, the sockets
/// and files it converted, who registered it, and a task that completes when it is gone (its targets
/// exited, or it was detached) and its socket files are dealt with.
/// </summary>
public sealed class ListenerAttachment
{
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _parked;
    private int _state; // 0 attached, 1 detaching, 2 done

    internal ListenerAttachment(int id, SeccompListener listener, Policy policy, TargetContext target)
    {
        Id = id;
        Listener = listener;
        Policy = policy;
        Target = target;
    }

    internal int Id { get; }
    public SeccompListener Listener { get; }
    public Policy Policy { get; }
    public TargetContext Target { get; }
    public ListenerCounters Counters { get; } = new();
    internal SocketRegistry Registry { get; } = new();
    public DateTimeOffset Since { get; } = DateTimeOffset.UtcNow;

    /// <summary>Completes once the attachment is detached and its last call and socket file are dealt with.</summary>
    public Task Completion => _completion.Task;

    /// <summary>True until detached (its targets are gone, or the host detached it).</summary>
    public bool IsAttached => Volatile.Read(ref _state) == 0;

    /// <summary>Why it was detached, once it was.</summary>
    public string? DetachReason { get; private set; }

    public int ParkedCalls => Volatile.Read(ref _parked);

    /// <summary>Set when the engine hands its targets over to a successor: waiting calls stay unanswered and journaled.</summary>
    internal bool HandingOver { get; set; }

    /// <summary>
    /// Attached with what a previous supervisor left (state or unanswered calls): a call it had swapped a socket in for
    /// may come again without the record of that socket (<see cref="Redirector"/>'s RecoverLostSwap).
    /// </summary>
    internal bool TookOver { get; set; }

    /// <summary>
    /// The converted sockets and socket files, for the next supervisor (<see cref="AttachmentState"/>). Complete once
    /// the attachment is detached; while it is attached, a snapshot that calls may change the moment after.
    /// </summary>
    public AttachmentState ExportState(bool filesOnly = false) => Registry.Export(filesOnly);

    /// <summary>Changes whenever a socket file or listener is registered or removed: when to write <see cref="ExportState"/> again.</summary>
    public long FilesVersion => Registry.FilesVersion;

    /// <summary>Called on the notification thread right after a socket file is registered: queue work, do not do it there.</summary>
    public Action? SocketFileAdded
    {
        get => Registry.FileAdded;
        set => Registry.FileAdded = value;
    }

    /// <summary>The socket files its targets bound through us and that still exist, as the targets named them.</summary>
    public IReadOnlyList<string> SocketFiles => Registry.FilePaths();

    internal bool TryReserveParking(int limit)
    {
        while (true)
        {
            int now = Volatile.Read(ref _parked);
            if (now >= limit) return false;
            if (Interlocked.CompareExchange(ref _parked, now + 1, now) == now) return true;
        }
    }

    internal int ReleaseParking() => Interlocked.Decrement(ref _parked);

    private long _lastWarning;
    private int _suppressed;

    /// <summary>True at most once a second: whether to log a refusal now, and how many were not logged since.</summary>
    internal bool ShouldWarn(out int suppressed)
    {
        long now = Environment.TickCount64;
        long last = Interlocked.Read(ref _lastWarning);
        if ((last != 0 && now - last < 1000) || Interlocked.CompareExchange(ref _lastWarning, now, last) != last)
        {
            Interlocked.Increment(ref _suppressed);
            suppressed = 0;
            return false;
        }
        suppressed = Interlocked.Exchange(ref _suppressed, 0);
        return true;
    }

    /// <summary>First caller wins: marks it detaching and says why.</summary>
    internal bool BeginDetach(string reason)
    {
        if (Interlocked.CompareExchange(ref _state, 1, 0) != 0) return false;
        DetachReason = reason;
        return true;
    }

    internal void Complete()
    {
        Volatile.Write(ref _state, 2);
        _completion.TrySetResult();
    }
}

/// <summary>Outcome names, as the metrics and counters report them.</summary>
internal static class Outcomes
{
    public const string Redirected = "redirected", Passed = "passed", Failed = "failed", Emulated = "emulated";
}
