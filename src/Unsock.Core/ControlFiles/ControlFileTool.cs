using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using static Tmds.Linux.LibC;

namespace Unsock.Core.ControlFiles;

/// <summary>
/// The original's control-file creation tool (libunsock.so run as a program), driven by the same
/// environment variables. Exit codes: 0 written, 1 could not create (e.g. "File exists"),
/// 2 bad or incomplete variables.
/// </summary>
public static class ControlFileTool
{
    public const int ExitSuccess = 0;
    public const int ExitFailure = 1;
    public const int ExitUsage = 2;

    public const string FileVariable = "UNSOCK_FILE";
    public const string FirecrackerSocketVariable = "UNSOCK_FC_SOCK";
    public const string VsockPortVariable = "UNSOCK_VSOCK_PORT";
    public const string VsockCidVariable = "UNSOCK_VSOCK_CID";
    public const string TipcAddrTypeVariable = "UNSOCK_TIPC_ADDRTYPE";
    public const string TipcScopeVariable = "UNSOCK_TIPC_SCOPE";
    public const string TipcTypeVariable = "UNSOCK_TIPC_TYPE";
    public const string TipcLowerVariable = "UNSOCK_TIPC_LOWER";
    public const string TipcUpperVariable = "UNSOCK_TIPC_UPPER";

    private static readonly string[] TipcVariables =
        [TipcAddrTypeVariable, TipcScopeVariable, TipcTypeVariable, TipcLowerVariable, TipcUpperVariable];

    public const string Usage =
        """
        Create an unsock control file (it stands where a socket file would be and says where the connection really goes):

          UNSOCK_FILE=/path/to/1234.sock UNSOCK_FC_SOCK=/path/to/firecracker-vsock UNSOCK_VSOCK_PORT=5678
              connect through a Firecracker vsock multiplexer to guest port 5678

          UNSOCK_FILE=/path/to/1234.sock UNSOCK_VSOCK_PORT=5678 [UNSOCK_VSOCK_CID=2]
              bind or connect AF_VSOCK port 5678 (CID default -1 = any)

          UNSOCK_FILE=/path/to/1234.sock UNSOCK_TIPC_ADDRTYPE=2 UNSOCK_TIPC_SCOPE=2 UNSOCK_TIPC_TYPE=128 UNSOCK_TIPC_LOWER=99 UNSOCK_TIPC_UPPER=0
              bind or connect AF_TIPC (addrtype 1 service range, 2 service address, 3 socket address)

        If several forms are given, the first one above wins. An existing file is never overwritten.
        """;

    /// <summary>Runs the tool; relative paths are taken against the current directory.</summary>
    public static int Run(IReadOnlyDictionary<string, string> env, TextWriter stdout, TextWriter stderr)
        => Run(env, stdout, stderr, Environment.CurrentDirectory);

    internal static int Run(IReadOnlyDictionary<string, string> env, TextWriter stdout, TextWriter stderr, string workingDirectory)
    {
        ArgumentNullException.ThrowIfNull(env);
        string? file = Get(env, FileVariable);
        string? firecrackerSocket = Get(env, FirecrackerSocketVariable);
        string? vsockPort = Get(env, VsockPortVariable);
        string? vsockCid = Get(env, VsockCidVariable);
        string[] tipcSet = TipcVariables.Where(v => Get(env, v) is not null).ToArray();

        if (file is null)
        {
            return UsageError(stderr, $"{FileVariable} is not set.");
        }

        ControlFile controlFile;
        try
        {
            if (firecrackerSocket is not null && vsockPort is not null)
            {
                uint port = ParsePort(vsockPort);
                if (vsockCid is not null)
                {
                    stderr.WriteLine($"unsock: ignoring {VsockCidVariable}: a Firecracker proxy chooses the guest itself");
                }
                WarnIgnoredTipc(stderr, tipcSet, "Firecracker");
                string? proxyPath = ResolveFirecrackerSocket(firecrackerSocket, workingDirectory, stderr);
                if (proxyPath is null)
                {
                    return ExitFailure;
                }
                controlFile = ControlFile.ForFirecracker(proxyPath, port);
            }
            else if (vsockPort is not null)
            {
                uint port = ParsePort(vsockPort);
                uint cid = vsockCid is null ? VsockAddress.CidAny : ParseUInt32(VsockCidVariable, vsockCid, allowMinusOne: true);
                WarnIgnoredTipc(stderr, tipcSet, "VSOCK");
                controlFile = ControlFile.ForVsock(port, cid);
            }
            else if (tipcSet.Length == TipcVariables.Length)
            {
                byte addrType = (byte)ParseInRange(TipcAddrTypeVariable, Get(env, TipcAddrTypeVariable)!, 1, 3,
                    "1 (service range), 2 (service address) or 3 (socket address)");
                sbyte scope = (sbyte)ParseInRange(TipcScopeVariable, Get(env, TipcScopeVariable)!, sbyte.MinValue, sbyte.MaxValue,
                    "-128..127 (1 zone, 2 cluster, 3 node)");
                uint type = ParseUInt32(TipcTypeVariable, Get(env, TipcTypeVariable)!, allowMinusOne: false);
                uint lower = ParseUInt32(TipcLowerVariable, Get(env, TipcLowerVariable)!, allowMinusOne: false);
                uint upper = ParseUInt32(TipcUpperVariable, Get(env, TipcUpperVariable)!, allowMinusOne: false);
                controlFile = ControlFile.ForTipc(addrType, scope, type, lower, upper);
            }
            else
            {
                string why = firecrackerSocket is not null
                    ? $"{FirecrackerSocketVariable} needs {VsockPortVariable}."
                    : tipcSet.Length > 0
                        ? $"TIPC needs all of {string.Join(", ", TipcVariables)}; missing {string.Join(", ", TipcVariables.Except(tipcSet))}."
                        : $"{FileVariable} is set but no destination: set {VsockPortVariable} (VSOCK or Firecracker) or the UNSOCK_TIPC_* variables.";
                return UsageError(stderr, why);
            }
        }
        catch (ToolValueException e)
        {
            stderr.WriteLine($"unsock: {e.Message}");
            return ExitUsage;
        }
        catch (ArgumentException e)
        {
            stderr.WriteLine($"unsock: {e.Message}");
            return ExitUsage;
        }

        try
        {
            controlFile.CreateExclusive(Path.Combine(workingDirectory, file));
        }
        catch (IOException e)
        {
            stderr.WriteLine($"unsock: {e.Message}");
            return ExitFailure;
        }
        stdout.WriteLine($"{file}: {controlFile}");
        return ExitSuccess;
    }

    // Like the original's getenv_unsock: an empty value counts as unset.
    private static string? Get(IReadOnlyDictionary<string, string> env, string name)
        => env.TryGetValue(name, out var value) && !string.IsNullOrEmpty(value) ? value : null;

    private static int UsageError(TextWriter stderr, string problem)
    {
        stderr.WriteLine($"unsock: {problem}");
        stderr.WriteLine();
        stderr.WriteLine(Usage);
        return ExitUsage;
    }

    private static void WarnIgnoredTipc(TextWriter stderr, string[] tipcSet, string chosen)
    {
        if (tipcSet.Length > 0)
        {
            stderr.WriteLine($"unsock: ignoring {string.Join(", ", tipcSet)}: writing a {chosen} control file");
        }
    }

    /// <summary>
    /// The original's rule: the socket path is made absolute with realpath; if that fails, an absolute
    /// path draws a warning (the multiplexer may not be running yet) and a relative one is an error.
    /// </summary>
    private static string? ResolveFirecrackerSocket(string given, string workingDirectory, TextWriter stderr)
    {
        string candidate = Path.IsPathRooted(given) ? given : Path.Combine(workingDirectory, given);
        string? real = RealPath(candidate, out int error);
        if (real is not null)
        {
            return real;
        }
        if (Path.IsPathRooted(given))
        {
            stderr.WriteLine($"WARNING: {FirecrackerSocketVariable} does not exist: {given} ({Marshal.GetPInvokeErrorMessage(error)})");
            return given;
        }
        stderr.WriteLine($"unsock: {FirecrackerSocketVariable} does not exist: {given} (looked in {workingDirectory}: {Marshal.GetPInvokeErrorMessage(error)})");
        return null;
    }

    // realpath(3) by the kernel: open the path itself (O_PATH works for sockets too) and read back its name.
    private static unsafe string? RealPath(string path, out int error)
    {
        error = 0;
        byte[] terminated = Encoding.UTF8.GetBytes(path + "\0");
        int fd;
        fixed (byte* p = terminated)
        {
            fd = open(p, O_PATH | O_CLOEXEC, 0);
        }
        if (fd < 0)
        {
            error = errno;
            return null;
        }
        try
        {
            byte[] link = Encoding.UTF8.GetBytes($"/proc/self/fd/{fd}\0");
            byte[] buffer = new byte[4096];
            fixed (byte* l = link)
            fixed (byte* b = buffer)
            {
                long n = readlink(l, b, (Tmds.Linux.size_t)buffer.Length);
                if (n < 0)
                {
                    error = errno;
                    return null;
                }
                return Encoding.UTF8.GetString(buffer, 0, (int)n);
            }
        }
        finally
        {
            close(fd);
        }
    }

    private static uint ParsePort(string value)
    {
        uint port = ParseUInt32(VsockPortVariable, value, allowMinusOne: true);
        if (port == 0)
        {
            // The original takes 0 for "not set"; refuse it rather than guess.
            throw new ToolValueException($"{VsockPortVariable}={value}: port 0 cannot be used (1..4294967295, or -1 for any)");
        }
        return port;
    }

    /// <summary>A decimal u32; "-1" means 0xFFFFFFFF where the original read a C int (the CID's "any").</summary>
    private static uint ParseUInt32(string name, string value, bool allowMinusOne)
    {
        if (allowMinusOne && value == "-1")
        {
            return uint.MaxValue;
        }
        string range = allowMinusOne ? "0..4294967295 or -1" : "0..4294967295";
        if (!IsDecimal(value))
        {
            throw new ToolValueException($"{name}={value}: not a decimal number ({range})");
        }
        if (!uint.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out uint result))
        {
            throw new ToolValueException($"{name}={value}: out of range ({range})");
        }
        return result;
    }

    private static int ParseInRange(string name, string value, int min, int max, string meaning)
    {
        bool negative = value.StartsWith('-');
        if (!IsDecimal(negative ? value[1..] : value))
        {
            throw new ToolValueException($"{name}={value}: not a decimal number ({meaning})");
        }
        if (!int.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int result) || result < min || result > max)
        {
            throw new ToolValueException($"{name}={value}: out of range ({meaning})");
        }
        return result;
    }

    private static bool IsDecimal(string value) => value.Length > 0 && value.All(char.IsAsciiDigit);

    private sealed class ToolValueException(string message) : Exception(message);
}
