using System.Runtime.InteropServices;

namespace Unsock.Core.Filter;

/// <summary>The kernel or libseccomp refused to build or install the filter.</summary>
public sealed class SeccompException : Exception
{
    public SeccompException(string message, int errno = 0)
        : base(message)
    {
        Errno = errno;
    }

    /// <summary>The errno behind the failure, 0 when there is none.</summary>
    public int Errno { get; }

    /// <summary>"EBUSY (Device or resource busy)" style text for messages.</summary>
    internal static string DescribeErrno(int errno)
    {
        string name = errno switch
        {
            1 => "EPERM",
            2 => "ENOENT",
            7 => "E2BIG",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            22 => "EINVAL",
            33 => "EDOM",
            34 => "ERANGE",
            38 => "ENOSYS",
            95 => "EOPNOTSUPP",
            125 => "ECANCELED",
            _ => $"errno {errno}",
        };
        return $"{name} ({Marshal.GetPInvokeErrorMessage(errno)})";
    }
}
