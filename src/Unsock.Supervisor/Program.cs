using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Unsock.Core.Engine;
using Unsock.Core.Supervision;
using Unsock.Supervisor;

if (args.Length > 0 && args[0] == "status") return StatusCommand.Run(args[1..]);
if (args.Length > 0 && args[0] is "-h" or "--help")
{
    Console.Out.WriteLine("""
        usage: unsock-supervisor [--config FILE] [--Unsock:OPTION=VALUE ...]   run the service
               unsock-supervisor status [--json] [--socket PATH]               show the attached targets
        Options come from FILE (default /etc/unsock/supervisor.json, section "Unsock"), the environment
        (Unsock__OPTION, Unsock__Engine__OPTION) and the command line, later ones winning.
        """);
    return 0;
}

string configFile = "/etc/unsock/supervisor.json";
var rest = new List<string>();
for (int i = 0; i < args.Length; i++)
{
    if (args[i] == "--config" && i + 1 < args.Length) configFile = args[++i];
    else if (args[i].StartsWith("--config=", StringComparison.Ordinal)) configFile = args[i]["--config=".Length..];
    else rest.Add(args[i]);
}

try
{
    var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true, Args = [.. rest] });
    builder.Configuration.AddJsonFile(configFile, optional: true, reloadOnChange: false);
    builder.Configuration.AddEnvironmentVariables();
    builder.Configuration.AddCommandLine([.. rest]);
    builder.Logging.AddConfiguration(builder.Configuration.GetSection("Logging"));
    builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; });
    builder.Services.AddSystemd(); // journald-style lines, READY=1/STOPPING=1, SIGTERM, when run by systemd
    // The package knows systemd by our parent's name; NOTIFY_SOCKET alone (a wrapper between systemd and
    // us, a container manager, the tests) also asks for READY/STOPPING, as newer versions of it do.
    if (!SystemdHelpers.IsSystemdService() && !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("NOTIFY_SOCKET")))
    {
        builder.Services.AddSingleton<ISystemdNotifier, SystemdNotifier>();
        builder.Services.AddSingleton<IHostLifetime, SystemdLifetime>();
    }
    builder.Services.AddMetrics();
    // The engine's and our meters over OTLP when OTEL_EXPORTER_OTLP_(METRICS_)ENDPOINT is set (environment or config); off otherwise.
    builder.AddUnsockTelemetry();

    builder.Services.AddOptions<SupervisorOptions>().Bind(builder.Configuration.GetSection(SupervisorOptions.Section)).ValidateOnStart();
    builder.Services.AddSingleton<IValidateOptions<SupervisorOptions>, SupervisorOptionsValidator>();
    builder.Services.AddOptions<EngineOptions>().Bind(builder.Configuration.GetSection($"{SupervisorOptions.Section}:Engine")).ValidateOnStart()
        .PostConfigure<IOptions<SupervisorOptions>>((engine, supervisor) =>
        {
            if (supervisor.Value.MaxParkedCallsPerTarget > 0) engine.MaxParkedCallsPerListener = supervisor.Value.MaxParkedCallsPerTarget;
        });
    builder.Services.AddSingleton<IValidateOptions<EngineOptions>, EngineOptionsValidator>();

    builder.Services.AddSingleton<NotificationEngine>();
    builder.Services.AddSingleton<PolicyCatalog>();
    builder.Services.AddSingleton<TargetKeeper>();
    builder.Services.AddSingleton<Targets>();
    builder.Services.AddSingleton<SupervisorService>();
    builder.Services.AddHostedService(sp => sp.GetRequiredService<SupervisorService>());
    builder.Services.AddHostedService<Watchdog>();

    using var host = builder.Build();
    host.Run();
    return 0;
}
catch (OptionsValidationException e)
{
    Console.Error.WriteLine($"unsock-supervisor: bad configuration: {string.Join("; ", e.Failures)}");
    return 2;
}
catch (AggregateException e) when (e.InnerExceptions.All(i => i is OptionsValidationException))
{
    Console.Error.WriteLine($"unsock-supervisor: bad configuration: {string.Join("; ", e.InnerExceptions.SelectMany(i => ((OptionsValidationException)i).Failures))}");
    return 2;
}
catch (InvalidOperationException e) when (e.Message.StartsWith("Failed to convert configuration value", StringComparison.Ordinal))
{
    Console.Error.WriteLine($"unsock-supervisor: bad configuration: {e.Message} {e.InnerException?.Message}");
    return 2;
}
catch (FormatException e)
{
    Console.Error.WriteLine($"unsock-supervisor: bad command line: {e.Message}");
    return 2;
}
catch (ControlChannelException e)
{
    Console.Error.WriteLine($"unsock-supervisor: {e.Message}");
    return 1;
}
