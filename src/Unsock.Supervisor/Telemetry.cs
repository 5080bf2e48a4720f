using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using Unsock.Core.Engine;

namespace Unsock.Supervisor;

/// <summary>
/// Metrics out over OTLP: the engine's Meter and the supervisor's own, exported by the OpenTelemetry SDK and
/// configured only by the standard OTEL_* variables (endpoint, protocol, headers, export interval, resource
/// attributes, service name). Off unless an OTLP endpoint is configured. For those who scrape instead: a
/// Prometheus endpoint on a loopback address (Unsock:Metrics:PrometheusUrl), off unless set.
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

    /// <summary>The configuration key of the Prometheus scrape endpoint's URL (e.g. http://127.0.0.1:9464/).</summary>
    public const string PrometheusUrlKey = "Unsock:Metrics:PrometheusUrl";

    /// <summary>
    /// The Prometheus endpoint's address when one is configured, checked: http, a loopback host (the metrics
    /// name policies; they are not for the network) and no path. Throws with the key and the value otherwise.
    /// </summary>
    public static Uri? PrometheusEndpoint(IConfiguration configuration)
    {
        string? value = configuration[PrometheusUrlKey];
        if (string.IsNullOrWhiteSpace(value)) return null;
        string Bad(string why) => $"{PrometheusUrlKey}: '{value}' {why}";
        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri) || uri.Scheme != Uri.UriSchemeHttp)
            throw Invalid(Bad("is not an http:// URL (for example http://127.0.0.1:9464/)"));
        if (!uri.IsLoopback || uri.Host == "localhost")
            throw Invalid(Bad("is not on a loopback address; give 127.0.0.1 or [::1] (the endpoint has no authentication)"));
        if (uri.PathAndQuery != "/" || uri.Fragment.Length > 0)
            throw Invalid(Bad("has a path; the metrics are served at /metrics under the bare address"));
        return uri;
    }

    private static OptionsValidationException Invalid(string message) => new(PrometheusUrlKey, typeof(string), [message]);

    /// <summary>
    /// Adds the OTLP metrics exporter when an endpoint is configured and the Prometheus endpoint when its URL is;
    /// returns whether it added either.
    /// </summary>
    public static bool AddUnsockTelemetry(this IHostApplicationBuilder builder)
    {
        bool otlp = IsExportConfigured(builder.Configuration);
        Uri? prometheus = PrometheusEndpoint(builder.Configuration);
        if (!otlp && prometheus is null) return false;
        bool serviceNamed = !string.IsNullOrWhiteSpace(builder.Configuration["OTEL_SERVICE_NAME"]) ||
            (builder.Configuration["OTEL_RESOURCE_ATTRIBUTES"] ?? "").Split(',').Any(a => a.Trim().StartsWith("service.name=", StringComparison.Ordinal));
        builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource =>
            {
                // The SDK's detectors have read OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; ours only fills a gap.
                if (!serviceNamed) resource.AddService(DefaultServiceName);
            })
            .WithMetrics(metrics =>
            {
                metrics.AddMeter(EngineMetrics.MeterName, SupervisorMeterName);
                if (otlp) metrics.AddOtlpExporter();
                if (prometheus is not null) metrics.AddPrometheusHttpListener(o =>
                {
                    o.Host = prometheus.Host;
                    o.Port = prometheus.Port;
                });
            });
        return true;
    }
}
