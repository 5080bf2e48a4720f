using Unsock.Core.Policies;
using Unsock.Core.Supervision;

namespace Unsock.Tests.Supervisor;

public sealed class PolicyAccessTests
{
    [Fact]
    public void WithoutAnAllowedSectionOnlyRootMayUseAPolicy()
    {
        var access = PolicyAccess.Read("""{ "rules": [] }""", "web.json");
        Assert.True(access.Allows(0, 0, []));
        Assert.False(access.Allows(1000, 1000, [27]));
        Assert.Equal("root only", access.ToString());
    }

    [Fact]
    public void UsersAndGroupsByNameOrNumberIncludingSupplementaryGroups()
    {
        var access = PolicyAccess.Read("""
            { "allowed": { "users": ["nobody", 1234], "groups": ["daemon", 4321], }, // comments and trailing commas as in policies
              "rules": [] }
            """, "web.json");
        Assert.True(access.Allows(65534, 65534, []));
        Assert.True(access.Allows(1234, 100, []));
        Assert.True(access.Allows(1000, 1, []));        // daemon is gid 1: primary group
        Assert.True(access.Allows(1000, 1000, [7, 4321])); // supplementary group
        Assert.False(access.Allows(1000, 1000, [7, 8]));
        Assert.Equal("user 1234, user nobody, group daemon, group 4321", access.ToString());
    }

    [Theory]
    [InlineData("""{ "allowed": { "users": ["no-such-user-xyz"] } }""", "web.json: allowed.users[0]: \"no-such-user-xyz\" is not a user on this system")]
    [InlineData("""{ "allowed": { "groups": [0, "no-such-group-xyz"] } }""", "web.json: allowed.groups[1]: \"no-such-group-xyz\" is not a group on this system")]
    [InlineData("""{ "allowed": { "users": "nobody" } }""", "web.json: allowed.users: \"nobody\" is not an array of user names or numbers")]
    [InlineData("""{ "allowed": { "users": [-1] } }""", "web.json: allowed.users[0]: -1 is not a user name or a number 0-4294967295")]
    [InlineData("""{ "allowed": { "users": [true] } }""", "web.json: allowed.users[0]: true is not a user name or a number")]
    [InlineData("""{ "allowed": { "users": [""] } }""", "web.json: allowed.users[0]: \"\" is not a user name or a number")]
    [InlineData("""{ "allowed": ["nobody"] }""", "web.json: allowed: an array is not an object")]
    [InlineData("""{ "allowed": { "user": ["nobody"] } }""", "web.json: allowed.user: is not a known key; \"allowed\" takes \"users\" and \"groups\"")]
    public void MistakesAreErrorsNamingTheFileAndTheField(string json, string message)
    {
        var e = Assert.Throws<PolicyException>(() => PolicyAccess.Read(json, "web.json"));
        Assert.StartsWith(message, e.Message);
        Assert.Equal("web.json", e.Source);
    }

    [Fact]
    public void ThePolicyReaderAcceptsTheSectionAndIgnoresIt()
    {
        var policy = Policy.Parse("""{ "allowed": { "users": ["nobody"] }, "rules": [ { "address": "127.0.0.1", "reject": "EACCES" } ] }""", "web.json");
        Assert.Single(policy.Rules);
    }
}

public sealed class StatusTableTests
{
    private static readonly TargetStatus[] Targets =
    [
        new() { Target = 2, Pid = 4711, Command = "python3 -m http.server 8000", Policy = "web", Uid = 33, User = "www-data",
            Since = new DateTimeOffset(2026, 12, 1, 23, 0, 5, TimeSpan.Zero), Redirected = 12, Failed = 1, Passed = 3, Emulated = 40,
            ParkedCalls = 2, SocketFiles = ["/run/web/8000.sock"] },
        new() { Target = 1, Pid = 12, Command = "redis-server", Policy = "inline: /home/u/r.json", Uid = 1000, User = "",
            Since = new DateTimeOffset(2026, 12, 1, 22, 0, 0, TimeSpan.Zero) },
    ];

    [Fact]
    public void OneAlignedLinePerTargetOldestFirst()
    {
        var lines = StatusTable.Format(Targets).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        Assert.Equal(" PID  USER      POLICY                  SINCE                 REDIRECTED  FAILED  PASSED  EMULATED  PARKED  FILES               COMMAND", lines[0]);
        Assert.Equal("  12  1000      inline: /home/u/r.json  2026-12-01 22:00:00Z           0       0       0         0       0  -                   redis-server", lines[1]);
        Assert.Equal("4711  www-data  web                     2026-12-01 23:00:05Z          12       1       3        40       2  /run/web/8000.sock  python3 -m http.server 8000", lines[2]);
        Assert.Equal("no targets attached\n", StatusTable.Format([]));
    }

    [Fact]
    public void JsonRoundTrips()
    {
        string json = StatusTable.ToJson(Targets);
        Assert.Contains("\"socketFiles\": [", json);
        var back = StatusTable.FromJson(json);
        Assert.Equal(Targets.Length, back.Count);
        Assert.Equal(Targets[0] with { SocketFiles = [] }, back[0] with { SocketFiles = [] });
        Assert.Equal(Targets[0].SocketFiles, back[0].SocketFiles);
    }
}
