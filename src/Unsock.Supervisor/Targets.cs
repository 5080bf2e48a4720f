using System.Diagnostics.Metrics;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Unsock.Core.Engine;
using Unsock.Core.Filter;
using Unsock.Core.Policies;
using Unsock.Core.Supervision;

namespace Unsock.Supervisor;

/// <summary>
/// What a launcher registered on its connection: the policy pinned for it and who it is. <paramref name="PolicyLabel"/>
/// is for status and the log ("web", "inline: /home/u/p.json"); <paramref name="PolicyName"/> for the metrics'
/// unsock.policy attribute, bounded: the named policy's name, or "inline" whatever the source. <paramref name="PolicyText"/>
/// and <paramref name="PolicySource"/> are what the policy was parsed from: a restarted supervisor parses them again, so
/// the target keeps the policy it was registered under even when the file changed since.
/// </summary>
internal sealed record Registration(long Number, Policy Policy, string PolicyLabel, string PolicyName, Caller Caller, string User,
    IReadOnlyList<string>? Command, string PolicyText, string PolicySource);

/// <summary>One attached target: its listener's attachment in the engine and what status shows about it.</summary>
internal sealed class Target(Registration registration, ListenerAttachment attachment)
{
    private Task<string?>? _reading;
    private string _lastCommand = registration.Command is { Count: > 0 } c ? string.Join(' ', c) : "";

    public Registration Registration { get; } = registration;
    public ListenerAttachment Attachment { get; } = attachment;

    /// <summary>
    /// The command line as /proc/PID/cmdline says now. Reading it reads the target's memory, which a hostile
    /// target can stall: a read that is not done in 300 ms gives the last known line, and at most one read per target is under way.
    /// </summary>
    public string Command()
    {
        var reading = _reading;
        if (reading is null || reading.IsCompleted)
        {
            int pid = Registration.Caller.Pid;
            _reading = reading = Task.Run(() => ReadCommandLine(pid));
        }
        if (reading.Wait(TimeSpan.FromMilliseconds(300)) && reading.Result is { Length: > 0 } line) _lastCommand = line;
        return _lastCommand;
    }

    private static string? ReadCommandLine(int pid)
    {
        try
        {
            byte[] raw = File.ReadAllBytes($"/proc/{pid}/cmdline");
            return Encoding.UTF8.GetString(raw).TrimEnd('\0').Replace('\0', ' ');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    public TargetStatus Status() => new()
    {
        Target = Registration.Number,
        Pid = Registration.Caller.Pid,
        Command = Command(),
        Policy = Registration.PolicyLabel,
        Uid = Registration.Caller.Uid,
        User = Registration.User,
        Since = Attachment.Since,
        Redirected = Attachment.Counters.Redirected,
        Failed = Attachment.Counters.Failed,
        Passed = Attachment.Counters.Passed,
        Emulated = Attachment.Counters.Emulated,
        ParkedCalls = Attachment.ParkedCalls,
        SocketFiles = Attachment.SocketFiles,
    };
}

/// <summary>A request the supervisor will not carry out: the reason for the caller, and a short kind for the metrics.</summary>
internal sealed class Refusal(string kind, string message) : Exception(message)
{
    public string Kind { get; } = kind;
}

/// <summary>
/// The supervisor's side of the control protocol: register (which policy, may this caller use it, the
/// compiled filter), attach (the listener goes to the engine under the pinned policy), status.
/// </summary>
internal sealed partial class Targets
{
    private readonly NotificationEngine _engine;
    private readonly PolicyCatalog _catalog;
    private readonly TargetKeeper _keeper;
    private readonly SupervisorOptions _options;
    private readonly ILogger _log;
    private readonly Counter<long> _refusals, _attaches;
    private readonly object _gate = new();
    private readonly Dictionary<long, Target> _targets = new();
    private long _nextNumber;
    private int _reserved; // registered, not yet attached or gone
    private volatile bool _stopping;

    public Targets(NotificationEngine engine, PolicyCatalog catalog, TargetKeeper keeper, IOptions<SupervisorOptions> options, ILogger<Targets> log,
        IMeterFactory meters)
    {
        _engine = engine;
        _catalog = catalog;
        _keeper = keeper;
        _options = options.Value;
        _log = log;
        var meter = meters.Create("Unsock.Supervisor");
        _refusals = meter.CreateCounter<long>("unsock.supervisor.refusals", description: "Control requests refused, by reason");
        _attaches = meter.CreateCounter<long>("unsock.supervisor.attaches", description: "Listeners attached");
        meter.CreateObservableGauge("unsock.supervisor.targets", () => Count);
    }

    public int Count
    {
        get { lock (_gate) return _targets.Count; }
    }

    /// <summary>The attached targets, oldest first.</summary>
    public IReadOnlyList<Target> All
    {
        get { lock (_gate) return _targets.Values.OrderBy(t => t.Registration.Number).ToList(); }
    }

    /// <summary>From now on every register and attach is refused.</summary>
    public void StopTaking() => _stopping = true;

    /// <summary>Answers one request of <paramref name="connection"/>; false when the connection is done with.</summary>
    public bool Serve(ControlConnection connection)
    {
        ControlRequest? request;
        int fd;
        try
        {
            request = connection.Channel.ReceiveRequest(out fd);
        }
        catch (ControlChannelException e)
        {
            Refuse(connection, new Refusal(e.Message.Contains("version") ? "protocol_version" : "malformed", e.Message));
            return false;
        }
        if (request is null) return false; // the other end closed
        try
        {
            switch (request.Kind)
            {
                case ControlProtocol.Register:
                    Close(ref fd);
                    connection.Registration = Register(connection, request);
                    Reply(connection, new ControlReply
                    {
                        Ok = true, Target = connection.Registration.Number,
                        Filter = Convert.ToBase64String(Compile(connection.Registration.Policy).Bytes.Span),
                    });
                    return true;
                case ControlProtocol.Attach:
                    var target = Attach(connection, ref fd);
                    Reply(connection, new ControlReply { Ok = true, Target = target.Registration.Number });
                    return false;
                case ControlProtocol.Status:
                    Close(ref fd);
                    Reply(connection, new ControlReply { Ok = true, Targets = StatusFor(connection.Caller) });
                    return true;
                default:
                    throw new Refusal("malformed", $"unknown request kind \"{request.Kind}\"; this supervisor knows \"register\", \"attach\" and \"status\"");
            }
        }
        catch (Refusal r)
        {
            Close(ref fd);
            Refuse(connection, r);
            return false;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Close(ref fd);
            Log.InternalError(_log, e, connection.Caller.ToString());
            Refuse(connection, new Refusal("internal", $"the supervisor failed: {e.Message}"));
            return false;
        }
    }

    /// <summary>Called when a connection closes: a registration that never attached gives its place back.</summary>
    public void Closed(ControlConnection connection)
    {
        if (connection.Registration is not null && !connection.Attached)
            lock (_gate) _reserved--;
    }

    private Registration Register(ControlConnection connection, ControlRequest request)
    {
        if (_stopping) throw new Refusal("stopping", "the supervisor is stopping; try again when it is back");
        Caller caller;
        try
        {
            // With its supplementary groups, checked against the pidfd: who may use which policy depends on them.
            caller = connection.Caller = Caller.Of(connection.Channel);
        }
        catch (ControlChannelException e)
        {
            throw new Refusal("caller", e.Message);
        }
        if (connection.Registration is not null)
            throw new Refusal("malformed", "this connection has registered already; one registration per connection");
        (Policy policy, string label, string metricName, string text, string source) = ChoosePolicy(caller, request);
        lock (_gate)
        {
            if (_targets.Count + _reserved >= _options.MaxTargets)
                throw new Refusal("too_many_targets", $"too many targets: {_targets.Count} attached and {_reserved} registering, the limit is {_options.MaxTargets} (Unsock:MaxTargets)");
            _reserved++;
        }
        try
        {
            var registration = new Registration(Interlocked.Increment(ref _nextNumber), policy, label, metricName, caller, Accounts.UserName(caller.Uid),
                request.Command, text, source);
            Log.Registered(_log, registration.Number, caller.Pid, caller.Uid, registration.User, label,
                request.Command is { Count: > 0 } c ? string.Join(' ', c) : "(not given)");
            return registration;
        }
        catch
        {
            lock (_gate) _reserved--;
            throw;
        }
    }

    /// <summary>The policy a registration asks for, its label for status, its name for the metrics, and its text and source.</summary>
    private (Policy, string, string, string, string) ChoosePolicy(Caller caller, ControlRequest request)
    {
        if (request.Policy is not null && request.PolicyText is not null)
            throw new Refusal("malformed", "a registration names a policy or carries one (policyText), not both");
        if (request.Policy is { } name)
        {
            if (!PolicyCatalog.IsValidName(name))
                throw new Refusal("unknown_policy", $"\"{name}\" is not a policy name (letters, digits, '_', '.', '-'; a file path is read by the launcher and sent inline)");
            var named = _catalog.Find(name) ?? throw new Refusal("unknown_policy",
                $"no policy named \"{name}\" in {_catalog.Directory} (known: {(_catalog.Names.Count == 0 ? "none" : string.Join(", ", _catalog.Names.Order()))})");
            if (!named.Access.Allows(caller.Uid, caller.Gid, caller.Groups))
                throw new Refusal("not_allowed", $"user {Accounts.UserName(caller.Uid)} (uid {caller.Uid}) may not use policy \"{name}\"; {named.File} allows: {named.Access}");
            return (named.Policy, name, name, named.Text, named.File);
        }
        if (request.PolicyText is { } text)
        {
            if (!_options.AllowInlinePolicies)
                throw new Refusal("inline_disabled", "this supervisor takes named policies only (Unsock:AllowInlinePolicies is false); ask for one with --policy NAME");
            string source = string.IsNullOrEmpty(request.PolicySource) ? "inline policy" : request.PolicySource;
            try
            {
                return (Policy.Parse(text, source), "inline: " + source, InlinePolicyName, text, source);
            }
            catch (PolicyException e)
            {
                throw new Refusal("bad_policy", e.Message);
            }
        }
        throw new Refusal("malformed", "a registration must name a policy (\"policy\") or carry one (\"policyText\")");
    }

    /// <summary>The metrics' policy name of every inline policy (a path or a user's text would be unbounded).</summary>
    public const string InlinePolicyName = "inline";

    private static SeccompProgram Compile(Policy policy)
    {
        try
        {
            return FilterCompiler.Compile(FilterPlan.For(policy));
        }
        catch (Exception e) when (e is SeccompException or DllNotFoundException or InvalidOperationException)
        {
            throw new Refusal("internal", $"the supervisor cannot compile the filter: {e.Message}");
        }
    }

    private Target Attach(ControlConnection connection, ref int fd)
    {
        var registration = connection.Registration
            ?? throw new Refusal("malformed", "attach before register: send \"register\" first, then install the filter it returns and attach its listener");
        if (connection.Attached) throw new Refusal("malformed", "this connection has attached its listener already");
        if (_stopping) throw new Refusal("stopping", "the supervisor is stopping; try again when it is back");
        if (fd < 0) throw new Refusal("not_a_listener", "attach carried no file descriptor; send the seccomp listener with it (SCM_RIGHTS)");
        if (!PassedListener.IsSeccompListener(fd, out string what))
            throw new Refusal("not_a_listener", $"the file descriptor sent with attach is not a seccomp listener (it is {what})");
        Target target;
        try
        {
            int listener = fd;
            fd = -1; // the engine's now, whatever happens
            target = Serve(registration, listener, state: null, unanswered: null, stored: false);
        }
        catch (InvalidOperationException)
        {
            throw new Refusal("stopping", "the supervisor is stopping; try again when it is back");
        }
        lock (_gate) _reserved--;
        connection.Attached = true;
        _attaches.Add(1);
        Log.Attached(_log, registration.Number, registration.Caller.Pid, registration.User, registration.PolicyLabel);
        return target;
    }

    /// <summary>
    /// Attaches <paramref name="listener"/> (the engine's from now on) for <paramref name="registration"/>: kept in
    /// systemd's fd store first, then served, and forgotten once its targets are gone.
    /// </summary>
    private Target Serve(Registration registration, int listener, AttachmentState? state, IReadOnlyList<SyscallRequest>? unanswered, bool stored)
    {
        var caller = registration.Caller;
        var context = new TargetContext(caller.Pid, caller.Uid, caller.Gid, $"/proc/{caller.Pid}/root",
            registration.Command is { Count: > 0 } c ? string.Join(' ', c) : null, registration.PolicyName, registration.Number);
        // Before the engine has it: from the moment it is served it may be closed (its targets gone).
        _keeper.Keep(registration, listener, stored);
        var attachment = _engine.Attach(listener, registration.Policy, context, state, unanswered);
        var target = new Target(registration, attachment);
        attachment.SocketFileAdded = () => _keeper.FileAdded(target);
        lock (_gate) _targets[registration.Number] = target;
        attachment.Completion.ContinueWith(_ =>
        {
            lock (_gate) _targets.Remove(registration.Number);
            _keeper.Forget(registration.Number);
            Log.Gone(_log, registration.Number, caller.Pid, attachment.DetachReason ?? "detached");
        }, TaskScheduler.Default);
        return target;
    }

    /// <summary>Serves again the targets a previous supervisor handed over (or left at an unclean exit).</summary>
    public void Readopt(IReadOnlyList<Readoption> kept, long highestNumber)
    {
        lock (_gate) _nextNumber = Math.Max(_nextNumber, highestNumber);
        foreach (var k in kept)
        {
            try
            {
                Serve(k.Registration, k.ListenerFd, k.State, k.Unanswered, stored: true);
            }
            catch (InvalidOperationException)
            {
                return; // stopping already
            }
        }
    }

    private List<TargetStatus> StatusFor(Caller caller)
    {
        // Root sees every target, anyone else their own.
        return All.Where(t => caller.Uid == 0 || t.Registration.Caller.Uid == caller.Uid).Select(t => t.Status()).ToList();
    }

    private void Refuse(ControlConnection connection, Refusal refusal)
    {
        _refusals.Add(1, new KeyValuePair<string, object?>("reason", refusal.Kind));
        Log.Refused(_log, connection.Caller.Pid, connection.Caller.Uid, refusal.Kind, refusal.Message);
        Reply(connection, ControlReply.Refused(refusal.Message));
    }

    private static void Reply(ControlConnection connection, ControlReply reply)
    {
        try
        {
            connection.Channel.Send(reply);
        }
        catch (ControlChannelException)
        {
            // The caller went away or does not read: nothing else depends on it.
        }
    }

    private static void Close(ref int fd)
    {
        PassedListener.Close(fd);
        fd = -1;
    }

    /// <summary>Logs what happens to the targets still attached when the service stops.</summary>
    public void LogStillAttached()
    {
        var all = All;
        if (all.Count == 0)
        {
            Log.NoneAttached(_log);
            return;
        }
        foreach (var t in all)
            Log.StillAttached(_log, t.Registration.Number, t.Registration.Caller.Pid, t.Command(), t.Registration.PolicyLabel);
    }

    private static partial class Log
    {
        [LoggerMessage(200, LogLevel.Information, "target {Number}: pid {Pid} (user {User}, uid {Uid}) registered with policy {Policy}, command: {Command}")]
        public static partial void Registered(ILogger logger, long number, int pid, uint uid, string user, string policy, string command);

        [LoggerMessage(201, LogLevel.Information, "target {Number}: pid {Pid} (user {User}) attached under policy {Policy}")]
        public static partial void Attached(ILogger logger, long number, int pid, string user, string policy);

        [LoggerMessage(202, LogLevel.Information, "target {Number}: pid {Pid} detached: {Reason}")]
        public static partial void Gone(ILogger logger, long number, int pid, string reason);

        [LoggerMessage(203, LogLevel.Warning, "refused pid {Pid} (uid {Uid}), {Kind}: {Reason}")]
        public static partial void Refused(ILogger logger, int pid, uint uid, string kind, string reason);

        [LoggerMessage(204, LogLevel.Error, "a control request of {Caller} failed")]
        public static partial void InternalError(ILogger logger, Exception e, string caller);

        [LoggerMessage(205, LogLevel.Warning, "stopping with target {Number} still attached: pid {Pid} ({Command}), policy {Policy}; once the supervisor is gone its trapped calls (bind, connect, ...) fail with ENOSYS, its open connections go on")]
        public static partial void StillAttached(ILogger logger, long number, int pid, string command, string policy);

        [LoggerMessage(206, LogLevel.Information, "stopping with no target attached")]
        public static partial void NoneAttached(ILogger logger);
    }
}
