using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Unsock.Core;
using Unsock.Core.Engine;
using Unsock.Core.Policies;
using Unsock.Core.Supervision;

namespace Unsock.Supervisor;

/// <summary>What the next supervisor needs to serve a target again: its registration and what the engine knew.</summary>
internal sealed class KeptTarget
{
    public long Number { get; set; }
    public string PolicyLabel { get; set; } = "";
    public string PolicyName { get; set; } = "";
    public string PolicyText { get; set; } = "";
    public string PolicySource { get; set; } = "";
    public int Pid { get; set; }
    /// <summary>The process's start time (/proc/PID/stat, clock ticks since boot): a pid used again by another process differs.</summary>
    public ulong StartTime { get; set; }
    public uint Uid { get; set; }
    public uint Gid { get; set; }
    public uint[] Groups { get; set; } = [];
    public string User { get; set; } = "";
    public List<string>? Command { get; set; }
    public AttachmentState? State { get; set; }
    /// <summary>True when written at a handover (every converted socket); false for the running copy (socket files and listeners only).</summary>
    public bool Complete { get; set; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, WriteIndented = false)]
[JsonSerializable(typeof(KeptTarget))]
internal sealed partial class KeptTargetJson : JsonSerializerContext;

/// <summary>A target served again after a restart: its registration, listener, and what to give the engine back.</summary>
internal sealed record Readoption(Registration Registration, int ListenerFd, AttachmentState? State, IReadOnlyList<SyscallRequest> Unanswered);

/// <summary>
/// Keeps targets across restarts and upgrades of the supervisor, with systemd's file descriptor store: each
/// attached listener goes to the store (FDSTORE=1, FDNAME=unsock-target-N) and its registration to
/// StateDirectory/N.json; socket files are added to that file while the supervisor runs, every converted socket
/// at a handover. The calls received and not answered are in StateDirectory/calls (<see cref="CallJournal"/>).
/// At start, the listeners systemd passes back are served again with what those files say.
/// <para>
/// On only when something keeps the fds: $NOTIFY_SOCKET is set and the store has room ($FDSTORE, systemd 254+),
/// or Unsock:KeepTargetsAcrossRestarts says so (older systemd, whose unit sets FileDescriptorStoreMax=).
/// </para>
/// </summary>
internal sealed partial class TargetKeeper
{
    private const string JournalName = "calls";
    private readonly ILogger _log;
    private readonly string _directory;
    private readonly int _journalSlots;
    private readonly object _gate = new(), _writeGate = new();
    private readonly Dictionary<long, long> _writtenVersions = new();
    private CallJournal? _journal;
    private List<JournaledCall> _left = [];
    private volatile bool _handingOver;
    private bool _warnedStore;

    public TargetKeeper(IOptions<SupervisorOptions> options, IOptions<EngineOptions> engine, ILogger<TargetKeeper> log)
    {
        _log = log;
        var o = options.Value;
        _directory = o.StateDirectory;
        Enabled = ServiceManager.NotifySocket is not null && (o.KeepTargetsAcrossRestarts ?? ServiceManager.FdStoreMax > 0);
        // Every notification thread's call in hand, every parked call, and the threads that handle calls again.
        _journalSlots = 64 + engine.Value.MaxParkedCalls + Math.Max(engine.Value.NotificationThreads, 32);
    }

    /// <summary>True when targets are kept in systemd's fd store and served again after a restart.</summary>
    public bool Enabled { get; }

    /// <summary>True from the start of a handover: targets detached then are handed over, not gone.</summary>
    public bool HandingOver => _handingOver;

    /// <summary>
    /// Before the engine starts: the state directory (0700), the journal, and the calls a previous process left in it.
    /// </summary>
    public void Open(NotificationEngine engine)
    {
        if (!Enabled)
        {
            Log.NotKeeping(_log, ServiceManager.NotifySocket is null
                ? "not run by systemd (no NOTIFY_SOCKET)"
                : "systemd keeps no fds for this service (no FDSTORE; set FileDescriptorStoreMax= in the unit and Unsock:KeepTargetsAcrossRestarts=true on systemd before 254)");
            return;
        }
        if (!OperatingSystem.IsLinux()) throw new PlatformNotSupportedException("seccomp user notification is Linux's");
        Directory.CreateDirectory(_directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        // Mapped until the process ends, never unmapped: engine threads may note a call in it up to the last moment.
        _journal = CallJournal.Open(Path.Combine(_directory, JournalName), _journalSlots, out _left);
        engine.UseJournal(_journal);
        Log.Keeping(_log, _directory, _left.Count);
    }

    /// <summary>
    /// The targets systemd passed back (fds named unsock-target-N), with their registrations read again; fds of
    /// targets that are gone, or whose state cannot be read, are closed and removed from the store. Also returns
    /// the highest target number in use, so that new numbers never meet old ones.
    /// </summary>
    public List<Readoption> Readopt(IReadOnlyList<PassedFd> passed, out long highestNumber)
    {
        highestNumber = 0;
        var adopted = new List<Readoption>();
        var kept = passed.Where(p => ServiceManager.IsTargetFdName(p.Name)).ToList();
        if (!Enabled)
        {
            foreach (var p in kept)
            {
                Log.NotReadopted(_log, p.Name!, "this supervisor does not keep targets (see above)");
                ServiceManager.Close(p.Fd);
            }
            return adopted;
        }
        var seen = new HashSet<long>();
        var doubled = new HashSet<long>();
        var leftByTarget = _left.ToLookup(c => c.Key, c => c.Request);
        foreach (var p in kept)
        {
            string name = p.Name!;
            if (!long.TryParse(name.AsSpan(ServiceManager.TargetFdPrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out long number)
                || number <= 0)
            {
                Drop(p.Fd, name, 0, "not a target's name");
                continue;
            }
            if (!seen.Add(number))
            {
                // Not Drop: FDSTOREREMOVE goes by name and would take the first one too (stored again below).
                Log.NotReadopted(_log, name, "a second fd with that name; the first is served");
                ServiceManager.Close(p.Fd);
                doubled.Add(number);
                continue;
            }
            highestNumber = Math.Max(highestNumber, number);
            if (!PassedListener.IsSeccompListener(p.Fd, out string what))
            {
                Drop(p.Fd, name, number, $"not a seccomp listener (it is {what})");
                continue;
            }
            if (PassedListener.IsAbandoned(p.Fd))
            {
                Drop(p.Fd, name, number, "its programs exited while no supervisor ran");
                continue;
            }
            var record = Read(number, out string? problem);
            if (record is null)
            {
                Drop(p.Fd, name, number, problem!);
                continue;
            }
            Policy policy;
            try
            {
                policy = Policy.Parse(record.PolicyText, record.PolicySource);
            }
            catch (PolicyException e)
            {
                Drop(p.Fd, name, number, $"its policy no longer parses: {e.Message}");
                continue;
            }
            var state = record.State;
            // Files are checked again in the target's root: only while the pid is still the same process.
            if (state is not null && StartTimeOf(record.Pid) != record.StartTime)
            {
                Log.MainProcessGone(_log, number, record.Pid, state.Files.Count);
                state.Files.Clear();
            }
            var caller = new Caller(record.Pid, record.Uid, record.Gid, record.Groups);
            var registration = new Registration(number, policy, record.PolicyLabel, record.PolicyName, caller, record.User, record.Command,
                record.PolicyText, record.PolicySource);
            var unanswered = leftByTarget[number].ToList();
            // From now on the file describes a running supervisor: an unclean exit must not pass for a handover.
            bool handedOver = record.Complete;
            record.Complete = false;
            Save(record);
            adopted.Add(new Readoption(registration, p.Fd, state, unanswered));
            Log.Readopted(_log, number, record.Pid, record.PolicyLabel, state?.Sockets.Count ?? 0, state?.Files.Count ?? 0, unanswered.Count,
                handedOver ? "handed over" : "after an unclean exit: only socket files and listeners were known");
        }
        // State files of targets systemd did not pass back (it lost them, or they were removed) are of no use.
        var served = adopted.Select(a => a.Registration.Number).ToHashSet();
        foreach (var file in Directory.EnumerateFiles(_directory, "*.json"))
        {
            if (long.TryParse(Path.GetFileNameWithoutExtension(file), NumberStyles.None, CultureInfo.InvariantCulture, out long n))
            {
                highestNumber = Math.Max(highestNumber, n);
                if (!served.Contains(n)) TryDelete(file);
            }
        }
        foreach (var a in adopted.Where(a => doubled.Contains(a.Registration.Number)))
        {
            string name = ServiceManager.TargetFdName(a.Registration.Number);
            ServiceManager.Notify($"FDSTOREREMOVE=1\nFDNAME={name}");
            ServiceManager.Notify($"FDSTORE=1\nFDNAME={name}", a.ListenerFd);
        }
        _left = [];
        return adopted;
    }

    private void Drop(int fd, string name, long number, string reason)
    {
        Log.NotReadopted(_log, name, reason);
        ServiceManager.Close(fd);
        ServiceManager.Notify($"FDSTOREREMOVE=1\nFDNAME={name}");
        if (number > 0) TryDelete(StatePath(number));
    }

    /// <summary>
    /// A target served: its registration goes to disk and, unless <paramref name="stored"/> (passed back by systemd),
    /// its listener to the fd store (a copy; the engine owns <paramref name="listenerFd"/>).
    /// </summary>
    public void Keep(Registration registration, int listenerFd, bool stored)
    {
        // Passed back by systemd: the store has it, and its file says more than a new one would (the next
        // WriteChanged brings it up to date).
        if (!Enabled || stored) return;
        Write(registration, state: null, complete: false);
        int err = ServiceManager.Notify($"FDSTORE=1\nFDNAME={ServiceManager.TargetFdName(registration.Number)}", listenerFd);
        if (err != 0)
        {
            lock (_gate)
            {
                if (_warnedStore) return;
                _warnedStore = true;
            }
            Log.StoreFailed(_log, registration.Number, Errors.Name(err));
        }
    }

    /// <summary>A target that is gone: its fd leaves the store and its file the disk (not during a handover: then it is handed over).</summary>
    public void Forget(long number)
    {
        if (!Enabled || _handingOver) return;
        ServiceManager.Notify($"FDSTOREREMOVE=1\nFDNAME={ServiceManager.TargetFdName(number)}");
        TryDelete(StatePath(number));
        lock (_gate) _writtenVersions.Remove(number);
    }

    /// <summary>A target bound a socket file: written at once, on the thread pool (a notification thread called).</summary>
    public void FileAdded(Target target)
    {
        if (!Enabled || _handingOver) return;
        ThreadPool.UnsafeQueueUserWorkItem(t => WriteChanged([t]), target, preferLocal: false);
    }

    /// <summary>Writes the socket files of targets whose files changed since last time (so that an unclean exit loses none).</summary>
    public void WriteChanged(IEnumerable<Target> targets)
    {
        if (!Enabled || _handingOver) return;
        foreach (var t in targets)
        {
            long version = t.Attachment.FilesVersion;
            lock (_gate)
            {
                if (_handingOver || (_writtenVersions.TryGetValue(t.Registration.Number, out long written) && written == version)) continue;
                _writtenVersions[t.Registration.Number] = version;
            }
            if (t.Attachment.IsAttached) Write(t.Registration, t.Attachment.ExportState(filesOnly: true), complete: false);
        }
    }

    /// <summary>
    /// Stops the engine for the next supervisor: calls in hand are finished, waiting ones stay in the journal,
    /// and every target's complete state is written. The listeners stay open in systemd's store.
    /// </summary>
    public void HandOver(NotificationEngine engine, IReadOnlyList<Target> targets, TimeSpan timeout)
    {
        lock (_gate) _handingOver = true;
        long started = Environment.TickCount64;
        int parked = targets.Sum(t => t.Attachment.ParkedCalls);
        engine.Handover(timeout);
        foreach (var t in targets) Write(t.Registration, t.Attachment.ExportState(), complete: true);
        Log.HandedOver(_log, targets.Count, parked, Environment.TickCount64 - started);
    }

    private string StatePath(long number) => Path.Combine(_directory, number.ToString(CultureInfo.InvariantCulture) + ".json");

    private void Write(Registration r, AttachmentState? state, bool complete)
    {
        var kept = new KeptTarget
        {
            Number = r.Number, PolicyLabel = r.PolicyLabel, PolicyName = r.PolicyName, PolicyText = r.PolicyText, PolicySource = r.PolicySource,
            Pid = r.Caller.Pid, StartTime = StartTimeOf(r.Caller.Pid), Uid = r.Caller.Uid, Gid = r.Caller.Gid, Groups = [.. r.Caller.Groups],
            User = r.User, Command = r.Command?.ToList(), State = state, Complete = complete,
        };
        Save(kept);
    }

    private void Save(KeptTarget kept)
    {
        bool complete = kept.Complete;
        string path = StatePath(kept.Number);
        string temporary = path + ".new";
        try
        {
            // One writer at a time: the timer, a bind's write and a handover may meet on one target.
            lock (_writeGate)
            {
                // A running copy never overwrites what a handover wrote.
                if (!complete && _handingOver) return;
                File.WriteAllText(temporary, JsonSerializer.Serialize(kept, KeptTargetJson.Default.KeptTarget));
                File.Move(temporary, path, overwrite: true);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Log.WriteFailed(_log, path, e.Message);
        }
    }

    private KeptTarget? Read(long number, out string? problem)
    {
        string path = StatePath(number);
        problem = null;
        try
        {
            var kept = JsonSerializer.Deserialize(File.ReadAllText(path), KeptTargetJson.Default.KeptTarget);
            if (kept is null || kept.Number != number || kept.Pid <= 0) problem = $"{path} does not describe target {number}";
            return problem is null ? kept : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
        {
            problem = $"its state {path} cannot be read: {e.Message}";
            return null;
        }
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>Field 22 of /proc/PID/stat (starttime); 0 when the process is gone.</summary>
    internal static ulong StartTimeOf(int pid) => ProcStat.Field(pid, 22);

    private static partial class Log
    {
        [LoggerMessage(600, LogLevel.Information, "targets are kept across restarts: listeners in systemd's fd store, state in {Directory} ({Left} calls left unanswered by the previous process)")]
        public static partial void Keeping(ILogger logger, string directory, int left);

        [LoggerMessage(601, LogLevel.Information, "targets are not kept across restarts: {Why}; when this supervisor stops, its targets' trapped calls fail with ENOSYS")]
        public static partial void NotKeeping(ILogger logger, string why);

        [LoggerMessage(602, LogLevel.Information, "target {Number}: pid {Pid} served again under policy {Policy} ({Sockets} converted sockets, {Files} socket files, {Calls} calls to answer; {How})")]
        public static partial void Readopted(ILogger logger, long number, int pid, string policy, int sockets, int files, int calls, string how);

        [LoggerMessage(603, LogLevel.Warning, "{Name} from systemd's fd store is not served again: {Reason}; closed and removed from the store")]
        public static partial void NotReadopted(ILogger logger, string name, string reason);

        [LoggerMessage(604, LogLevel.Warning, "target {Number}: pid {Pid} is no longer the process that registered; its {Files} socket files are left alone (not removed by us)")]
        public static partial void MainProcessGone(ILogger logger, long number, int pid, int files);

        [LoggerMessage(605, LogLevel.Warning, "target {Number}: systemd did not take its listener into the fd store ({Errno}); targets will not survive a restart (this is said once)")]
        public static partial void StoreFailed(ILogger logger, long number, string errno);

        [LoggerMessage(606, LogLevel.Warning, "cannot write {Path}: {Reason}; the target will not be served again after an unclean exit")]
        public static partial void WriteFailed(ILogger logger, string path, string reason);

        [LoggerMessage(607, LogLevel.Information, "handed {Count} targets over to the next supervisor in {Milliseconds} ms ({Parked} waiting calls left for it to answer); until it starts their calls wait")]
        public static partial void HandedOver(ILogger logger, int count, int parked, long milliseconds);
    }
}
