using System.Runtime.InteropServices;
using System.Text;

internal static partial class Interop
{
    /// <summary>User and group names through the C library (NSS: /etc/passwd, LDAP, systemd's dynamic users...).</summary>
    internal static unsafe partial class Accounts
    {
        [StructLayout(LayoutKind.Sequential)]
        private struct Passwd
        {
            public byte* Name, Password;
            public uint Uid, Gid;
            public byte* Gecos, Home, Shell;
        }

        [StructLayout(LayoutKind.Sequential)]
        private struct Group
        {
            public byte* Name, Password;
            public uint Gid;
            public byte** Members;
        }

        [LibraryImport(Libc, EntryPoint = "getpwnam_r")]
        private static partial int GetPwNam(byte* name, Passwd* result, byte* buffer, nuint size, Passwd** found);

        [LibraryImport(Libc, EntryPoint = "getpwuid_r")]
        private static partial int GetPwUid(uint uid, Passwd* result, byte* buffer, nuint size, Passwd** found);

        [LibraryImport(Libc, EntryPoint = "getgrnam_r")]
        private static partial int GetGrNam(byte* name, Group* result, byte* buffer, nuint size, Group** found);

        [LibraryImport(Libc, EntryPoint = "getgrgid_r")]
        private static partial int GetGrGid(uint gid, Group* result, byte* buffer, nuint size, Group** found);

        private const int ERANGE = 34;

        private static byte[] Z(string s)
        {
            var bytes = new byte[Encoding.UTF8.GetByteCount(s) + 1];
            Encoding.UTF8.GetBytes(s, bytes);
            return bytes;
        }

        public static bool TryUserId(string name, out uint uid)
        {
            uid = 0;
            byte[] z = Z(name);
            for (int size = 1024; size <= 1 << 20; size *= 4)
            {
                byte[] buffer = new byte[size];
                Passwd pw;
                Passwd* found = null;
                int err;
                fixed (byte* n = z) fixed (byte* b = buffer) err = GetPwNam(n, &pw, b, (nuint)size, &found);
                if (err == ERANGE) continue;
                if (err != 0 || found == null) return false;
                uid = pw.Uid;
                return true;
            }
            return false;
        }

        public static bool TryGroupId(string name, out uint gid)
        {
            gid = 0;
            byte[] z = Z(name);
            for (int size = 1024; size <= 1 << 22; size *= 4)
            {
                byte[] buffer = new byte[size];
                Group gr;
                Group* found = null;
                int err;
                fixed (byte* n = z) fixed (byte* b = buffer) err = GetGrNam(n, &gr, b, (nuint)size, &found);
                if (err == ERANGE) continue;
                if (err != 0 || found == null) return false;
                gid = gr.Gid;
                return true;
            }
            return false;
        }

        /// <summary>The user name of <paramref name="uid"/>, or null when it has none.</summary>
        public static string? UserName(uint uid)
        {
            for (int size = 1024; size <= 1 << 20; size *= 4)
            {
                byte[] buffer = new byte[size];
                Passwd pw;
                Passwd* found = null;
                int err;
                fixed (byte* b = buffer) err = GetPwUid(uid, &pw, b, (nuint)size, &found);
                if (err == ERANGE) continue;
                if (err != 0 || found == null) return null;
                return Marshal.PtrToStringUTF8((nint)pw.Name);
            }
            return null;
        }

        /// <summary>The group name of <paramref name="gid"/>, or null when it has none.</summary>
        public static string? GroupName(uint gid)
        {
            for (int size = 1024; size <= 1 << 22; size *= 4)
            {
                byte[] buffer = new byte[size];
                Group gr;
                Group* found = null;
                int err;
                fixed (byte* b = buffer) err = GetGrGid(gid, &gr, b, (nuint)size, &found);
                if (err == ERANGE) continue;
                if (err != 0 || found == null) return null;
                return Marshal.PtrToStringUTF8((nint)gr.Name);
            }
            return null;
        }
    }
}
