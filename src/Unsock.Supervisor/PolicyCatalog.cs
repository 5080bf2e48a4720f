using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Unsock.Core.Policies;
using Unsock.Core.Supervision;

namespace Unsock.Supervisor;

/// <summary>A named policy as loaded: the policy, who may use it, and the file it came from.</summary>
public sealed record NamedPolicy(string Name, Policy Policy, PolicyAccess Access, string File, DateTime Modified)
{
    /// <summary>The file's text as loaded: what a target registered under it keeps across a restart of the supervisor.</summary>
    public string Text { get; init; } = "";
}

/// <summary>
/// The named policies of the policy directory (NAME.json), read at start and on SIGHUP. A file that does
/// not read keeps the version loaded before (and the reason is logged); a file that is gone is dropped.
/// Targets keep the policy they registered with whatever happens here.
/// </summary>
public sealed partial class PolicyCatalog(IOptions<SupervisorOptions> options, ILogger<PolicyCatalog> log)
{
    private const long MaxFileBytes = 1 << 20;
    private readonly string _directory = options.Value.PolicyDirectory;
    private readonly object _reloadGate = new();
    private volatile Dictionary<string, NamedPolicy> _policies = new(StringComparer.Ordinal);

    [GeneratedRegex("^[A-Za-z0-9_.-]+$")]
    private static partial Regex NamePattern();

    /// <summary>A name a launcher may ask for: letters, digits, '_', '.', '-', not "." or "..": nothing that walks the file system.</summary>
    public static bool IsValidName(string name) => name.Length <= 200 && NamePattern().IsMatch(name) && name is not "." and not "..";

    public string Directory => _directory;

    public IReadOnlyCollection<string> Names => _policies.Keys;

    public NamedPolicy? Find(string name) => _policies.GetValueOrDefault(name);

    /// <summary>Reads every NAME.json; returns how many failed (each logged with its reason).</summary>
    public int Reload()
    {
        lock (_reloadGate)
        {
            var old = _policies;
            var next = new Dictionary<string, NamedPolicy>(StringComparer.Ordinal);
            int failed = 0;
            string[] files;
            try
            {
                files = System.IO.Directory.Exists(_directory) ? System.IO.Directory.GetFiles(_directory, "*.json") : [];
                if (files.Length == 0) Log.NoPolicies(log, _directory);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Log.DirectoryUnreadable(log, _directory, e.Message);
                return 1; // everything stays as it was
            }
            foreach (string file in files.Order(StringComparer.Ordinal))
            {
                string name = Path.GetFileNameWithoutExtension(file);
                if (!IsValidName(name))
                {
                    Log.BadName(log, file);
                    continue;
                }
                try
                {
                    var info = new FileInfo(file);
                    if (info.Length > MaxFileBytes) throw new PolicyException($"{file}: {info.Length} bytes, more than the {MaxFileBytes} a policy file may have", file);
                    string json = File.ReadAllText(file);
                    var policy = Policy.Parse(json, file);
                    var access = PolicyAccess.Read(json, file);
                    var loaded = new NamedPolicy(name, policy, access, file, info.LastWriteTimeUtc) { Text = json };
                    next[name] = loaded;
                    if (!old.TryGetValue(name, out var before) || !before.Policy.Equals(policy) || before.Access.ToString() != access.ToString())
                        Log.Loaded(log, name, file, policy.Rules.Count, access.ToString());
                }
                catch (Exception e) when (e is PolicyException or IOException or UnauthorizedAccessException)
                {
                    failed++;
                    string message = e is PolicyException ? e.Message : $"{file}: cannot read it: {e.Message}";
                    if (old.TryGetValue(name, out var kept))
                    {
                        next[name] = kept;
                        Log.KeptPrevious(log, name, message);
                    }
                    else
                    {
                        Log.NotLoaded(log, name, message);
                    }
                }
            }
            foreach (string gone in old.Keys.Except(next.Keys)) Log.Dropped(log, gone);
            _policies = next;
            return failed;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(100, LogLevel.Information, "policy \"{Name}\" loaded from {File}: {Rules} rules, allowed: {Access}")]
        public static partial void Loaded(ILogger logger, string name, string file, int rules, string access);

        [LoggerMessage(101, LogLevel.Error, "policy \"{Name}\" not changed, the version loaded before stays: {Reason}")]
        public static partial void KeptPrevious(ILogger logger, string name, string reason);

        [LoggerMessage(102, LogLevel.Error, "policy \"{Name}\" not loaded: {Reason}")]
        public static partial void NotLoaded(ILogger logger, string name, string reason);

        [LoggerMessage(103, LogLevel.Information, "policy \"{Name}\" removed: its file is gone (targets running under it keep it)")]
        public static partial void Dropped(ILogger logger, string name);

        [LoggerMessage(104, LogLevel.Warning, "{File}: not loaded: a policy's name may have only letters, digits, '_', '.' and '-'")]
        public static partial void BadName(ILogger logger, string file);

        [LoggerMessage(105, LogLevel.Error, "policy directory {Directory} cannot be read, the policies stay as they were: {Reason}")]
        public static partial void DirectoryUnreadable(ILogger logger, string directory, string reason);

        [LoggerMessage(106, LogLevel.Warning, "no named policies in {Directory} (NAME.json); only inline policies can be used")]
        public static partial void NoPolicies(ILogger logger, string directory);
    }
}
