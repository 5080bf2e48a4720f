namespace Unsock.Launcher;

/// <summary>unsock-launch [--policy FILE] [-v] [--print-policy] [--] COMMAND [ARGS...]</summary>
internal sealed record CommandLine(string? PolicyPath, bool Verbose, bool PrintPolicy, bool Help, IReadOnlyList<string> Command)
{
    public const string Usage = """
        usage: unsock-launch [--policy FILE] [-v] [--] COMMAND [ARGS...]
               unsock-launch --print-policy [--policy FILE]
               unsock-launch --check [--policy FILE]                      (validate, show example calls)
               unsock-launch control show FILE...                          (what a control file says, as JSON)
               UNSOCK_FILE=F UNSOCK_VSOCK_PORT=N ... unsock-launch      (create a control file)

        Runs COMMAND with its TCP/IP sockets redirected to Unix domain sockets (or VSOCK/TIPC through
        control files) as the policy says. Without --policy, the original unsock's UNSOCK_* environment
        variables make the policy (UNSOCK_DIR, UNSOCK_ADDR, UNSOCK_PORT, UNSOCK_MODE, ...).

          --policy FILE    JSON policy (see README)
          -v, --verbose    log every decision to stderr
          --print-policy   print the effective policy as JSON and exit
          -h, --help       this text
        """;

    /// <summary>Parses the launcher's own options; the first non-option word starts the command.</summary>
    public static CommandLine Parse(string[] args)
    {
        string? policy = null;
        bool verbose = false, print = false, help = false;
        int i = 0;
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
                case "--policy":
                    if (i + 1 >= args.Length) throw new UsageException("--policy needs a file name");
                    policy = args[++i];
                    break;
                default:
                    if (a.StartsWith("--policy=", StringComparison.Ordinal)) { policy = a["--policy=".Length..]; break; }
                    throw new UsageException($"unknown option '{a}'");
            }
        }
        return new(policy, verbose, print, help, args[i..]);
    }
}

internal sealed class UsageException(string message) : Exception(message);
