using System.Buffers.Binary;

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
            Span<byte> resp = stackalloc byte[512];
            int n = Ask(inode, ShowPeer, resp);
            if (n < MessageHeader || BinaryPrimitives.ReadUInt16LittleEndian(resp[4..]) != SockDiagByFamily) return null;
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
