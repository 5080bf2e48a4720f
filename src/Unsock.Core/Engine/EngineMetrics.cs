using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Unsock.Core.Engine;

/// <summary>
/// The engine's instruments, on the Meter "Unsock" (from the host's IMeterFactory when it gives one).
/// Attributes are bounded: call names, outcomes, destination kinds and errno names, never pids or paths.
/// </summary>
public sealed class EngineMetrics : IDisposable
{
    public const string MeterName = "Unsock";

    private readonly Meter _meter;
    private readonly bool _ownsMeter;
    private readonly Counter<long> _notifications;
    private readonly Counter<long> _redirects;
    private readonly Counter<long> _errors;
    private readonly Histogram<double> _answerDuration;
    private readonly Counter<long> _heapCompactions;

    internal EngineMetrics(IMeterFactory? factory, Func<long> parkedCalls, Func<long> listeners, Func<long> targets, Func<long> socketFiles)
    {
        _ownsMeter = factory is null;
        _meter = factory?.Create(MeterName) ?? new Meter(MeterName);
        _notifications = _meter.CreateCounter<long>("unsock.notifications", "{notification}",
            "Trapped calls answered, by call, outcome (redirected, passed, failed, emulated) and policy.");
        _redirects = _meter.CreateCounter<long>("unsock.redirects", "{socket}",
            "Sockets swapped for a redirected one, by the transport they got (network.transport: unix, vsock, tipc) and policy.");
        _errors = _meter.CreateCounter<long>("unsock.errors", "{error}",
            "Calls answered with an errno, by errno name (error.type) and policy.");
        _answerDuration = _meter.CreateHistogram<double>("unsock.answer.duration", "s",
            "Time from receiving a notification to answering it.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.005, 0.01, 0.1, 1, 10] });
        _heapCompactions = _meter.CreateCounter<long>("unsock.heap_compactions", "{collection}",
            "Full compacting collections after a burst of connections was swept, giving the heap it grew back.");
        _meter.CreateObservableUpDownCounter("unsock.parked_calls", parkedCalls, "{call}", "Calls waiting on the poller (full backlog, accept, handshake).");
        _meter.CreateObservableUpDownCounter("unsock.listeners", listeners, "{listener}", "Attached seccomp listeners.");
        _meter.CreateObservableUpDownCounter("unsock.targets", targets, "{listener}", "Attached listeners whose targets still run.");
        _meter.CreateObservableUpDownCounter("unsock.socket_files", socketFiles, "{file}", "Socket files bound by targets and not yet removed.");
    }

    // Attribute names: OpenTelemetry's semantic conventions where one exists (error.type, network.transport),
    // ours under "unsock." otherwise. Every value comes from a small fixed set, or the host's policy names.
    internal const string CallAttribute = "unsock.call", OutcomeAttribute = "unsock.outcome", PolicyAttribute = "unsock.policy";

    internal void Answered(string call, string outcome, string policy, long startTimestamp)
    {
        _notifications.Add(1, new TagList { { CallAttribute, call }, { OutcomeAttribute, outcome }, { PolicyAttribute, policy } });
        _answerDuration.Record(Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds, new TagList { { CallAttribute, call }, { PolicyAttribute, policy } });
    }

    internal void HeapCompacted() => _heapCompactions.Add(1);

    internal void Error(int errno, string policy) =>
        _errors.Add(1, new TagList { { "error.type", Errors.Name(errno) }, { PolicyAttribute, policy } });

    /// <summary>A socket swapped for one of <paramref name="transport"/> ("unix", "vsock", "tipc": network.transport's values and ours).</summary>
    internal void Redirected(string transport, string policy) =>
        _redirects.Add(1, new TagList { { "network.transport", transport }, { PolicyAttribute, policy } });

    public void Dispose()
    {
        if (_ownsMeter) _meter.Dispose();
    }
}
