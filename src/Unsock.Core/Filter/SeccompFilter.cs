using static Interop.SeccompFilter;

namespace Unsock.Core.Filter;

/// <summary>Installs a compiled program on the calling thread with a user-notification listener.</summary>
public static class SeccompFilter
{
    private const int EBUSY = 16;
    private const int EFAULT = 14;

    private static readonly Lazy<bool> s_waitKillableRecv = new(ProbeWaitKillableRecv);

    /// <summary>Whether the kernel knows SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (5.19).</summary>
    public static bool SupportsWaitKillableRecv => s_waitKillableRecv.Value;

    /// <summary>
    /// prctl(PR_SET_NO_NEW_PRIVS) then seccomp(SECCOMP_SET_MODE_FILTER, NEW_LISTENER [| WAIT_KILLABLE_RECV]).
    /// Affects only the calling thread (no TSYNC): install on a dedicated thread and execve from it.
    /// WAIT_KILLABLE_RECV is used when asked for and the kernel has it (<see cref="SupportsWaitKillableRecv"/>).
    /// </summary>
    /// <returns>The listener fd (O_CLOEXEC). Closing its last copy makes every notified call fail with ENOSYS.</returns>
    public static unsafe int InstallWithListener(SeccompProgram program, bool waitKillableRecv)
    {
        ArgumentNullException.ThrowIfNull(program);

        int error = SetNoNewPrivs();
        if (error != 0)
        {
            throw new SeccompException($"prctl(PR_SET_NO_NEW_PRIVS) failed: {SeccompException.DescribeErrno(error)}", error);
        }

        uint flags = SECCOMP_FILTER_FLAG_NEW_LISTENER;
        if (waitKillableRecv && SupportsWaitKillableRecv)
        {
            flags |= SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
        }

        int rc;
        fixed (byte* bytes = program.Bytes.Span)
        {
            var fprog = new SockFprog { Len = (ushort)program.InstructionCount, Filter = (SockFilter*)bytes };
            rc = SetModeFilter(flags, &fprog);
        }

        if (rc == -EBUSY)
        {
            throw new SeccompException("already running under a seccomp supervisor (a seccomp listener exists in this process's filter chain)", EBUSY);
        }

        if (rc < 0)
        {
            throw new SeccompException($"seccomp(SECCOMP_SET_MODE_FILTER, 0x{flags:x}) with a {program.InstructionCount}-instruction program failed: {SeccompException.DescribeErrno(-rc)}", -rc);
        }

        return rc;
    }

    // The kernel checks flags before it reads the program: EFAULT for a NULL program means the flags are known.
    private static unsafe bool ProbeWaitKillableRecv() =>
        SetModeFilter(SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, null) == -EFAULT;
}
