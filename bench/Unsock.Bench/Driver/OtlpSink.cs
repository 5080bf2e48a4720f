using System.Collections.Concurrent;
using System.Net;

namespace Unsock.Bench.Driver;

/// <summary>
/// Where the metrics scenario's supervisor exports (OTLP over HTTP): answers 200 with an empty body to every request
/// and counts them and the bytes of their bodies, so the report can say that the exporter really exported. It reads
/// nothing of what it receives: the cost measured is the supervisor's, not a collector's.
/// </summary>
internal sealed class OtlpSink : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly ConcurrentDictionary<string, int> _paths = new(StringComparer.Ordinal);
    private long _requests, _bytes;

    public OtlpSink(int port)
    {
        Endpoint = $"http://127.0.0.1:{port}";
        _listener.Prefixes.Add(Endpoint + "/");
        _listener.Start();
        _ = Task.Run(ServeAsync);
    }

    /// <summary>The value of OTEL_EXPORTER_OTLP_ENDPOINT for the exporter (the SDK appends /v1/metrics).</summary>
    public string Endpoint { get; }

    public long Requests => Interlocked.Read(ref _requests);
    public long Bytes => Interlocked.Read(ref _bytes);

    /// <summary>The request paths seen, with their counts ("POST /v1/metrics: 12").</summary>
    public string Paths => string.Join(", ", _paths.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}: {p.Value}"));

    private async Task ServeAsync()
    {
        var buffer = new byte[64 * 1024];
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try { context = await _listener.GetContextAsync(); }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException) { return; }
            try
            {
                long bytes = 0;
                int n;
                while ((n = await context.Request.InputStream.ReadAsync(buffer)) > 0) bytes += n;
                _paths.AddOrUpdate($"{context.Request.HttpMethod} {context.Request.Url?.AbsolutePath}", 1, (_, c) => c + 1);
                Interlocked.Add(ref _bytes, bytes);
                Interlocked.Increment(ref _requests);
                context.Response.StatusCode = 200;
                context.Response.ContentType = "application/x-protobuf";
                context.Response.ContentLength64 = 0;
                context.Response.Close();
            }
            catch (Exception e) when (e is HttpListenerException or IOException)
            {
                // The exporter gave up on this request (its timeout): it is not counted.
            }
        }
    }

    public void Dispose()
    {
        if (_listener.IsListening) _listener.Stop();
        _listener.Close();
    }
}
