using System.Globalization;

namespace Unsock.Core.Supervision;

/// <summary>Users and groups by name or number, as the C library (NSS) knows them.</summary>
public static class Accounts
{
    /// <summary>The user's name, or its number when it has none.</summary>
    public static string UserName(uint uid) => global::Interop.Accounts.UserName(uid) ?? uid.ToString(CultureInfo.InvariantCulture);

    /// <summary>The group's name, or its number when it has none.</summary>
    public static string GroupName(uint gid) => global::Interop.Accounts.GroupName(gid) ?? gid.ToString(CultureInfo.InvariantCulture);

    /// <summary>A user given as a number ("1000") or a name ("www-data"); false for a name nobody has.</summary>
    public static bool TryUser(string text, out uint uid) =>
        uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out uid) || global::Interop.Accounts.TryUserId(text, out uid);

    /// <summary>A group given as a number or a name; false for a name no group has.</summary>
    public static bool TryGroup(string text, out uint gid) =>
        uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out gid) || global::Interop.Accounts.TryGroupId(text, out gid);
}
