// Usage: Unsock.FilterProbe <program.bpf> [--no-filter] [--wait-killable] [--second-install] <spec>...
// A spec is name-or-number[:arg]... with decimal, negative or 0x-hex 64-bit arguments, e.g. socket:10:1:0.
// The filter is installed on a dedicated thread whose listener is closed at once, so every notified call
// returns ENOSYS there: that is how a test sees "notify" through the kernel. One line per spec:
// "<spec> <result> <errno>". --second-install keeps the listener and tries a second install instead.
using System.Globalization;
using Tmds.Linux;
using Unsock.Core.Filter;
using static Tmds.Linux.LibC;

var options = args.Where(a => a.StartsWith("--", StringComparison.Ordinal)).ToHashSet();
string[] positional = args.Where(a => !a.StartsWith("--", StringComparison.Ordinal)).ToArray();
if (positional.Length < 1)
{
    Console.Error.WriteLine("usage: Unsock.FilterProbe <program.bpf> [--no-filter] [--wait-killable] [--second-install] <spec>...");
    return 2;
}

var program = new SeccompProgram(File.ReadAllBytes(positional[0]));
var calls = positional.Skip(1).Select(ProbeCall.Parse).ToList();
var lines = new List<string>();
Exception? failure = null;

var thread = new Thread(() =>
{
    try
    {
        if (options.Contains("--no-filter"))
        {
            calls.ForEach(c => lines.Add(c.Run()));
            return;
        }

        int listener = SeccompFilter.InstallWithListener(program, options.Contains("--wait-killable"));
        if (options.Contains("--second-install"))
        {
            try
            {
                int second = SeccompFilter.InstallWithListener(program, false);
                close(second);
                lines.Add("second-install ok");
            }
            catch (SeccompException e)
            {
                lines.Add($"second-install {e.Message}");
            }

            return; // notified calls would now wait forever for a supervisor
        }

        close(listener);
        calls.ForEach(c => lines.Add(c.Run()));
    }
    catch (Exception e)
    {
        failure = e;
    }
});
thread.Start();
thread.Join();

if (failure is not null)
{
    Console.Error.WriteLine(failure);
    return 1;
}

lines.ForEach(Console.WriteLine);
return 0;

internal sealed record ProbeCall(string Spec, int Number, ulong[] Args)
{
    private static readonly Dictionary<string, int> Names = new()
    {
        ["getpid"] = Syscalls.GetPid,
        ["socket"] = Syscalls.Socket,
        ["connect"] = Syscalls.Connect,
        ["bind"] = Syscalls.Bind,
        ["shutdown"] = Syscalls.Shutdown,
        ["getsockopt"] = Syscalls.GetSockOpt,
        ["io_uring_setup"] = Syscalls.IoUringSetup,
    };

    public static ProbeCall Parse(string spec)
    {
        string[] parts = spec.Split(':');
        int number = Names.TryGetValue(parts[0], out int known) ? known : (int)ParseValue(spec, parts[0]);
        var values = new ulong[6];
        if (parts.Length > 7)
        {
            throw new ArgumentException($"spec '{spec}' has more than 6 arguments");
        }

        for (int i = 1; i < parts.Length; i++)
        {
            values[i - 1] = ParseValue(spec, parts[i]);
        }

        return new ProbeCall(spec, number, values);
    }

    private static ulong ParseValue(string spec, string text)
    {
        if (text.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            && ulong.TryParse(text.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong hex))
        {
            return hex;
        }

        if (long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value))
        {
            return unchecked((ulong)value);
        }

        throw new ArgumentException($"spec '{spec}': '{text}' is neither a syscall name nor a number");
    }

    public unsafe string Run()
    {
        long result = (ssize_t)syscall(Number, (void*)Args[0], (void*)Args[1], (void*)Args[2], (void*)Args[3], (void*)Args[4], (void*)Args[5]);
        int error = result < 0 ? errno : 0;
        if (result >= 0 && Number == Syscalls.Socket)
        {
            close((int)result);
        }

        return $"{Spec} {result} {error}";
    }
}
