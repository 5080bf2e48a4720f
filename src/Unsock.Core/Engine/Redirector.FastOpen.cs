using System.Buffers.Binary;
using Unsock.Core.Addressing;
using Unsock.Core.Filter;
using Unsock.Core.Policies;
using Sock = global::Interop.Socket;

namespace Unsock.Core.Engine;

/// <summary>What a sendto/sendmsg with MSG_FASTOPEN sends once connected: its data, flags and address length.</summary>
internal sealed record FastOpenSend(byte[] Data, int Flags, int AddressLength);

internal sealed partial class Redirector
{
    // TFO data rides in the SYN (a few hundred bytes); more is sent like any first send, a short count being
    // a stream socket's right.
    private const int MaxFastOpenData = 64 * 1024;
    private const int MaxIovecs = 1024; // UIO_MAXIOV
    private const int MsgHdrSize = 56, IovecSize = 16, EMsgSize = 90;

    /// <summary>
    /// sendto/sendmsg/sendmmsg with MSG_FASTOPEN (the filter traps no others): on a TCP socket that is not
    /// connected, a connect to the address followed by the send. Decided like connect: rejected, redirected
    /// (the data is sent from the swapped-in Unix socket) or carried out on our copy. sendmmsg, and sendmsg
    /// with control messages, fail with EOPNOTSUPP, on which TFO clients fall back to connect.
    /// </summary>
    private Outcome FastOpen(in SyscallRequest r)
    {
        int err = _target.CopyFd(r.Pid, (int)r.A0, out int probe);
        if (err != 0) return Outcome.Fail(err);
        err = ReadFacts(probe, out var facts);
        if (err != 0) return Closing(probe, Outcome.Fail(err is Errors.ENOTSOCK or Errors.ENOPROTOOPT ? Errors.ENOTSOCK : err));
        // Only a TCP socket connects on a send; no address makes another socket one. Guarded, no CONTINUE: the
        // kernel would look the fd number up again, perhaps after a TCP socket was dup2()ed onto it.
        if (facts.Domain is not (Sock.AfInet or Sock.AfInet6) || facts.Type != Sock.SockStream)
            return Closing(probe, Guarded && (r.Nr != Syscalls.SendTo || r.A4 != 0) ? FastOpenOnOtherSocket(r, probe, facts) : Outcome.Continue);
        CloseCopy(probe);
        string call = Syscalls.Name(r.Nr);
        if (r.Nr == Syscalls.SendMmsg)
        {
            _log.Decision(r.Pid, call, $"fd {r.A0}", "MSG_FASTOPEN with sendmmsg is not supported: EOPNOTSUPP (the program falls back to connect)");
            return Outcome.Fail(Errors.EOPNOTSUPP);
        }

        ulong name, data;
        int nameLength, flags;
        long dataLength;
        ReadOnlySpan<(ulong Base, long Length)> iovecs = default;
        if (r.Nr == Syscalls.SendTo)
        {
            // sendto(fd, buf, len, flags, addr, addrlen): registers, never read again.
            (data, dataLength, flags, name, nameLength) = (r.A1, (long)r.A2, (int)r.A3, r.A4, (int)(uint)r.A5);
            if (name == 0) return Outcome.Continue; // no address: the kernel can connect nowhere (EINVAL, EDESTADDRREQ)
            if (nameLength < 0 || nameLength > MaxSockAddrSize) return Outcome.Fail(Errors.EINVAL);
        }
        else
        {
            Span<byte> msg = stackalloc byte[MsgHdrSize];
            if (TargetProcess.ReadMemory(r.Pid, r.A1, msg) != 0) return Outcome.Fail(Errors.EFAULT);
            flags = (int)r.A2;
            name = BinaryPrimitives.ReadUInt64LittleEndian(msg);
            nameLength = BinaryPrimitives.ReadInt32LittleEndian(msg[8..]);
            ulong iov = BinaryPrimitives.ReadUInt64LittleEndian(msg[16..]);
            ulong iovCount = BinaryPrimitives.ReadUInt64LittleEndian(msg[24..]);
            ulong controlLength = BinaryPrimitives.ReadUInt64LittleEndian(msg[40..]);
            if (name == 0 || nameLength == 0)
            {
                // msghdr is in the program's memory: a CONTINUE would let it put an address there meanwhile.
                if (!Guarded) return Outcome.Continue;
                _log.Decision(r.Pid, call, $"fd {r.A0}", "MSG_FASTOPEN without an address: EOPNOTSUPP (the program falls back to send)");
                return Outcome.Fail(Errors.EOPNOTSUPP);
            }
            if (nameLength < 0) return Outcome.Fail(Errors.EINVAL);
            nameLength = Math.Min(nameLength, MaxSockAddrSize); // the kernel clamps msg_namelen to sockaddr_storage
            if (controlLength != 0)
            {
                _log.Decision(r.Pid, call, $"fd {r.A0}", "MSG_FASTOPEN with control messages is not supported: EOPNOTSUPP (the program falls back to connect)");
                return Outcome.Fail(Errors.EOPNOTSUPP);
            }
            if (iovCount > MaxIovecs) return Outcome.Fail(EMsgSize);
            var raw = new byte[(int)iovCount * IovecSize];
            if (TargetProcess.ReadMemory(r.Pid, iov, raw) != 0) return Outcome.Fail(Errors.EFAULT);
            var list = new (ulong, long)[(int)iovCount];
            for (int i = 0; i < list.Length; i++)
                list[i] = (BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(i * IovecSize)), BinaryPrimitives.ReadInt64LittleEndian(raw.AsSpan(i * IovecSize + 8)));
            iovecs = list;
            (data, dataLength) = (0, 0);
        }

        Span<byte> sa = stackalloc byte[MaxSockAddrSize];
        sa = sa[..nameLength];
        if (TargetProcess.ReadMemory(r.Pid, name, sa) != 0) return Outcome.Fail(Errors.EFAULT);
        byte[] payload;
        if (iovecs.IsEmpty)
        {
            if (dataLength < 0) return Outcome.Fail(Errors.EFAULT);
            payload = new byte[(int)Math.Min(dataLength, MaxFastOpenData)];
            if (TargetProcess.ReadMemory(r.Pid, data, payload) != 0) return Outcome.Fail(Errors.EFAULT);
        }
        else
        {
            var gathered = new List<byte>();
            foreach (var (b, l) in iovecs)
            {
                if (l < 0) return Outcome.Fail(Errors.EINVAL);
                int take = (int)Math.Min(l, MaxFastOpenData - gathered.Count);
                if (take <= 0) break;
                var part = new byte[take];
                if (TargetProcess.ReadMemory(r.Pid, b, part) != 0) return Outcome.Fail(Errors.EFAULT);
                gathered.AddRange(part);
            }
            payload = gathered.ToArray();
        }

        var fastOpen = new FastOpenSend(payload, flags, nameLength);
        var decided = DecideOn(r, RuleDirection.Connect, sa, fastOpen, out int copy, out var endpoint, out facts, out var rule);
        if (decided is { } outcome) return outcome;
        if (rule is null) return ConnectConverted(r, copy, endpoint, fastOpen);
        return ConnectRedirected(r, copy, endpoint, facts.Domain == Sock.AfInet6, facts.NonBlocking, rule, local: null, fastOpen);
    }
}
