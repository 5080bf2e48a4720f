using Unsock.Core.Policies;

namespace Unsock.Tests.Integration;

/// <summary>What the launcher says when it cannot start: whole messages in plain words, never .NET resource keys.</summary>
public class LauncherMessageTests : IntegrationTest
{
    private static void AssertRefused(RunningProgram p, int status, string message)
    {
        Assert.True(status == p.WaitForExit(Long), p.Describe());
        Assert.Equal(message + "\n", p.Stderr);
        Assert.Equal("", p.Stdout);
    }

    [Fact]
    public void MissingPolicyFile()
    {
        using var dir = new TempDir();
        using var p = new RunningProgram(Launcher.Path, ["--policy", dir["missing.json"], "--", "true"]);
        AssertRefused(p, 2, $"unsock-launch: {dir["missing.json"]}: cannot read the policy file: no such file");
    }

    [Fact]
    public void PolicyFileThatIsADirectory()
    {
        using var dir = new TempDir();
        using var p = new RunningProgram(Launcher.Path, ["--policy", dir.Path, "--", "true"]);
        AssertRefused(p, 2, $"unsock-launch: {dir.Path}: cannot read the policy file: it is a directory");
    }

    [Fact]
    public void PolicyFileTheUserCannotRead()
    {
        Assert.True(Environment.IsPrivilegedProcess, "this test needs root, as CI and the development machines have");
        using var dir = new TempDir();
        File.SetUnixFileMode(dir.Path, (UnixFileMode)0x1ED); // 0755: nobody reaches the file, but may not read it
        string policy = Policies.Loopback(dir);
        File.SetUnixFileMode(policy, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        using var p = new RunningProgram("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", Launcher.Path, "--policy", policy, "--", "true"]);
        AssertRefused(p, 2, $"unsock-launch: {policy}: cannot read the policy file: permission denied");
    }

    [Fact]
    public void EmptyPolicyFile()
    {
        using var dir = new TempDir();
        string policy = Policies.Write(dir, "\n");
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "true"]);
        AssertRefused(p, 2, $$"""unsock-launch: {{policy}}: invalid JSON: the file is empty; a policy is a JSON object such as { "rules": [] }""");
    }

    [Fact]
    public void PolicyFileWithBadJson()
    {
        using var dir = new TempDir();
        string policy = Policies.Write(dir, "{\n  \"rules\": [\n    { \"port\": 1, \"allow\": true }\n}\n");
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "true"]);
        AssertRefused(p, 2, $"unsock-launch: {policy}: line 4, column 1: invalid JSON: expected ',' or ']', found '}}'");
    }

    [Theory]
    [InlineData("""{"rules": [}""", "line 1, column 12: invalid JSON: expected a value or ']', found '}'")]
    [InlineData("""{"rules": [1}""", "line 1, column 13: invalid JSON: expected ',' or ']', found '}'")]
    [InlineData("""{"rules": [""", "line 1, column 12: invalid JSON: expected a value or ']', found the end of the file")]
    [InlineData("""{'rules': []}""", "line 1, column 2: invalid JSON: expected a key in double quotes or '}', found a single quote (JSON strings take double quotes)")]
    [InlineData("""{"rules": []} x""", "line 1, column 15: invalid JSON: expected nothing after the end of the top-level value, found 'x'")]
    [InlineData("""{"rules" []}""", "line 1, column 2: invalid JSON: expected ':' after the key \"rules\", found '['")]
    [InlineData("""{"blockInet": tru}""", "line 1, column 15: invalid JSON: 'tru' is not a JSON value (text needs double quotes; the only bare words are true, false and null)")]
    [InlineData("""{"rules": [{"port": 08, "allow": true}]}""", "line 1, column 21: invalid JSON: '08' is not a JSON number")]
    [InlineData("""{"fakeAddress": }""", "line 1, column 17: invalid JSON: expected the value of \"fakeAddress\", found '}'")]
    [InlineData("""{"fakeAddress": "1.2.3.4}""", "line 1, column 17: invalid JSON: the string \"1.2.3.4} is not closed: a '\"' is missing before the end of the line")]
    [InlineData("""{"fakeAddress": "\q"}""", "line 1, column 17: invalid JSON: the string \"\\q\" is not valid JSON: \\q is not an escape JSON knows (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)")]
    [InlineData("""{"rules": [], /* to do""", "line 1, column 15: invalid JSON: a /* comment is not closed with */")]
    [InlineData("// nothing yet", "line 1, column 15: invalid JSON: expected a JSON object, found the end of the file")]
    [InlineData("""{"rules": [{"port": 1,, "allow": true}]}""", "line 1, column 23: invalid JSON: expected a key in double quotes or '}', found ','")]
    public void BadJsonIsDescribedInWords(string json, string message)
    {
        var e = Assert.Throws<PolicyException>(() => Policy.Parse(json, "p.json"));
        Assert.Equal("p.json: " + message, e.Message);
    }

    [Fact]
    public void DeepNestingIsDescribedInWords()
    {
        var e = Assert.Throws<PolicyException>(() => Policy.Parse(new string('[', 70), "p.json"));
        Assert.Equal("p.json: line 1, column 65: invalid JSON: objects and arrays are nested more than 64 deep", e.Message);
    }

    [Fact]
    public void LibseccompThatCannotBeLoaded()
    {
        Assert.True(Environment.IsPrivilegedProcess, "this test needs root (a private mount namespace), as CI and the development machines have");
        // Where the dynamic loader finds libseccomp.so.2; an empty file there, in a private mount namespace, cannot be loaded.
        using var ldconfig = new RunningProgram("ldconfig", ["-p"]);
        Assert.Equal(0, ldconfig.WaitForExit(Long));
        string library = ldconfig.Stdout.Split('\n')
            .Where(l => l.TrimStart().StartsWith("libseccomp.so.2 ", StringComparison.Ordinal) && l.Contains("x86-64"))
            .Select(l => l[(l.IndexOf("=> ", StringComparison.Ordinal) + 3)..].Trim())
            .First();
        using var p = new RunningProgram("unshare", ["-m", "sh", "-c", "mount --bind /dev/null \"$0\" && exec \"$@\"", library,
            Launcher.Path, "--", "true"], new Dictionary<string, string?> { ["UNSOCK_DIR"] = "/tmp/unsock-message-test" });
        AssertRefused(p, 125, $"unsock-launch: cannot load libseccomp.so.2, which builds the seccomp filter (install the libseccomp2 package): {library}: file too short");
    }
}
