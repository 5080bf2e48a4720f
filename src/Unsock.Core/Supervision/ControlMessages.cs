using System.Text.Json.Serialization;

namespace Unsock.Core.Supervision;

/// <summary>
/// The control protocol between a launcher and the supervisor service: JSON records over an AF_UNIX
/// SOCK_SEQPACKET socket, one record per message. A launcher sends <c>register</c> (which policy), gets the
/// compiled filter back, installs it and sends <c>attach</c> with the listener by SCM_RIGHTS; anyone may
/// ask for <c>status</c>. The caller is whoever the kernel says it is (SO_PEERCRED), never what a record says.
/// </summary>
public static class ControlProtocol
{
    public const int Version = 1;

    /// <summary>Where the service listens unless told otherwise (the systemd socket unit uses it too).</summary>
    public const string DefaultSocketPath = "/run/unsock/supervisor.sock";

    /// <summary>The launcher's variable naming the supervisor's socket.</summary>
    public const string SocketVariable = "UNSOCK_SUPERVISOR";

    /// <summary>The longest record either side accepts (a policy travels inline in one).</summary>
    public const int MaxMessageBytes = 128 * 1024;

    public const string Register = "register", Attach = "attach", Status = "status";
}

/// <summary>What a launcher (or a status client) asks.</summary>
public sealed record ControlRequest
{
    public int Version { get; init; } = ControlProtocol.Version;

    /// <summary><see cref="ControlProtocol.Register"/>, <see cref="ControlProtocol.Attach"/> or <see cref="ControlProtocol.Status"/>.</summary>
    public string Kind { get; init; } = "";

    /// <summary>register: a named policy of the supervisor's policy directory.</summary>
    public string? Policy { get; init; }

    /// <summary>register: a policy's JSON text, read by the launcher with its user's rights.</summary>
    public string? PolicyText { get; init; }

    /// <summary>register: where <see cref="PolicyText"/> came from, for messages and status.</summary>
    public string? PolicySource { get; init; }

    /// <summary>register: the command the launcher will exec, for the log (status reads /proc instead).</summary>
    public IReadOnlyList<string>? Command { get; init; }
}

/// <summary>The supervisor's answer to one request.</summary>
public sealed record ControlReply
{
    public int Version { get; init; } = ControlProtocol.Version;

    public bool Ok { get; init; }

    /// <summary>Why the request was refused, in words fit for the user.</summary>
    public string? Error { get; init; }

    /// <summary>register: the seccomp program to install (base64 of struct sock_filter[]).</summary>
    public string? Filter { get; init; }

    /// <summary>register/attach: the target's number in the supervisor.</summary>
    public long? Target { get; init; }

    /// <summary>status: every attached target.</summary>
    public IReadOnlyList<TargetStatus>? Targets { get; init; }

    public static ControlReply Refused(string error) => new() { Ok = false, Error = error };
}

/// <summary>One attached target as <c>status</c> shows it.</summary>
public sealed record TargetStatus
{
    public long Target { get; init; }
    public int Pid { get; init; }
    public string Command { get; init; } = "";
    public string Policy { get; init; } = "";
    public uint Uid { get; init; }
    public string User { get; init; } = "";
    public DateTimeOffset Since { get; init; }
    public long Redirected { get; init; }
    public long Failed { get; init; }
    public long Passed { get; init; }
    public long Emulated { get; init; }
    public int ParkedCalls { get; init; }
    public IReadOnlyList<string> SocketFiles { get; init; } = [];
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, WriteIndented = false)]
[JsonSerializable(typeof(ControlRequest))]
[JsonSerializable(typeof(ControlReply))]
[JsonSerializable(typeof(TargetStatus))]
internal sealed partial class ControlJson : JsonSerializerContext;
