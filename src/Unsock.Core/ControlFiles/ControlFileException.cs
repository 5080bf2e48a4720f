namespace Unsock.Core.ControlFiles;

/// <summary>
/// A file carries the control-file magic but cannot be used (wrong size, inconsistent fields) or
/// could not be read. <see cref="Errno"/> is what a redirected bind/connect should fail with:
/// EINVAL for a bad file (as the original answers), the read's errno for an I/O failure.
/// </summary>
public sealed class ControlFileException : Exception
{
    public ControlFileException(string message, int errno = 22 /* EINVAL */) : base(message) => Errno = errno;

    public int Errno { get; }
}
