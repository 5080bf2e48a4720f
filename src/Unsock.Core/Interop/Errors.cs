using System.Runtime.InteropServices;

namespace Unsock.Core;

/// <summary>Linux x86_64 errno values the engine answers with, and their names for messages.</summary>
public static class Errors
{
    public const int EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, EBADF = 9, EAGAIN = 11,
        ENOMEM = 12, EACCES = 13, EFAULT = 14, EBUSY = 16, EEXIST = 17, EXDEV = 18, ENOTDIR = 20, EINVAL = 22,
        EMFILE = 24, ENOSPC = 28, EPIPE = 32, ENAMETOOLONG = 36, ENOSYS = 38, ELOOP = 40,
        ENOTSOCK = 88, EDESTADDRREQ = 89, ENOPROTOOPT = 92, EOPNOTSUPP = 95, EAFNOSUPPORT = 97,
        EADDRINUSE = 98, EADDRNOTAVAIL = 99, ENETUNREACH = 101, ECONNABORTED = 103, ECONNRESET = 104, ENOBUFS = 105,
        EISCONN = 106, ENOTCONN = 107, ETIMEDOUT = 110, ECONNREFUSED = 111, EHOSTUNREACH = 113,
        EALREADY = 114, EINPROGRESS = 115,
        // Kernel-internal: answered while a caught signal is pending, the kernel delivers it and restarts
        // the call (SA_RESTART) or fails it with EINTR, exactly as for a call interrupted in the kernel.
        ERESTARTSYS = 512;

    private static readonly Dictionary<int, string> Names = new()
    {
        [EPERM] = "EPERM", [ENOENT] = "ENOENT", [ESRCH] = "ESRCH", [EINTR] = "EINTR", [EIO] = "EIO",
        [EBADF] = "EBADF", [EAGAIN] = "EAGAIN", [ENOMEM] = "ENOMEM", [EACCES] = "EACCES",
        [EFAULT] = "EFAULT", [EBUSY] = "EBUSY", [EEXIST] = "EEXIST", [EXDEV] = "EXDEV", [ENOTDIR] = "ENOTDIR",
        [EINVAL] = "EINVAL", [EMFILE] = "EMFILE", [ENOSPC] = "ENOSPC", [EPIPE] = "EPIPE",
        [ENAMETOOLONG] = "ENAMETOOLONG", [ENOSYS] = "ENOSYS", [ELOOP] = "ELOOP",
        [ENOTSOCK] = "ENOTSOCK", [EDESTADDRREQ] = "EDESTADDRREQ", [ENOPROTOOPT] = "ENOPROTOOPT",
        [EOPNOTSUPP] = "EOPNOTSUPP", [EAFNOSUPPORT] = "EAFNOSUPPORT", [EADDRINUSE] = "EADDRINUSE",
        [EADDRNOTAVAIL] = "EADDRNOTAVAIL", [ENETUNREACH] = "ENETUNREACH",
        [ECONNABORTED] = "ECONNABORTED", [ECONNRESET] = "ECONNRESET", [ENOBUFS] = "ENOBUFS", [EISCONN] = "EISCONN",
        [ENOTCONN] = "ENOTCONN", [ETIMEDOUT] = "ETIMEDOUT", [ECONNREFUSED] = "ECONNREFUSED",
        [EHOSTUNREACH] = "EHOSTUNREACH", [EALREADY] = "EALREADY", [EINPROGRESS] = "EINPROGRESS",
    };

    public static string Name(int errno) => Names.TryGetValue(errno, out var n) ? n : $"errno {errno}";

    public static string Describe(int errno) =>
        $"{Name(errno)} ({Marshal.GetPInvokeErrorMessage(errno)})";
}
