namespace Unsock.Launcher;

/// <summary>unsock-launch [--policy NAME|FILE] [--supervisor PATH | --embedded] [-v] [--print-policy] [--] COMMAND [ARGS...]</summary>
internal sealed record CommandLine(string? PolicyPath, bool Verbose, bool PrintPolicy, bool Help, IReadOnlyList<string> Command)
{
    public const string Usage = """
        usage: unsock-launch [--policy NAME|FILE] [--supervisor PATH | --embedded] [-v] [--] COMMAND [ARGS...]
               unsock-launch status [--json] [--supervisor PATH]
               unsock-launch --print-policy [--policy NAME|FILE]
               unsock-launch --check [--policy FILE]                      (validate, show example calls)
               unsock-launch control show FILE...                          (what a control file says, as JSON)
               UNSOCK_FILE=F UNSOCK_VSOCK_PORT=N ... unsock-launch      (create a control file)

        Runs COMMAND with its TCP/IP sockets redirected to Unix domain sockets (or VSOCK/TIPC through
        control files) as the policy says. Without --policy, the original unsock's UNSOCK_* environment
        variables make the policy (UNSOCK_DIR, UNSOCK_ADDR, UNSOCK_PORT, UNSOCK_MODE, ...).

        When a supervisor service runs (--supervisor PATH, else $UNSOCK_SUPERVISOR, else the default
        /run/unsock/supervisor.sock when something listens there), the command is handed to it and
        replaces the launcher in place (same pid); otherwise the launcher supervises it itself.

          --policy NAME    a policy of the supervisor's policy directory (/etc/unsock/policies/NAME.json)
          --policy FILE    a JSON policy file (a value with a '/' or ending in .json; see README)
          --supervisor P   hand the command to the supervisor listening at P (an error if it cannot)
          --embedded       supervise the command from this process, even when a supervisor runs
          -v, --verbose    log every decision to stderr (embedded mode)
          --print-policy   print the effective policy as JSON and exit
          -h, --help       this text

          status           the supervisor's targets: pid, user, policy, counters, socket files
          --json           (status) as JSON
        """;

    /// <summary>The supervisor's socket, when --supervisor gave one.</summary>
    public string? SupervisorPath { get; init; }

    /// <summary>--embedded: never hand the command to a supervisor.</summary>
    public bool Embedded { get; init; }

    /// <summary>The "status" subcommand.</summary>
    public bool Status { get; init; }

    /// <summary>status --json.</summary>
    public bool Json { get; init; }

    /// <summary>Parses the launcher's own options; the first non-option word starts the command.</summary>
    public static CommandLine Parse(string[] args)
    {
        string? policy = null, supervisor = null;
        bool verbose = false, print = false, help = false, embedded = false, json = false;
        bool status = args.Length > 0 && args[0] == "status";
        int i = status ? 1 : 0;
        for (; i < args.Length; i++)
        {
            string a = args[i];
            if (a == "--") { i++; break; }
            if (!a.StartsWith('-') || a == "-") break;
            switch (a)
            {
                case "-v" or "--verbose": verbose = true; break;
                case "--print-policy": print = true; break;
                case "-h" or "--help": help = true; break;
                case "--embedded": embedded = true; break;
                case "--json" when status: json = true; break;
                case "--policy":
                    policy = Value(args, ref i, "--policy needs a policy name or a file name");
                    break;
                case "--supervisor":
                    supervisor = Value(args, ref i, "--supervisor needs the path of the supervisor's socket");
                    break;
                default:
                    if (a.StartsWith("--policy=", StringComparison.Ordinal)) { policy = a["--policy=".Length..]; break; }
                    if (a.StartsWith("--supervisor=", StringComparison.Ordinal)) { supervisor = a["--supervisor=".Length..]; break; }
                    throw new UsageException($"unknown option '{a}'");
            }
        }
        if (status && i < args.Length) throw new UsageException($"status takes no command ('{args[i]}')");
        if (embedded && supervisor is not null) throw new UsageException("--embedded and --supervisor exclude each other");
        if (supervisor is { Length: 0 }) throw new UsageException("--supervisor needs the path of the supervisor's socket");
        return new(policy, verbose, print, help, args[i..]) { SupervisorPath = supervisor, Embedded = embedded, Status = status, Json = json };
    }

    /// <summary>A policy argument that names a supervisor policy rather than a file: no '/', not ending in .json.</summary>
    public static bool IsPolicyName(string policy) =>
        !policy.Contains('/') && !policy.EndsWith(".json", StringComparison.Ordinal);

    private static string Value(string[] args, ref int i, string missing)
    {
        if (i + 1 >= args.Length) throw new UsageException(missing);
        return args[++i];
    }
}

internal sealed class UsageException(string message) : Exception(message);
