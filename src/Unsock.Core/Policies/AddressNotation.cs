using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Unsock.Core.Policies;

/// <summary>
/// Strict text forms of addresses and networks: dotted-quad IPv4 (no inet_aton shorthands such as
/// "127.1" or octal "010"), plain IPv6 (no brackets, no zone), and RFC 5952 output.
/// </summary>
internal static class AddressNotation
{
    public static bool TryParseAddress(string text, [NotNullWhen(true)] out IPAddress? address)
    {
        address = null;
        if (text.Contains(':'))
        {
            foreach (char c in text)
            {
                if (!char.IsAsciiHexDigit(c) && c != ':' && c != '.')
                {
                    return false;
                }
            }
            if (IPAddress.TryParse(text, out IPAddress? parsed) && parsed.AddressFamily == AddressFamily.InterNetworkV6)
            {
                address = parsed;
                return true;
            }
            return false;
        }
        return TryParseIPv4(text, out address);
    }

    public static bool TryParseIPv4(string text, [NotNullWhen(true)] out IPAddress? address)
    {
        address = null;
        string[] parts = text.Split('.');
        if (parts.Length != 4)
        {
            return false;
        }
        Span<byte> bytes = stackalloc byte[4];
        for (int i = 0; i < 4; i++)
        {
            if (!TryParseDecimal(parts[i], 255, out int value))
            {
                return false;
            }
            bytes[i] = (byte)value;
        }
        address = new IPAddress(bytes);
        return true;
    }

    /// <summary>
    /// Parses "address" or "address/prefix"; host bits beyond the prefix are cleared.
    /// On failure <paramref name="problem"/> says why, after the quoted value.
    /// </summary>
    public static bool TryParseNetwork(string text, out IPNetwork network, [NotNullWhen(false)] out string? problem)
    {
        network = default;
        int slash = text.IndexOf('/');
        string addressText = slash < 0 ? text : text[..slash];
        if (!TryParseAddress(addressText, out IPAddress? address))
        {
            problem = "is not an IPv4 or IPv6 address or CIDR";
            return false;
        }
        int maxPrefix = address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128;
        int prefix = maxPrefix;
        if (slash >= 0)
        {
            string prefixText = text[(slash + 1)..];
            if (!TryParseDecimal(prefixText, int.MaxValue, out prefix))
            {
                problem = "is not an IPv4 or IPv6 address or CIDR (the prefix length after '/' must be a decimal number)";
                return false;
            }
            if (prefix > maxPrefix)
            {
                string family = maxPrefix == 32 ? "IPv4" : "IPv6";
                problem = $"has prefix length {prefix}, more than {maxPrefix}, the most for {family}";
                return false;
            }
        }
        network = MaskedNetwork(address, prefix);
        problem = null;
        return true;
    }

    public static IPNetwork MaskedNetwork(IPAddress address, int prefixLength)
    {
        byte[] bytes = address.GetAddressBytes();
        for (int bit = prefixLength; bit < bytes.Length * 8; bit++)
        {
            bytes[bit / 8] &= (byte)~(0x80 >> (bit % 8));
        }
        return new IPNetwork(new IPAddress(bytes), prefixLength);
    }

    /// <summary>Whether the first PrefixLength bits of <paramref name="address"/> equal the network's (same family; zones ignored).</summary>
    /// <remarks>Our own comparison: .NET 10's IPNetwork.Contains misses ::ffff:192.0.2.1 in ::ffff:0:0/96.</remarks>
    public static bool HasPrefix(IPAddress address, IPNetwork network)
    {
        Span<byte> candidate = stackalloc byte[16];
        Span<byte> prefix = stackalloc byte[16];
        if (!address.TryWriteBytes(candidate, out int length)
            || !network.BaseAddress.TryWriteBytes(prefix, out int prefixBytes)
            || length != prefixBytes)
        {
            return false;
        }
        int bits = network.PrefixLength;
        int whole = bits / 8;
        if (!candidate[..whole].SequenceEqual(prefix[..whole]))
        {
            return false;
        }
        int rest = bits % 8;
        if (rest == 0)
        {
            return true;
        }
        byte mask = (byte)(0xFF << (8 - rest));
        return (candidate[whole] & mask) == (prefix[whole] & mask);
    }

    /// <summary>"a.b.c.d" or RFC 5952 IPv6 (IPv4-mapped addresses in mixed notation); never a zone.</summary>
    public static string Format(IPAddress address)
    {
        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            return address.ToString();
        }
        if (address.IsIPv4MappedToIPv6)
        {
            return "::ffff:" + address.MapToIPv4().ToString();
        }
        byte[] bytes = address.GetAddressBytes();
        Span<int> fields = stackalloc int[8];
        for (int i = 0; i < 8; i++)
        {
            fields[i] = (bytes[2 * i] << 8) | bytes[2 * i + 1];
        }

        // RFC 5952 4.2: compress the longest run of zero fields (the first one on a tie), never a single field.
        int bestStart = -1, bestLength = 1;
        for (int i = 0; i < 8;)
        {
            if (fields[i] != 0)
            {
                i++;
                continue;
            }
            int start = i;
            while (i < 8 && fields[i] == 0)
            {
                i++;
            }
            if (i - start > bestLength)
            {
                bestStart = start;
                bestLength = i - start;
            }
        }

        var text = new StringBuilder(39);
        for (int i = 0; i < 8; i++)
        {
            if (i == bestStart)
            {
                text.Append("::");
                i += bestLength - 1;
                continue;
            }
            if (text.Length > 0 && text[^1] != ':')
            {
                text.Append(':');
            }
            text.Append(fields[i].ToString("x", CultureInfo.InvariantCulture));
        }
        return text.ToString();
    }

    /// <summary>The address as a program would print it: an IPv4-mapped IPv6 address as plain IPv4.</summary>
    public static string FormatUnmapped(IPAddress address) =>
        address.IsIPv4MappedToIPv6 ? address.MapToIPv4().ToString() : Format(address);

    public static string Format(IPNetwork network) =>
        $"{Format(network.BaseAddress)}/{network.PrefixLength.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>Decimal digits only; no sign, no spaces, and no leading zero (inet_aton would read it as octal).</summary>
    private static bool TryParseDecimal(string text, int max, out int value)
    {
        value = 0;
        if (text.Length == 0 || text.Length > 10 || (text.Length > 1 && text[0] == '0'))
        {
            return false;
        }
        long accumulated = 0;
        foreach (char c in text)
        {
            if (!char.IsAsciiDigit(c))
            {
                return false;
            }
            accumulated = accumulated * 10 + (c - '0');
        }
        if (accumulated > max)
        {
            return false;
        }
        value = (int)accumulated;
        return true;
    }
}
