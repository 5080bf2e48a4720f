using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using Unsock.Core.Engine;

namespace Unsock.Supervisor;

/// <summary>
/// Metrics out over OTLP: the engine's Meter and the supervisor's own, exported by the OpenTelemetry SDK and
/// configured only by the standard OTEL_* variables (endpoint, protocol, headers, export interval, resource
/// attributes, service name). Off unless an OTLP endpoint is configured.
/// </summary>
public static class Telemetry
{
    /// <summary>service.name unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES says otherwise.</summary>
    public const string DefaultServiceName = "unsock-supervisor";

    /// <summary>The supervisor's own Meter (registrations, refusals, reloads).</summary>
    public const string SupervisorMeterName = "Unsock.Supervisor";

    /// <summary>Whether an OTLP endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT or its metrics-only form).</summary>
    public static bool IsExportConfigured(IConfiguration configuration) =>
        !string.IsNullOrWhiteSpace(configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]) ||
        !string.IsNullOrWhiteSpace(configuration["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"]);

    /// <summary>Adds the OTLP metrics exporter when an endpoint is configured; returns whether it did.</summary>
    public static bool AddUnsockTelemetry(this IHostApplicationBuilder builder)
    {
        if (!IsExportConfigured(builder.Configuration)) return false;
        bool serviceNamed = !string.IsNullOrWhiteSpace(builder.Configuration["OTEL_SERVICE_NAME"]) ||
            (builder.Configuration["OTEL_RESOURCE_ATTRIBUTES"] ?? "").Split(',').Any(a => a.Trim().StartsWith("service.name=", StringComparison.Ordinal));
        builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource =>
            {
                // The SDK's detectors have read OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; ours only fills a gap.
                if (!serviceNamed) resource.AddService(DefaultServiceName);
            })
            .WithMetrics(metrics => metrics
                .AddMeter(EngineMetrics.MeterName, SupervisorMeterName)
                .AddOtlpExporter());
        return true;
    }
}
