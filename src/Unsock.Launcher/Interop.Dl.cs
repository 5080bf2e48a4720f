using System.Runtime.InteropServices;

namespace Unsock.Launcher;

/// <summary>dlopen itself: .NET's DllNotFoundException gives its own text, dlerror names the file and what is wrong with it.</summary>
internal static unsafe partial class Dl
{
    // libdl.so.2 exists on every glibc: before 2.34 dlopen lives there, since then it is a stub over libc.
    private const string LibDl = "libdl.so.2";
    private const int RtldLazy = 1;

    [LibraryImport(LibDl, EntryPoint = "dlopen", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint DlOpen(string file, int mode);

    [LibraryImport(LibDl, EntryPoint = "dlerror")]
    private static partial byte* DlError();

    /// <summary>Loads <paramref name="library"/> (it stays loaded for the P/Invokes that follow); false and dlerror's reason if it cannot.</summary>
    public static bool TryOpen(string library, out string problem)
    {
        problem = "";
        // Binds dlerror now: the runtime's dlsym for it, at its first call, would clear the error dlopen leaves.
        DlError();
        if (DlOpen(library, RtldLazy) != 0) return true;
        byte* error = DlError();
        problem = error is null ? "dlopen failed without a reason" : Marshal.PtrToStringUTF8((nint)error) ?? "";
        return false;
    }
}
