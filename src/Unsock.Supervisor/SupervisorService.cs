using System.Runtime.InteropServices;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Unsock.Core.Engine;
using Unsock.Core.Supervision;

namespace Unsock.Supervisor;

/// <summary>
/// The service's lifetime: policies loaded, the engine started, the targets a previous supervisor handed over
/// served again, then the control socket served (systemd hears READY=1 only after that, when the host has
/// started); SIGHUP reloads the policies; on stop, registrations end first, then the engine stops or, when
/// systemd keeps the listeners (<see cref="TargetKeeper"/>), hands its targets over to the next supervisor.
/// </summary>
internal sealed partial class SupervisorService(
    NotificationEngine engine, PolicyCatalog catalog, Targets targets, TargetKeeper keeper, IOptions<SupervisorOptions> options,
    ILoggerFactory loggers, ILogger<SupervisorService> log) : IHostedService, IDisposable
{
    private ControlServer? _server;
    private ControlListener? _listener;
    private PosixSignalRegistration? _hangUp;
    private Timer? _stateWriter;

    public ControlServer? Server => _server;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var o = options.Value;
        catalog.Reload();
        SupervisorProcess.RestrictUmask();
        var passed = ServiceManager.TakePassedFds();
        keeper.Open(engine);
        engine.Start();
        var kept = keeper.Readopt(passed, out long highestNumber);
        targets.Readopt(kept, highestNumber);
        // Each socket file is written when it is bound (TargetKeeper.FileAdded); this catches up on removals, and on a write that failed.
        _stateWriter = new Timer(_ => keeper.WriteChanged(targets.All), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        _listener = ControlListener.FromPassedFds(passed, "control");
        foreach (var p in passed)
            if (p.Fd != _listener?.Fd && !ServiceManager.IsTargetFdName(p.Name))
            {
                Log.UnknownFd(log, p.Fd, p.Name ?? "(no name)");
                ServiceManager.Close(p.Fd);
            }
        if (_listener is null)
        {
            _listener = ControlListener.Bind(o.ControlSocket, o.ParsedMode, o.ParsedGroup);
            Log.Bound(log, o.ControlSocket, Convert.ToString(o.ParsedMode, 8).PadLeft(4, '0'), string.IsNullOrEmpty(o.ControlSocketGroup) ? "(ours)" : o.ControlSocketGroup);
        }
        _server = new ControlServer(_listener, targets, options, loggers.CreateLogger<ControlServer>());
        _server.Start();
        _hangUp = PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
        {
            context.Cancel = true; // a reload, not the end
            Task.Run(() =>
            {
                Log.Reloading(log, catalog.Directory);
                int failed = catalog.Reload();
                Log.Reloaded(log, catalog.Names.Count, failed);
            });
        });
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _hangUp?.Dispose();
        targets.StopTaking();
        _server?.StopAccepting();
        if (_stateWriter is not null) await _stateWriter.DisposeAsync();
        if (keeper.Enabled)
        {
            var all = targets.All;
            await Task.Run(() => keeper.HandOver(engine, all, options.Value.HandoverTimeout), CancellationToken.None);
            return;
        }
        targets.LogStillAttached();
        await engine.StopAsync(cancellationToken);
        Log.Stopped(log);
    }

    public void Dispose()
    {
        _server?.Dispose();
        _listener?.Dispose();
        engine.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(400, LogLevel.Information, "control socket {Path} bound (mode {Mode}, group {Group})")]
        public static partial void Bound(ILogger logger, string path, string mode, string group);

        [LoggerMessage(401, LogLevel.Information, "SIGHUP: reloading the policies of {Directory}")]
        public static partial void Reloading(ILogger logger, string directory);

        [LoggerMessage(402, LogLevel.Information, "policies reloaded: {Count} named policies, {Failed} files with errors (kept as before)")]
        public static partial void Reloaded(ILogger logger, int count, int failed);

        [LoggerMessage(403, LogLevel.Information, "the engine stopped; attached listeners are closed")]
        public static partial void Stopped(ILogger logger);

        [LoggerMessage(404, LogLevel.Warning, "fd {Fd} ({Name}) passed by systemd is neither the control socket nor a target's listener; closed")]
        public static partial void UnknownFd(ILogger logger, int fd, string name);
    }
}
