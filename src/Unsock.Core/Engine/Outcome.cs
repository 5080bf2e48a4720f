namespace Unsock.Core.Engine;

internal enum OutcomeKind { Continue, Fail, Succeed, Answered }

/// <summary>What to tell the kernel about one notification.</summary>
internal readonly record struct Outcome(OutcomeKind Kind, int Errno = 0, long Value = 0, ConvertedSocket? Swapped = null)
{
    /// <summary>Not ours: the kernel runs the call as made. Never for a security decision.</summary>
    public static Outcome Continue => new(OutcomeKind.Continue);
    public static Outcome Fail(int errno) => new(OutcomeKind.Fail, errno);
    public static Outcome Succeed(long value = 0, ConvertedSocket? swapped = null) => new(OutcomeKind.Succeed, 0, value, swapped);
    /// <summary>Already answered (or the notification is gone, or a worker will answer it).</summary>
    public static Outcome Answered => new(OutcomeKind.Answered);
}
