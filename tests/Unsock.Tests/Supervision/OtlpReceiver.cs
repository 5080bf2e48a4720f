using System.Net;
using System.Net.Sockets;
using Google.Protobuf;

namespace Unsock.Tests.Supervision;

/// <summary>One data point as it arrived: its attributes and its value (a sum's or gauge's number, a histogram's count and sum).</summary>
public sealed record OtlpPoint(IReadOnlyDictionary<string, string> Attributes, double Value, ulong Count, double Sum);

/// <summary>One metric as it arrived, with the resource and scope it came under.</summary>
public sealed record OtlpMetric(IReadOnlyDictionary<string, string> Resource, string Scope, string Name, string Unit, string Description,
    string Kind, bool Monotonic, IReadOnlyList<OtlpPoint> Points);

/// <summary>
/// An OTLP/HTTP receiver (POST /v1/metrics, application/x-protobuf) that decodes ExportMetricsServiceRequest
/// by the field numbers of opentelemetry-proto's metrics.proto, common.proto and resource.proto, with
/// Google.Protobuf's CodedInputStream.
/// </summary>
public sealed class OtlpReceiver : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly List<OtlpMetric> _metrics = new();
    private readonly Task _loop;

    public OtlpReceiver()
    {
        int port = FreePort();
        Endpoint = $"http://127.0.0.1:{port}";
        _listener.Prefixes.Add(Endpoint + "/");
        _listener.Start();
        _loop = Task.Run(Serve);
    }

    /// <summary>What OTEL_EXPORTER_OTLP_ENDPOINT should say.</summary>
    public string Endpoint { get; }

    public int Requests { get; private set; }

    public List<string> Problems { get; } = new();

    public IReadOnlyList<OtlpMetric> Metrics
    {
        get { lock (_metrics) return _metrics.ToList(); }
    }

    private static int FreePort()
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)s.LocalEndPoint!).Port;
    }

    private async Task Serve()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try { context = await _listener.GetContextAsync(); }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException) { return; }
            using var body = new MemoryStream();
            await context.Request.InputStream.CopyToAsync(body);
            lock (_metrics)
            {
                Requests++;
                if (context.Request.Url?.AbsolutePath != "/v1/metrics" || context.Request.ContentType != "application/x-protobuf")
                    Problems.Add($"{context.Request.HttpMethod} {context.Request.Url?.AbsolutePath} {context.Request.ContentType}");
                else
                    _metrics.AddRange(DecodeRequest(body.ToArray()));
            }
            context.Response.StatusCode = 200;
            context.Response.ContentType = "application/x-protobuf";
            context.Response.Close(); // an empty ExportMetricsServiceResponse
        }
    }

    /// <summary>ExportMetricsServiceRequest { repeated ResourceMetrics resource_metrics = 1; }</summary>
    public static List<OtlpMetric> DecodeRequest(byte[] payload)
    {
        var result = new List<OtlpMetric>();
        foreach (var (field, bytes) in Fields(payload))
            if (field == 1) DecodeResourceMetrics(bytes, result);
        return result;
    }

    // ResourceMetrics { Resource resource = 1; repeated ScopeMetrics scope_metrics = 2; }
    private static void DecodeResourceMetrics(ByteString message, List<OtlpMetric> into)
    {
        var resource = new Dictionary<string, string>();
        var scopes = new List<ByteString>();
        foreach (var (field, bytes) in Fields(message))
        {
            if (field == 1) foreach (var (f, kv) in Fields(bytes)) { if (f == 1) AddKeyValue(kv, resource); } // Resource { repeated KeyValue attributes = 1; }
            else if (field == 2) scopes.Add(bytes);
        }
        foreach (var scopeMetrics in scopes)
        {
            // ScopeMetrics { InstrumentationScope scope = 1; repeated Metric metrics = 2; }
            string scope = "";
            foreach (var (field, bytes) in Fields(scopeMetrics))
            {
                if (field == 1) scope = StringField(bytes, 1); // InstrumentationScope { string name = 1; }
                else if (field == 2) into.Add(DecodeMetric(bytes, resource, scope));
            }
        }
    }

    // Metric { string name = 1; string description = 2; string unit = 3; Gauge gauge = 5; Sum sum = 7; Histogram histogram = 9; }
    private static OtlpMetric DecodeMetric(ByteString message, Dictionary<string, string> resource, string scope)
    {
        string name = "", description = "", unit = "", kind = "";
        bool monotonic = false;
        var points = new List<OtlpPoint>();
        var input = message.CreateCodedInput();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1: name = input.ReadString(); break;
                case 2: description = input.ReadString(); break;
                case 3: unit = input.ReadString(); break;
                case 5: kind = "gauge"; DecodeNumberPoints(input.ReadBytes(), points, out _); break;
                case 7: kind = "sum"; DecodeNumberPoints(input.ReadBytes(), points, out monotonic); break;
                case 9: kind = "histogram"; DecodeHistogramPoints(input.ReadBytes(), points); break;
                default: input.SkipLastField(); break;
            }
        }
        return new OtlpMetric(resource, scope, name, unit, description, kind, monotonic, points);
    }

    // Gauge/Sum { repeated NumberDataPoint data_points = 1; AggregationTemporality = 2; bool is_monotonic = 3; }
    // NumberDataPoint { double as_double = 4; sfixed64 as_int = 6; repeated KeyValue attributes = 7; }
    private static void DecodeNumberPoints(ByteString message, List<OtlpPoint> into, out bool monotonic)
    {
        monotonic = false;
        var input = message.CreateCodedInput();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            int field = WireFormat.GetTagFieldNumber(tag);
            if (field == 3) { monotonic = input.ReadBool(); continue; }
            if (field != 1) { input.SkipLastField(); continue; }
            var attributes = new Dictionary<string, string>();
            double value = 0;
            var point = input.ReadBytes().CreateCodedInput();
            uint t;
            while ((t = point.ReadTag()) != 0)
            {
                switch (WireFormat.GetTagFieldNumber(t))
                {
                    case 4: value = point.ReadDouble(); break;
                    case 6: value = point.ReadSFixed64(); break;
                    case 7: AddKeyValue(point.ReadBytes(), attributes); break;
                    default: point.SkipLastField(); break;
                }
            }
            into.Add(new OtlpPoint(attributes, value, 0, 0));
        }
    }

    // Histogram { repeated HistogramDataPoint data_points = 1; }
    // HistogramDataPoint { fixed64 count = 4; double sum = 5; repeated KeyValue attributes = 9; }
    private static void DecodeHistogramPoints(ByteString message, List<OtlpPoint> into)
    {
        foreach (var (field, bytes) in Fields(message))
        {
            if (field != 1) continue;
            var attributes = new Dictionary<string, string>();
            ulong count = 0;
            double sum = 0;
            var point = bytes.CreateCodedInput();
            uint t;
            while ((t = point.ReadTag()) != 0)
            {
                switch (WireFormat.GetTagFieldNumber(t))
                {
                    case 4: count = point.ReadFixed64(); break;
                    case 5: sum = point.ReadDouble(); break;
                    case 9: AddKeyValue(point.ReadBytes(), attributes); break;
                    default: point.SkipLastField(); break;
                }
            }
            into.Add(new OtlpPoint(attributes, count, count, sum));
        }
    }

    // KeyValue { string key = 1; AnyValue value = 2; }  AnyValue { string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4; }
    private static void AddKeyValue(ByteString message, Dictionary<string, string> into)
    {
        string key = "", value = "";
        foreach (var (field, bytes) in Fields(message))
        {
            if (field == 1) key = bytes.ToStringUtf8();
            else if (field == 2) value = AnyValue(bytes);
        }
        into[key] = value;
    }

    private static string AnyValue(ByteString message)
    {
        var input = message.CreateCodedInput();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1: return input.ReadString();
                case 2: return input.ReadBool() ? "true" : "false";
                case 3: return input.ReadInt64().ToString();
                case 4: return input.ReadDouble().ToString(System.Globalization.CultureInfo.InvariantCulture);
                default: input.SkipLastField(); break;
            }
        }
        return "";
    }

    private static string StringField(ByteString message, int number)
    {
        foreach (var (field, bytes) in Fields(message))
            if (field == number) return bytes.ToStringUtf8();
        return "";
    }

    /// <summary>The length-delimited fields of a message (others skipped), as (number, bytes).</summary>
    private static IEnumerable<(int Field, ByteString Bytes)> Fields(ByteString message) => Fields(message.ToByteArray());

    private static IEnumerable<(int Field, ByteString Bytes)> Fields(byte[] message)
    {
        var list = new List<(int, ByteString)>();
        var input = new CodedInputStream(message);
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            if (WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited) list.Add((WireFormat.GetTagFieldNumber(tag), input.ReadBytes()));
            else input.SkipLastField();
        }
        return list;
    }

    public void Dispose()
    {
        _listener.Stop();
        _listener.Close();
        try { _loop.Wait(TimeSpan.FromSeconds(5)); } catch (AggregateException) { }
    }
}
