namespace Unsock.Tests.Integration;

/// <summary>Policy files written for one test into its temp dir.</summary>
public static class Policies
{
    public static string Write(TempDir dir, string json, string name = "policy.json")
    {
        string path = dir[name];
        File.WriteAllText(path, json);
        return path;
    }

    /// <summary>Redirects every TCP bind/connect on 127.0.0.0/8 (and ::1) to DIR/&lt;port&gt;.sock.</summary>
    public static string Loopback(TempDir dir, string extraTop = "", string extraRule = "") => Write(dir, $$"""
        {
          {{extraTop}}
          "rules": [
            { "address": "127.0.0.0/8", "directory": "{{dir.Path}}/socks" {{extraRule}} },
            { "address": "::1", "directory": "{{dir.Path}}/socks" {{extraRule}} }
          ]
        }
        """);
}
