namespace Unsock.Core.Engine;

public sealed partial class NotificationEngine
{
    /// <summary>
    /// True while the engine serves: started, not stopping, and every notification thread alive (a host's
    /// watchdog pings only then). Read after <see cref="Start"/> has returned.
    /// </summary>
    public bool IsServing => _started && !_stopping && _threads.Count > 0 && _threads.TrueForAll(t => t.IsAlive);
}
