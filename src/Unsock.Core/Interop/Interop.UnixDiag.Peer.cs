using System.Buffers.Binary;
using static Tmds.Linux.LibC;

internal static partial class Interop
{
    internal sealed unsafe partial class UnixDiag
    {
        private const uint ShowPeer = 4;   // UDIAG_SHOW_PEER
        private const ushort AttrPeer = 2; // UNIX_DIAG_PEER: u32 inode of the other end
        private const int MessageHeader = 16, DiagMessage = 16;

        /// <summary>The inode of the socket at the other end of Unix socket <paramref name="inode"/>; null when unknown or unconnected.</summary>
        public ulong? PeerOf(ulong inode)
        {
            if (inode > uint.MaxValue) return null;
            Span<byte> req = stackalloc byte[RequestSize];
            req.Clear();
            uint seq = ++_sequence;
            BinaryPrimitives.WriteUInt32LittleEndian(req, RequestSize);
            BinaryPrimitives.WriteUInt16LittleEndian(req[4..], SockDiagByFamily);
            BinaryPrimitives.WriteUInt16LittleEndian(req[6..], NlmFRequest);
            BinaryPrimitives.WriteUInt32LittleEndian(req[8..], seq);
            req[16] = 1;                                                   // sdiag_family AF_UNIX
            BinaryPrimitives.WriteUInt32LittleEndian(req[20..], uint.MaxValue); // udiag_states: any
            BinaryPrimitives.WriteUInt32LittleEndian(req[24..], (uint)inode);   // udiag_ino
            BinaryPrimitives.WriteUInt32LittleEndian(req[28..], ShowPeer);      // udiag_show
            BinaryPrimitives.WriteUInt32LittleEndian(req[32..], uint.MaxValue); // udiag_cookie: INET_DIAG_NOCOOKIE
            BinaryPrimitives.WriteUInt32LittleEndian(req[36..], uint.MaxValue);
            fixed (byte* p = req)
                if (send(_fd, p, RequestSize, 0) != RequestSize) return null;
            Span<byte> resp = stackalloc byte[512];
            while (true)
            {
                long n;
                fixed (byte* p = resp) n = recv(_fd, p, (Tmds.Linux.size_t)resp.Length, 0);
                if (n < MessageHeader) return null;
                if (BinaryPrimitives.ReadUInt32LittleEndian(resp[8..]) != seq) continue; // a late answer to an earlier question
                if (BinaryPrimitives.ReadUInt16LittleEndian(resp[4..]) != SockDiagByFamily) return null;
                int end = (int)Math.Min(n, BinaryPrimitives.ReadUInt32LittleEndian(resp));
                // The attributes follow unix_diag_msg, each 4-byte aligned: len, type, value.
                for (int at = MessageHeader + DiagMessage; at + 4 <= end;)
                {
                    ushort len = BinaryPrimitives.ReadUInt16LittleEndian(resp[at..]);
                    ushort type = BinaryPrimitives.ReadUInt16LittleEndian(resp[(at + 2)..]);
                    if (len < 4 || at + len > end) return null;
                    if (type == AttrPeer && len >= 8) return BinaryPrimitives.ReadUInt32LittleEndian(resp[(at + 4)..]);
                    at += (len + 3) & ~3;
                }
                return null;
            }
        }
    }
}
