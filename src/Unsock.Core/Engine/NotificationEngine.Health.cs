namespace Unsock.Core.Engine;

public sealed partial class NotificationEngine
{
    /// <summary>
    /// True while the engine serves: started, not stopping, and every notification thread alive (a host's
    /// watchdog pings only then). Read after <see cref="Start"/> has returned.
    /// </summary>
    public bool IsServing
    {
        get
        {
            if (!_started || _stopping) return false;
            // Threads start as calls overlap (one at Start): every one started so far must be alive.
            lock (_roleLock) return _workers.Count > 0 && _workers.TrueForAll(w => w.Thread is { IsAlive: true });
        }
    }
}
