using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Text;

namespace Unsock.Core.Engine;

/// <summary>A call a previous supervisor had received and not answered: whose it was (the host's key) and what it was.</summary>
public readonly record struct JournaledCall(long Key, SyscallRequest Request);

/// <summary>
/// The calls received and not yet answered, in a file mapped shared (on tmpfs: /run), so that they outlive this
/// process however it ends. The kernel delivers a notification once: a supervisor that exits, or is killed,
/// between receiving a call and answering it leaves the program waiting in that call for as long as anybody
/// holds the listener open (systemd's fd store does). The kernel accepts an answer by the notification's id from
/// any holder of the listener, so the next supervisor reads this file and handles those calls again.
/// <para>
/// One slot per notification thread (the call in hand) and one per parked call. A slot is written before the
/// call can be answered and cleared after; its key is written last and cleared first, so a process killed in
/// the middle leaves a free slot, never a half-written call. The cost is an 80-byte store per call.
/// </para>
/// </summary>
public sealed unsafe class CallJournal : IDisposable
{
    private const int HeaderSize = 64, SlotSize = 96;
    private static readonly byte[] Magic = "unsock-calls-1\n\0"u8.ToArray();
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _base;
    private readonly int _slots;
    private readonly object _gate = new();
    private readonly Stack<int> _free = new();
    private int _next, _disposed;

    private CallJournal(string path, int slots)
    {
        _slots = slots;
        long size = HeaderSize + (long)slots * SlotSize;
        _file = MemoryMappedFile.CreateFromFile(path, FileMode.Create, null, size, MemoryMappedFileAccess.ReadWrite);
        _view = _file.CreateViewAccessor(0, size, MemoryMappedFileAccess.ReadWrite);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _base = p + _view.PointerOffset;
        Magic.CopyTo(new Span<byte>(_base, Magic.Length));
        BinaryPrimitives.WriteInt32LittleEndian(new Span<byte>(_base + 16, 4), SlotSize);
        BinaryPrimitives.WriteInt32LittleEndian(new Span<byte>(_base + 20, 4), slots);
    }

    public string Path { get; private init; } = "";

    /// <summary>
    /// Reads the calls a previous process left in <paramref name="path"/>, then starts the file anew with room
    /// for <paramref name="slots"/> calls (the file is sparse: untouched slots take no memory).
    /// </summary>
    /// <exception cref="IOException">The file cannot be created or mapped (in words).</exception>
    public static CallJournal Open(string path, int slots, out List<JournaledCall> left)
    {
        left = ReadLeft(path);
        return new CallJournal(path, slots) { Path = path };
    }

    /// <summary>The calls in a journal file; none when there is no file or it is not one.</summary>
    public static List<JournaledCall> ReadLeft(string path)
    {
        var calls = new List<JournaledCall>();
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (FileNotFoundException) { return calls; }
        catch (DirectoryNotFoundException) { return calls; }
        if (bytes.Length < HeaderSize || !bytes.AsSpan(0, Magic.Length).SequenceEqual(Magic)
            || BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(16)) != SlotSize)
            return calls;
        var seen = new HashSet<(long, ulong)>();
        for (int offset = HeaderSize; offset + SlotSize <= bytes.Length; offset += SlotSize)
        {
            var slot = bytes.AsSpan(offset, SlotSize);
            long key = BinaryPrimitives.ReadInt64LittleEndian(slot);
            if (key == 0) continue;
            var r = Decode(slot);
            // A parked call is in the slot of the thread that parked it too, for a moment.
            if (seen.Add((key, r.Id))) calls.Add(new JournaledCall(key, r));
        }
        return calls;
    }

    /// <summary>A slot of one's own (a notification thread's, a parked call's); -1 when all are taken.</summary>
    public int Rent()
    {
        lock (_gate)
        {
            if (_free.TryPop(out int slot)) return slot;
            return _next < _slots ? _next++ : -1;
        }
    }

    /// <summary>Gives a slot back, cleared.</summary>
    public void Return(int slot)
    {
        if (slot < 0) return;
        Clear(slot);
        lock (_gate) _free.Push(slot);
    }

    /// <summary>Notes <paramref name="r"/> of the target with <paramref name="key"/> as not answered yet.</summary>
    public void Record(int slot, long key, in SyscallRequest r)
    {
        if (slot < 0 || key == 0) return;
        byte* s = Slot(slot);
        Volatile.Write(ref *(long*)s, 0);
        *(ulong*)(s + 8) = r.Id;
        *(int*)(s + 16) = r.Pid;
        *(int*)(s + 20) = r.Nr;
        *(uint*)(s + 24) = r.Arch;
        var args = (ulong*)(s + 32);
        args[0] = r.A0; args[1] = r.A1; args[2] = r.A2; args[3] = r.A3; args[4] = r.A4; args[5] = r.A5;
        Volatile.Write(ref *(long*)s, key);
    }

    /// <summary>The slot's call was answered (or is not ours to answer any more).</summary>
    public void Clear(int slot)
    {
        if (slot < 0) return;
        Volatile.Write(ref *(long*)Slot(slot), 0);
    }

    private byte* Slot(int slot) => _base + HeaderSize + (long)slot * SlotSize;

    private static SyscallRequest Decode(ReadOnlySpan<byte> s) => new(
        BinaryPrimitives.ReadUInt64LittleEndian(s[8..]), BinaryPrimitives.ReadInt32LittleEndian(s[16..]),
        BinaryPrimitives.ReadInt32LittleEndian(s[20..]), BinaryPrimitives.ReadUInt32LittleEndian(s[24..]),
        BinaryPrimitives.ReadUInt64LittleEndian(s[32..]), BinaryPrimitives.ReadUInt64LittleEndian(s[40..]),
        BinaryPrimitives.ReadUInt64LittleEndian(s[48..]), BinaryPrimitives.ReadUInt64LittleEndian(s[56..]),
        BinaryPrimitives.ReadUInt64LittleEndian(s[64..]), BinaryPrimitives.ReadUInt64LittleEndian(s[72..]));

    /// <summary>Unmaps the file; only once nothing records in it any more (the engine is disposed).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
    }

    public override string ToString() => Encoding.UTF8.GetString(Magic).Trim('\0', '\n') + " at " + Path;
}
