namespace Unsock.Launcher;

/// <summary>Finds the command the way a shell does, so that "not found" (127) and "cannot run" (126) are told apart before anything starts.</summary>
internal static class CommandResolver
{
    public static int Resolve(string command, string? searchPath, out string path, out string problem)
    {
        path = command;
        problem = "";
        if (command.Length == 0)
        {
            problem = "empty command name";
            return 127;
        }
        if (command.Contains('/')) return Check(command, out problem);
        string? firstDenied = null;
        foreach (var dir in (searchPath ?? "/usr/local/bin:/usr/bin:/bin").Split(':'))
        {
            string candidate = Path.Combine(dir.Length == 0 ? "." : dir, command);
            if (!File.Exists(candidate)) continue;
            if (Check(candidate, out _) == 0)
            {
                path = candidate;
                return 0;
            }
            firstDenied ??= candidate;
        }
        if (firstDenied is not null) return Check(firstDenied, out problem);
        problem = $"{command}: command not found";
        return 127;
    }

    private static int Check(string candidate, out string problem)
    {
        problem = "";
        if (Directory.Exists(candidate))
        {
            problem = $"{candidate}: is a directory";
            return 126;
        }
        if (!File.Exists(candidate))
        {
            problem = $"{candidate}: no such file";
            return 127;
        }
        if (Access(candidate) != 0)
        {
            problem = $"{candidate}: permission denied (not executable)";
            return 126;
        }
        return 0;
    }

    private static unsafe int Access(string file)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(file + "\0");
        fixed (byte* p = bytes) return Tmds.Linux.LibC.access(p, 1 /* X_OK */);
    }
}
