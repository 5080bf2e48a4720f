using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Unsock.Core.Engine;

/// <summary>
/// The engine's log: every decision at Debug (the launcher's -v shows them), what an operator must see
/// at Warning and Error. Event ids are stable.
/// </summary>
internal sealed partial class EngineLog(ILogger logger)
{
    public static readonly EngineLog None = new(NullLogger.Instance);

    private readonly ILogger _logger = logger;

    public ILogger Logger => _logger;

    /// <summary>True when decisions are logged: callers skip building their text otherwise.</summary>
    public bool Enabled => Logger.IsEnabled(LogLevel.Debug);

    public void Decision(int pid, string call, string subject, string outcome) => LogDecision(Logger, pid, call, subject, outcome);

    public void Message(string text) => LogMessage(Logger, text);

    [LoggerMessage(EventId = 1, Level = LogLevel.Debug, Message = "pid {Pid} {Call} {Subject}: {Outcome}")]
    private static partial void LogDecision(ILogger logger, int pid, string call, string subject, string outcome);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "{Text}")]
    private static partial void LogMessage(ILogger logger, string text);

    [LoggerMessage(EventId = 3, Level = LogLevel.Error, Message = "pid {Pid} {Call}: internal error, answered EIO")]
    public partial void InternalError(Exception e, int pid, string call);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "socket-file sweep failed, will try again: {Reason}")]
    public partial void SweepFailed(string reason);

    [LoggerMessage(EventId = 5, Level = LogLevel.Debug, Message = "removed {Path}: {Why}")]
    public partial void SocketFileRemoved(string path, string why);

    [LoggerMessage(EventId = 6, Level = LogLevel.Error, Message = "listener of pid {Pid} failed and is detached; its targets' trapped calls now fail with ENOSYS")]
    public partial void ListenerFault(Exception e, int pid);

    [LoggerMessage(EventId = 7, Level = LogLevel.Debug, Message = "attached the listener of pid {Pid} ({Listeners} attached)")]
    public partial void Attached(int pid, int listeners);

    [LoggerMessage(EventId = 8, Level = LogLevel.Debug, Message = "detached the listener of pid {Pid}: {Why}")]
    public partial void Detached(int pid, string why);

    [LoggerMessage(EventId = 9, Level = LogLevel.Warning, Message = "pid {Pid} {Call}: {Parked} calls already wait for this listener (limit {Limit}), answered {Errno} ({Suppressed} more since the last such line)")]
    public partial void ParkedCallLimit(int pid, string call, int parked, int limit, string errno, int suppressed);

    [LoggerMessage(EventId = 10, Level = LogLevel.Information, Message = "kernel without SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (6.6): answers take a scheduler round trip")]
    public partial void NoSyncWakeUp();

    [LoggerMessage(EventId = 11, Level = LogLevel.Error, Message = "notification thread {Thread}: unexpected failure, carrying on")]
    public partial void ThreadFault(Exception e, string thread);

    [LoggerMessage(EventId = 12, Level = LogLevel.Warning, Message = "pid {Pid} {Call}: {Reason}, answered {Errno}")]
    public partial void CallRefused(int pid, string call, string reason, string errno);

    [LoggerMessage(EventId = 13, Level = LogLevel.Debug, Message = "kept {Path}: its socket is still open somewhere (passed to another process)")]
    public partial void SocketFileKept(string path);

    [LoggerMessage(EventId = 14, Level = LogLevel.Warning, Message = "pid {Pid}: taking back the previous supervisor's state: {Problem}")]
    public partial void StateProblem(int pid, string problem);

    [LoggerMessage(EventId = 15, Level = LogLevel.Debug, Message = "pid {Pid}: took back {Sockets} converted sockets and {Files} socket files from the previous supervisor")]
    public partial void StateTaken(int pid, int sockets, int files);

    [LoggerMessage(EventId = 16, Level = LogLevel.Information, Message = "pid {Pid} {Call}: received by the previous supervisor and not answered; handling it now")]
    public partial void HandlingAgain(int pid, string call);
}
