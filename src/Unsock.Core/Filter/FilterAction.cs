namespace Unsock.Core.Filter;

/// <summary>What the filter does with a system call that a rule matches.</summary>
public abstract record FilterAction
{
    private FilterAction()
    {
    }

    /// <summary>Stop the call and hand it to the supervisor holding the listener (SECCOMP_RET_USER_NOTIF).</summary>
    public static FilterAction Notify { get; } = new NotifyAction();

    /// <summary>Let the call run. The filter's default, so a rule with it adds no code.</summary>
    public static FilterAction Allow { get; } = new AllowAction();

    /// <summary>Fail the call with <paramref name="errno"/> (1-4095) without running it.</summary>
    public static FilterAction Errno(int errno)
    {
        if (errno is < 1 or > 4095)
        {
            throw new ArgumentOutOfRangeException(nameof(errno), errno, $"errno for a filter action must be 1-4095, not {errno}");
        }

        return new ErrnoAction(errno);
    }

    public sealed record NotifyAction : FilterAction
    {
        public override string ToString() => "Notify";
    }

    public sealed record AllowAction : FilterAction
    {
        public override string ToString() => "Allow";
    }

    public sealed record ErrnoAction(int Code) : FilterAction
    {
        public override string ToString() => $"Errno({Code})";
    }
}
