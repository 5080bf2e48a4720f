using Unsock.Core.ControlFiles;

namespace Unsock.Launcher;

/// <summary><c>unsock-launch control show FILE...</c>: prints what control files say, as JSON.</summary>
internal static class ControlShow
{
    public const string Usage = "usage: unsock-launch control show FILE...";

    /// <summary>True for <c>control ...</c> as the first words: the subcommand, not a program named "control".</summary>
    public static bool IsRequested(string[] args) => args.Length > 0 && args[0] == "control";

    /// <summary>0 when every file is a control file; 1 when one is not (or is corrupt), saying why; 2 for a bad command line.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        if (args is not ["control", "show", _, ..])
        {
            stderr.WriteLine($"unsock-launch: {(args is ["control", "show"] ? "control show needs a file" : "the control subcommand is \"show\"")}\n{Usage}");
            return 2;
        }
        int status = 0;
        foreach (string path in args[2..])
        {
            try
            {
                if (ControlFile.TryLoad(path, out var file))
                {
                    stdout.WriteLine(file!.ToJson(path));
                    continue;
                }
                stderr.WriteLine($"unsock-launch: {path} is not a control file: {ControlFile.WhyNot(path)}");
            }
            catch (ControlFileException e)
            {
                stderr.WriteLine($"unsock-launch: {e.Message}");
            }
            status = 1;
        }
        return status;
    }
}
