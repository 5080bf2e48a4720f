using System.Globalization;
using System.Net;

namespace Unsock.Core.Policies;

public sealed partial class Policy
{
    /// <summary>The <see cref="Source"/> of a policy made by <see cref="FromEnvironment"/>.</summary>
    public const string EnvironmentSource = "environment";

    /// <summary>
    /// The policy that the original unsock 1.1.0 builds from its UNSOCK_* variables: one rule that sends TCP
    /// binds and connects for UNSOCK_ADDR (and UNSOCK_PORT) to UNSOCK_DIR/&lt;port&gt;.sock. An empty value
    /// counts as unset, as in the original; other UNSOCK_* variables (the control-file tool's) are ignored.
    /// </summary>
    /// <exception cref="PolicyException">UNSOCK_DIR is missing, or a variable has a value the original would not accept.</exception>
    public static Policy FromEnvironment(IReadOnlyDictionary<string, string> environment)
    {
        ArgumentNullException.ThrowIfNull(environment);

        string? directory = Variable(environment, "UNSOCK_DIR");
        if (directory is null)
        {
            throw new PolicyException(
                $"{EnvironmentSource}: UNSOCK_DIR is not set; it names the directory for the socket files (an absolute path)",
                EnvironmentSource, field: "UNSOCK_DIR");
        }
        if (DirectoryAction.CheckDirectory(directory) is string directoryProblem)
        {
            throw EnvironmentError("UNSOCK_DIR", directory, directoryProblem);
        }

        IPAddress fakeAddress = DefaultFakeAddress;
        IPNetwork network = new(fakeAddress, 32);
        if (Variable(environment, "UNSOCK_ADDR") is string addressText)
        {
            (fakeAddress, network) = ParseUnsockAddr(addressText);
        }

        PortRange? port = null;
        if (Variable(environment, "UNSOCK_PORT") is string portText)
        {
            port = ParseUnsockPort(portText);
        }

        int? mode = null;
        if (Variable(environment, "UNSOCK_MODE") is string modeText)
        {
            if (!OctalMode.TryParse(modeText, out int parsed))
            {
                throw EnvironmentError("UNSOCK_MODE", modeText, $"is not {OctalMode.Expected}");
            }
            mode = parsed;
        }

        bool convertAll = Switch(environment, "UNSOCK_ACCEPT_CONVERT_ALL");
        bool convertVsock = Switch(environment, "UNSOCK_ACCEPT_CONVERT_VSOCK");
        AcceptConvert acceptConvert = convertAll ? AcceptConvert.All : convertVsock ? AcceptConvert.Vsock : AcceptConvert.Converted;

        var rule = new PolicyRule(0, RuleDirection.Any, RuleProtocol.Tcp, network, port, new DirectoryAction(directory), mode);
        return new Policy(
            [rule],
            fakeAddress,
            acceptConvert,
            blockInet: Switch(environment, "UNSOCK_BLOCK_INET"),
            blockInet6: Switch(environment, "UNSOCK_BLOCK_INET6"),
            source: EnvironmentSource);
    }

    // "a.b.c.d" or "a.b.c.d/N": the network to redirect, and the address itself, which the original
    // also reports for peers that are not IP.
    private static (IPAddress Address, IPNetwork Network) ParseUnsockAddr(string text)
    {
        const string Expected = "is not an IPv4 address \"a.b.c.d\" or network \"a.b.c.d/N\" (N 0-32)";
        int slash = text.IndexOf('/');
        string addressPart = slash < 0 ? text : text[..slash];
        if (!AddressNotation.TryParseIPv4(addressPart, out IPAddress? address))
        {
            throw EnvironmentError("UNSOCK_ADDR", text, Expected);
        }
        int prefix = 32;
        if (slash >= 0)
        {
            string prefixPart = text[(slash + 1)..];
            if (prefixPart.Length is 0 or > 2 || !prefixPart.All(char.IsAsciiDigit)
                || (prefix = int.Parse(prefixPart, NumberStyles.None, CultureInfo.InvariantCulture)) > 32)
            {
                throw EnvironmentError("UNSOCK_ADDR", text, Expected);
            }
        }
        return (address, AddressNotation.MaskedNetwork(address, prefix));
    }

    private static PortRange? ParseUnsockPort(string text)
    {
        if (text == "-1")
        {
            return null;
        }
        if (text.Length is > 0 and <= 5 && text.All(char.IsAsciiDigit))
        {
            int port = int.Parse(text, NumberStyles.None, CultureInfo.InvariantCulture);
            if (port <= PortRange.MaxPort)
            {
                return new PortRange(port, port);
            }
        }
        throw EnvironmentError("UNSOCK_PORT", text, "is not a port number (0-65535, or -1 for any)");
    }

    private static bool Switch(IReadOnlyDictionary<string, string> environment, string name) =>
        Variable(environment, name) switch
        {
            null or "0" => false,
            "1" => true,
            string other => throw EnvironmentError(name, other, "must be 1 (on) or 0 (off)"),
        };

    private static string? Variable(IReadOnlyDictionary<string, string> environment, string name) =>
        environment.TryGetValue(name, out string? value) && !string.IsNullOrEmpty(value) ? value : null;

    private static PolicyException EnvironmentError(string name, string value, string problem) =>
        PolicyException.At(EnvironmentSource, null, name, $"\"{value}\" {problem}");
}
