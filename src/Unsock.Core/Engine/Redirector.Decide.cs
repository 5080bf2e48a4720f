using Unsock.Core.Addressing;
using Unsock.Core.Policies;
using Sock = global::Interop.Socket;

namespace Unsock.Core.Engine;

internal sealed partial class Redirector
{
    /// <summary>
    /// The front that bind and connect share: read the sockaddr once, match the policy, look at the
    /// program's socket. Returns the outcome when the call is decided here (not ours, rejected, left as
    /// UDP); otherwise null, with our copy of the socket (the caller closes it) and the redirecting rule,
    /// or a null rule when the socket is no longer AF_INET/AF_INET6 (a restarted call on a swapped socket).
    /// </summary>
    private Outcome? DecideRedirect(in SyscallRequest r, RuleDirection direction, out int copy, out InetEndpoint endpoint,
        out SocketFacts facts, out PolicyRule? rule)
    {
        copy = -1;
        facts = default;
        rule = null;
        if (!TryReadInetAddress(r, out endpoint, out int readErr))
            return readErr != 0 ? UnreadableAddress(r) : Outcome.Continue;
        var address = endpoint.MatchAddress;
        var tcpRule = _policy.Match(direction, RuleProtocol.Tcp, address, endpoint.Port);
        var udpRule = _policy.Match(direction, RuleProtocol.Udp, address, endpoint.Port);
        if (tcpRule is null && udpRule is null) return Outcome.Continue;
        if (!_listener.IsValid(r.Id)) return Outcome.Answered;

        int err = _target.CopyFd(r.Pid, (int)r.A0, out copy);
        if (err != 0) return Outcome.Fail(err);
        err = ReadFacts(copy, out facts);
        if (err != 0 || facts.Domain is not (Sock.AfInet or Sock.AfInet6))
            return err != 0 ? Closing(copy, Outcome.Fail(err)) : null;
        if (facts.Domain == Sock.AfInet && endpoint.IsIPv6) return Closing(copy, Outcome.Continue); // the kernel's EAFNOSUPPORT
        var protocol = ProtocolOf(facts.Type);
        var matched = protocol == RuleProtocol.Tcp ? tcpRule : protocol == RuleProtocol.Udp ? udpRule : null;
        string call = direction == RuleDirection.Bind ? "bind" : "connect";
        switch (matched?.Action)
        {
            case null:
            case AllowAction:
                return Closing(copy, Outcome.Continue);
            case RejectAction reject:
                _log.Decision(r.Pid, call, endpoint.ToString(), $"rule {matched.Index} rejects with {reject.Name}");
                return Closing(copy, Outcome.Fail(reject.Errno));
        }
        if (protocol != RuleProtocol.Tcp)
        {
            _log.Decision(r.Pid, call, endpoint.ToString(), $"rule {matched!.Index} matches a datagram socket; datagram redirection is not supported yet, left as UDP");
            return Closing(copy, Outcome.Continue);
        }
        rule = matched;
        return null;
    }

    private static Outcome Closing(int fd, Outcome outcome)
    {
        Sock.Close(fd);
        return outcome;
    }
}
