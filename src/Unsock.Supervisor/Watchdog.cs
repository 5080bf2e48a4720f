using System.Globalization;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;
using Unsock.Core.Engine;

namespace Unsock.Supervisor;

/// <summary>
/// systemd's watchdog (WatchdogSec=): WATCHDOG=1 at half the interval systemd gives in WATCHDOG_USEC, and
/// only while the engine's notification threads and the control threads run, so that systemd restarts a
/// supervisor that has stopped serving. The hosting package sends READY and STOPPING but not this.
/// </summary>
internal sealed partial class Watchdog(NotificationEngine engine, SupervisorService service, ILogger<Watchdog> log, IServiceProvider services) : BackgroundService
{
    /// <summary>The ping interval systemd asks for (half of WATCHDOG_USEC), or null when it asks for none.</summary>
    public static TimeSpan? Interval()
    {
        string? usec = Environment.GetEnvironmentVariable("WATCHDOG_USEC");
        string? pid = Environment.GetEnvironmentVariable("WATCHDOG_PID");
        if (string.IsNullOrEmpty(usec) || !ulong.TryParse(usec, NumberStyles.None, CultureInfo.InvariantCulture, out ulong us) || us == 0) return null;
        if (!string.IsNullOrEmpty(pid) && pid != Environment.ProcessId.ToString(CultureInfo.InvariantCulture)) return null;
        return TimeSpan.FromTicks((long)Math.Min(us / 2 * 10, (ulong)TimeSpan.FromHours(1).Ticks));
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = Interval();
        var notifier = services.GetService(typeof(ISystemdNotifier)) as ISystemdNotifier;
        if (interval is null || notifier is null || !notifier.IsEnabled) return;
        Log.Started(log, interval.Value);
        bool healthy = true;
        using var timer = new PeriodicTimer(interval.Value);
        do
        {
            bool now = engine.IsServing && service.Server?.IsRunning == true;
            if (now) notifier.Notify(new ServiceState("WATCHDOG=1"));
            else if (healthy) Log.Unhealthy(log);
            healthy = now;
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    private static partial class Log
    {
        [LoggerMessage(500, LogLevel.Information, "systemd watchdog: WATCHDOG=1 every {Interval}")]
        public static partial void Started(ILogger logger, TimeSpan interval);

        [LoggerMessage(501, LogLevel.Critical, "systemd watchdog: not pinging, the engine or the control threads stopped running; systemd will restart the service")]
        public static partial void Unhealthy(ILogger logger);
    }
}
