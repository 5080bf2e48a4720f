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
            "Trapped calls answered, by call and outcome (redirected, passed, failed, emulated).");
        _redirects = _meter.CreateCounter<long>("unsock.redirects", "{socket}",
            "Sockets swapped for a redirected one, by destination kind (unix, vsock, tipc).");
        _errors = _meter.CreateCounter<long>("unsock.errors", "{error}",
            "Calls answered with an errno, by errno name (error.type).");
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

    internal void Answered(string call, string outcome, long startTimestamp)
    {
        var tags = new TagList { { "call", call }, { "outcome", outcome } };
        _notifications.Add(1, tags);
        _answerDuration.Record(Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds, new KeyValuePair<string, object?>("call", call));
    }

    internal void HeapCompacted() => _heapCompactions.Add(1);

    internal void Error(int errno) => _errors.Add(1, new KeyValuePair<string, object?>("error.type", Errors.Name(errno)));

    internal void Redirected(string destination) => _redirects.Add(1, new KeyValuePair<string, object?>("destination", destination));

    public void Dispose()
    {
        if (_ownsMeter) _meter.Dispose();
    }
}
