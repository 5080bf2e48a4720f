namespace Unsock.Core.Engine;

internal enum OutcomeKind { Continue, Fail, Succeed, Answered, Parked }

/// <summary>What to tell the kernel about one notification.</summary>
internal readonly record struct Outcome(OutcomeKind Kind, int Errno = 0, long Value = 0, ConvertedSocket? Swapped = null,
    int CloseAfterAnswer1 = -1, int CloseAfterAnswer2 = -1)
{
    /// <summary>Not ours: the kernel runs the call as made. Never for a security decision.</summary>
    public static Outcome Continue => new(OutcomeKind.Continue);
    public static Outcome Fail(int errno) => new(OutcomeKind.Fail, errno);
    public static Outcome Succeed(long value = 0, ConvertedSocket? swapped = null) => new(OutcomeKind.Succeed, 0, value, swapped);

    /// <summary>A swap done: answer success first, then close our copies (closing the old TCP socket is not free).</summary>
    public static Outcome AfterSwap(ConvertedSocket entry, int replacement, int oldCopy) =>
        new(OutcomeKind.Succeed, 0, 0, entry, replacement, oldCopy);
    /// <summary>Already answered (or the notification is gone, or a worker will answer it).</summary>
    public static Outcome Answered => new(OutcomeKind.Answered);
    /// <summary>Handed to the poller, which answers it when it can go on.</summary>
    public static Outcome Parked => new(OutcomeKind.Parked);
}
