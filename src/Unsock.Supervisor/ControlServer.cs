using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Unsock.Core.Supervision;

namespace Unsock.Supervisor;

/// <summary>One accepted control connection and where it stands.</summary>
internal sealed class ControlConnection(ControlChannel channel, Caller caller, long deadline) : IDisposable
{
    public ControlChannel Channel { get; } = channel;
    /// <summary>The kernel's word on the peer at connect; groups are read again at register.</summary>
    public Caller Caller { get; set; } = caller;
    /// <summary>When it is closed whatever it is doing (Environment.TickCount64).</summary>
    public long Deadline { get; } = deadline;
    public int Requests { get; set; }
    public Registration? Registration { get; set; }
    public bool Attached { get; set; }

    public void Dispose() => Channel.Dispose();
}

/// <summary>
/// Accepts control connections and serves their requests. One thread waits on the listening socket and
/// every open connection at once (poll) and hands a connection with a request to one of a few worker
/// threads; nothing a client does can hold more than that: every connection has a deadline
/// (ConnectionTimeout) that also bounds each send and receive, at most 16 requests, and the open
/// connections are capped overall (the oldest that has sent nothing is closed first) and per user.
/// </summary>
internal sealed partial class ControlServer : IDisposable
{
    private const int MaxRequestsPerConnection = 16;
    private const int AcceptBatch = 256;
    private readonly ControlListener _listener;
    private readonly Targets _targets;
    private readonly SupervisorOptions _options;
    private readonly ILogger _log;
    private readonly ControlPoll _poll = new();
    private readonly BlockingCollection<ControlConnection> _work = new();
    private readonly ConcurrentQueue<ControlConnection> _returned = new();
    private readonly List<ControlConnection> _waiting = new(); // the poll thread's alone
    private readonly Dictionary<uint, int> _perUser = new();
    private readonly object _countGate = new();
    private readonly Thread _pollThread;
    private readonly List<Thread> _workers = new();
    private int _open;
    private long _nextLimitLog;
    private int _limitSuppressed;
    private volatile bool _accepting = true, _stopping;

    public ControlServer(ControlListener listener, Targets targets, IOptions<SupervisorOptions> options, ILogger<ControlServer> log)
    {
        _listener = listener;
        _targets = targets;
        _options = options.Value;
        _log = log;
        _pollThread = new Thread(PollLoop) { IsBackground = true, Name = "unsock-control" };
        for (int i = 0; i < _options.ControlThreads; i++)
            _workers.Add(new Thread(WorkLoop) { IsBackground = true, Name = $"unsock-control-{i}" });
    }

    /// <summary>Connections open now.</summary>
    public int OpenConnections => Volatile.Read(ref _open);

    /// <summary>Whether its threads run (for the watchdog).</summary>
    public bool IsRunning => _pollThread.IsAlive && _workers.TrueForAll(t => t.IsAlive);

    public void Start()
    {
        foreach (var w in _workers) w.Start();
        _pollThread.Start();
        Log.Listening(_log, _listener.Description, _options.MaxConnections, _options.MaxConnectionsPerUser, _options.ConnectionTimeout, _options.ControlThreads);
    }

    /// <summary>No new connections from now on (those open finish what they do, or are refused by <see cref="Targets"/>).</summary>
    public void StopAccepting()
    {
        _accepting = false;
        _poll.Wake();
    }

    private void PollLoop()
    {
        var fds = new List<int>();
        while (!_stopping)
        {
            try
            {
                while (_returned.TryDequeue(out var back)) _waiting.Add(back);
                long now = Environment.TickCount64;
                ExpireOverdue(now);
                fds.Clear();
                fds.Add(_poll.WakeFd);
                bool accepting = _accepting;
                if (accepting) fds.Add(_listener.Fd);
                int first = fds.Count;
                long nextDeadline = now + 1000;
                foreach (var c in _waiting)
                {
                    fds.Add(c.Channel.Fd);
                    nextDeadline = Math.Min(nextDeadline, c.Deadline);
                }
                var ready = new bool[fds.Count];
                ControlPoll.Wait(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(fds), ready, (int)Math.Clamp(nextDeadline - now, 0, 1000));
                if (ready[0]) _poll.DrainWake();
                // Connections with a request go to the workers (and leave the poll set until they come back).
                for (int i = _waiting.Count - 1; i >= 0; i--)
                {
                    if (!ready[first + i]) continue;
                    var c = _waiting[i];
                    _waiting.RemoveAt(i);
                    _work.Add(c);
                }
                if (accepting && ready[1]) AcceptPending();
            }
            catch (Exception e)
            {
                // The loop never dies: a bug of ours costs one round, not the service.
                Log.LoopFault(_log, e);
                Thread.Sleep(10);
            }
        }
    }

    private void AcceptPending()
    {
        for (int n = 0; n < AcceptBatch; n++)
        {
            var channel = _listener.TryAccept(_options.ConnectionTimeout, out int errno);
            if (channel is null)
            {
                // EMFILE/ENFILE: the pending ones wait in the backlog; the next round tries again.
                if (errno != 0)
                {
                    LimitReached($"accept on the control socket failed: {Unsock.Core.Errors.Name(errno)}");
                    Thread.Sleep(50);
                }
                return;
            }
            Caller caller;
            try
            {
                var (pid, uid, gid) = channel.PeerCredentials();
                caller = new Caller(pid, uid, gid, []);
            }
            catch (ControlChannelException)
            {
                channel.Dispose();
                continue;
            }
            if (!Admit(caller.Uid))
            {
                channel.Dispose();
                continue;
            }
            _waiting.Add(new ControlConnection(channel, caller, Environment.TickCount64 + (long)_options.ConnectionTimeout.TotalMilliseconds));
        }
    }

    /// <summary>Counts a new connection of <paramref name="uid"/> in, making room or refusing it within the caps.</summary>
    private bool Admit(uint uid)
    {
        lock (_countGate)
        {
            if (uid != 0 && _perUser.GetValueOrDefault(uid) >= _options.MaxConnectionsPerUser)
            {
                LimitReached($"uid {uid} holds {_options.MaxConnectionsPerUser} control connections (Unsock:MaxConnectionsPerUser): a new one of theirs is closed");
                return false;
            }
        }
        if (Volatile.Read(ref _open) >= _options.MaxConnections)
        {
            // The oldest that has not sent anything: a client that connects and waits loses to one that talks.
            int idle = _waiting.FindIndex(c => c.Requests == 0);
            if (idle < 0)
            {
                LimitReached($"{_options.MaxConnections} control connections are open (Unsock:MaxConnections), all busy: a new one is closed");
                return false;
            }
            var evicted = _waiting[idle];
            _waiting.RemoveAt(idle);
            LimitReached($"{_options.MaxConnections} control connections are open (Unsock:MaxConnections): the oldest idle one (pid {evicted.Caller.Pid}) is closed for a new one");
            Finish(evicted);
        }
        lock (_countGate)
        {
            _perUser[uid] = _perUser.GetValueOrDefault(uid) + 1;
            _open++;
        }
        return true;
    }

    private void LimitReached(string message)
    {
        long now = Environment.TickCount64;
        if (now < Interlocked.Read(ref _nextLimitLog))
        {
            Interlocked.Increment(ref _limitSuppressed);
            return;
        }
        _nextLimitLog = now + 5000;
        Log.Limit(_log, message, Interlocked.Exchange(ref _limitSuppressed, 0));
    }

    private void ExpireOverdue(long now)
    {
        for (int i = _waiting.Count - 1; i >= 0; i--)
        {
            var c = _waiting[i];
            if (c.Deadline > now) continue;
            _waiting.RemoveAt(i);
            if (c.Registration is not null && !c.Attached) Log.RegistrationTimedOut(_log, c.Registration.Number, c.Caller.Pid, _options.ConnectionTimeout);
            Finish(c);
        }
    }

    private void WorkLoop()
    {
        foreach (var c in _work.GetConsumingEnumerable())
        {
            bool keep = false;
            try
            {
                c.Requests++;
                keep = _targets.Serve(c) && c.Requests < MaxRequestsPerConnection && Environment.TickCount64 < c.Deadline;
            }
            catch (Exception e)
            {
                Log.LoopFault(_log, e);
            }
            if (keep && !_stopping)
            {
                _returned.Enqueue(c);
                _poll.Wake();
            }
            else
            {
                Finish(c);
            }
        }
    }

    private void Finish(ControlConnection c)
    {
        _targets.Closed(c);
        c.Dispose();
        lock (_countGate)
        {
            _open--;
            uint uid = c.Caller.Uid;
            if (_perUser.TryGetValue(uid, out int n) && n > 1) _perUser[uid] = n - 1;
            else _perUser.Remove(uid);
        }
    }

    public void Dispose()
    {
        _stopping = true;
        _accepting = false;
        _poll.Wake();
        _work.CompleteAdding();
        if (_pollThread.IsAlive) _pollThread.Join(TimeSpan.FromSeconds(5));
        foreach (var w in _workers)
            if (w.IsAlive) w.Join(TimeSpan.FromSeconds(5));
        foreach (var c in _waiting) c.Dispose();
        while (_returned.TryDequeue(out var c)) c.Dispose();
        _poll.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(300, LogLevel.Information, "accepting registrations on {Listener} (at most {Max} connections, {PerUser} per user other than root, each open at most {Timeout}; {Threads} worker threads)")]
        public static partial void Listening(ILogger logger, string listener, int max, int perUser, TimeSpan timeout, int threads);

        [LoggerMessage(301, LogLevel.Warning, "{Message} ({Suppressed} more such since the last message)")]
        public static partial void Limit(ILogger logger, string message, int suppressed);

        [LoggerMessage(302, LogLevel.Warning, "target {Number}: pid {Pid} registered but did not attach within {Timeout}; its registration is dropped")]
        public static partial void RegistrationTimedOut(ILogger logger, long number, int pid, TimeSpan timeout);

        [LoggerMessage(303, LogLevel.Error, "the control loop failed; it goes on")]
        public static partial void LoopFault(ILogger logger, Exception e);
    }
}
