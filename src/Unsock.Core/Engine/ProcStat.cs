using System.Globalization;

namespace Unsock.Core.Engine;

/// <summary>/proc/PID/stat, read as proc(5) numbers its fields.</summary>
public static class ProcStat
{
    /// <summary>
    /// Field <paramref name="number"/> (proc(5)'s numbering, from 3: the ones after the command name) of process
    /// <paramref name="pid"/>; 0 when the process is gone or the field is not a number.
    /// </summary>
    public static ulong Field(int pid, int number)
    {
        string stat;
        try { stat = File.ReadAllText($"/proc/{pid}/stat"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return 0; }
        // The command (field 2) may hold spaces and parentheses: count from the last ')'.
        int close = stat.LastIndexOf(')');
        if (close < 0 || number < 3) return 0;
        var fields = stat[(close + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return number - 3 < fields.Length && ulong.TryParse(fields[number - 3], NumberStyles.None, CultureInfo.InvariantCulture, out ulong v) ? v : 0;
    }
}
