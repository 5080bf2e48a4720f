using System.Runtime.CompilerServices;
using Native = global::Interop;

namespace Unsock.Core.Engine;

/// <summary>
/// Closes our fds that refer to a program's files (copies taken with pidfd_getfd, sockets we put in its table)
/// on closer threads, never on a notification thread or the poller.
/// <para>
/// Such a close can be the last reference to the file: the program closed its fd meanwhile (a parked connect
/// leaves it all the time it waits). The last close of a socket that sits in one of the program's epoll sets runs
/// eventpoll_release, which takes that set's mutex; a program holds it for as long as it likes (an epoll_wait
/// whose copy-out faults on a page nobody serves). Whether ours is the last reference cannot be known without a
/// race (the program can close its fd between our look and our close), so every such close goes here.
/// </para>
/// <para>
/// Closes are per attachment: one at a time each, so a program that holds its epoll set stalls one closer at
/// most. A closer busy past <see cref="StuckAfterMs"/> while others wait is given up, left to finish alone and
/// replaced; the attachment's later closes wait behind it. Bounds: <see cref="MaxClosers"/> working closers, at
/// most <see cref="MaxStuckClosers"/> given-up ones (one per attachment), and <see cref="MaxPendingPerAttachment"/>
/// waiting closes per attachment: past that the attachment is refused (<see cref="Refusal"/>), and the engine
/// detaches it alone.
/// </para>
/// </summary>
internal static class CopyCloser
{
    internal const int MaxClosers = 2, MaxStuckClosers = 32, MaxPendingPerAttachment = 64, StuckAfterMs = 1000;

    private static readonly object Gate = new();
    private static readonly Queue<Owner> Ready = new();
    private static readonly ConditionalWeakTable<ListenerAttachment, Owner> Owners = new();
    private static readonly List<Closer> Closers = new();
    // Waiting closers (_idle). One of them at most lingers: it looks for work every LingerMs for LingerRounds rounds after
    // its last close, so that under load closes go in batches without a wake-up each (a wake-up cost as much as a
    // getsockname's whole round trip). The others sleep until woken. Lingering every millisecond, two closers cost 20 us
    // of CPU per short connection (bench, 5000 connections/s); a batch every 4 ms by one, about 1 us.
    private static int _working, _idle, _stuck;
    private static Closer? _lingering;
    private const int LingerMs = 4, LingerRounds = 12;

    private sealed class Owner
    {
        internal readonly Queue<int> Pending = new();
        internal bool Queued, Running;
        /// <summary>When the close under way started (Environment.TickCount64).</summary>
        internal long Since;
        internal string? Refused;
    }

    private sealed class Closer
    {
        internal Owner? Current;
        internal long Since;
        internal bool GivenUp;
    }

    /// <summary>Closes <paramref name="fd"/> (ours, referring to a file of <paramref name="attachment"/>'s programs) on a closer thread.</summary>
    public static void Close(ListenerAttachment attachment, int fd) => Close(attachment, fd, -1);

    /// <summary>Closes both fds (either may be -1) on a closer thread: one take of the gate for a swap's two copies.</summary>
    public static void Close(ListenerAttachment attachment, int fd, int second)
    {
        if (fd < 0 && second < 0) return;
        var owner = Owners.GetValue(attachment, _ => new Owner());
        lock (Gate)
        {
            if (fd >= 0) owner.Pending.Enqueue(fd);
            if (second >= 0) owner.Pending.Enqueue(second);
            // Refused only when stuck: a burst on a busy machine may queue more than the bound for a moment.
            if (owner.Pending.Count >= MaxPendingPerAttachment && owner.Running && owner.Refused is null
                && Environment.TickCount64 - owner.Since >= StuckAfterMs)
                owner.Refused = $"{owner.Pending.Count} of our copies of its sockets wait to be closed behind one stuck for {Environment.TickCount64 - owner.Since} ms (a program holds an epoll set it is in)";
            if (!owner.Queued && !owner.Running)
            {
                owner.Queued = true;
                Ready.Enqueue(owner);
                // A lingering closer looks again within LingerMs by itself: a sleeping one is woken only when none lingers.
                if (_idle > 0 && _lingering is null) Monitor.Pulse(Gate);
            }
            // All closers start with the first close (a thread count that does not change under load), and a
            // given-up one is replaced when work waits.
            if (_working + _stuck == 0)
                while (_working < MaxClosers) Start();
            if (_idle == 0) GiveUpStuck();
            if (_idle == 0 && _working < MaxClosers) Start();
        }
    }

    /// <summary>Why <paramref name="attachment"/> must not be served any more (its closes are stuck past the bound), or null.</summary>
    public static string? Refusal(ListenerAttachment attachment)
    {
        if (!Owners.TryGetValue(attachment, out var owner)) return null;
        return owner.Refused; // written under Gate; a late read costs one more call at most
    }

    /// <summary>Waits up to <paramref name="timeoutMs"/> for <paramref name="attachment"/>'s closes to be done; false if some still wait.</summary>
    public static bool WaitClosed(ListenerAttachment attachment, int timeoutMs)
    {
        if (!Owners.TryGetValue(attachment, out var owner)) return true;
        long end = Environment.TickCount64 + timeoutMs;
        while (true)
        {
            lock (Gate)
                if (!owner.Running && owner.Pending.Count == 0) return true;
            if (Environment.TickCount64 >= end) return false;
            Thread.Sleep(10);
        }
    }

    /// <summary>Closes waiting for <paramref name="attachment"/> (tests).</summary>
    internal static int PendingCount(ListenerAttachment attachment)
    {
        if (!Owners.TryGetValue(attachment, out var owner)) return 0;
        lock (Gate) return owner.Pending.Count + (owner.Running ? 1 : 0);
    }

    /// <summary>Given-up closers still waiting in a close.</summary>
    internal static int StuckClosers { get { lock (Gate) return _stuck; } }

    // Under Gate: closers busy past the limit stop counting as working; their attachments' closes wait behind them.
    private static void GiveUpStuck()
    {
        long now = Environment.TickCount64;
        foreach (var c in Closers)
        {
            if (c.GivenUp || c.Current is null || now - c.Since < StuckAfterMs) continue;
            c.GivenUp = true;
            _working--;
            _stuck++;
        }
    }

    private static void Start()
    {
        // Past the bound on stuck closers, no new ones: closes wait (bounded per attachment, which is then refused).
        if (_working + _stuck >= MaxClosers + MaxStuckClosers) return;
        var closer = new Closer();
        Closers.Add(closer);
        _working++;
        new Thread(() => Run(closer), 64 * 1024) { IsBackground = true, Name = "unsock-close" }.Start();
    }

    private static void Run(Closer self)
    {
        while (true)
        {
            Owner owner;
            lock (Gate)
            {
                _idle++;
                for (int looked = 0; Ready.Count == 0; looked++)
                {
                    if (looked < LingerRounds && (_lingering is null || _lingering == self))
                    {
                        _lingering = self;
                        Monitor.Wait(Gate, LingerMs);
                        continue;
                    }
                    if (_lingering == self) _lingering = null;
                    Monitor.Wait(Gate);
                    looked = 0;
                }
                if (_lingering == self) _lingering = null;
                _idle--;
                owner = Ready.Dequeue();
                owner.Queued = false;
                owner.Running = true;
                self.Current = owner;
                self.Since = owner.Since = Environment.TickCount64; // never judged stuck by a stale time
            }
            // Everything the attachment has waiting is taken in one go (one take of the gate per batch, not per fd);
            // each close still renews the times that tell a stuck closer.
            var batch = new List<int>();
            while (true)
            {
                lock (Gate)
                {
                    if (owner.Pending.Count == 0)
                    {
                        owner.Running = false;
                        self.Current = null;
                        break;
                    }
                    while (owner.Pending.TryDequeue(out int fd)) batch.Add(fd);
                }
                foreach (int fd in batch)
                {
                    Volatile.Write(ref self.Since, Environment.TickCount64);
                    Volatile.Write(ref owner.Since, self.Since);
                    Native.Socket.Close(fd);
                }
                batch.Clear();
            }
            lock (Gate)
            {
                // A given-up closer's close came back: it was counted apart, and a replacement took its place.
                if (!self.GivenUp) continue;
                _stuck--;
                Closers.Remove(self);
                if (Ready.Count > 0 && _idle == 0 && _working < MaxClosers) Start();
                return;
            }
        }
    }
}
