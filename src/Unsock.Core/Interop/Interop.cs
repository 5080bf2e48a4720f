using Unsock.Core;
using System.Runtime.InteropServices;


/// <summary>Native calls that Tmds.LibC does not bind. One file per kernel facility.</summary>
internal static partial class Interop
{
    internal const string Libc = "libc.so.6";

    /// <summary>An errno as an exception, for the places where a failure cannot be answered locally.</summary>
    internal sealed class ErrnoException(int errno, string operation)
        : Exception($"{operation}: {Errors.Describe(errno)}")
    {
        public int Errno { get; } = errno;
        public string Operation { get; } = operation;
    }
}
