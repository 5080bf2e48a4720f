using System.Globalization;

namespace Unsock.Core.Policies;

/// <summary>Socket file modes as text: octal digits only ("0660", "660", "0000660"), at most 0777.</summary>
internal static class OctalMode
{
    public const string Expected = "an octal file mode 0-0777 such as \"0660\"";

    public static bool TryParse(string text, out int mode)
    {
        mode = 0;
        if (text.Length == 0)
        {
            return false;
        }
        foreach (char c in text)
        {
            if (c < '0' || c > '7')
            {
                return false;
            }
            mode = mode * 8 + (c - '0');
            if (mode > PolicyRule.MaxMode)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>"0660": a leading zero and at least three digits, as chmod users write it.</summary>
    public static string Format(int mode) => "0" + Convert.ToString(mode, 8).PadLeft(3, '0');
}
