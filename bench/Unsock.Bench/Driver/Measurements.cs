namespace Unsock.Bench.Driver;

/// <summary>
/// One value per (metric, variant, round). Ratios are taken per round (the variants of a round ran
/// seconds apart, interleaved) and the median of those is reported: drift between rounds cancels out.
/// </summary>
internal sealed class Measurements(int rounds)
{
    private readonly Dictionary<(string Metric, string Variant), double[]> _values = new();

    public int Rounds { get; } = rounds;

    public void Add(string metric, string variant, int round, double value)
    {
        if (!_values.TryGetValue((metric, variant), out var v))
            _values[(metric, variant)] = v = Enumerable.Repeat(double.NaN, Rounds).ToArray();
        v[round] = value;
    }

    public double[] Values(string metric, string variant) =>
        _values.GetValueOrDefault((metric, variant)) ?? Enumerable.Repeat(double.NaN, Rounds).ToArray();

    public double Median(string metric, string variant) => MedianOf(Values(metric, variant));

    /// <summary>How many times faster (above 1) or slower the variant is than the baseline, median over rounds.</summary>
    public double SpeedRatio(string metric, string variant, string baseline, bool higherIsBetter)
    {
        var v = Values(metric, variant);
        var b = Values(metric, baseline);
        return MedianOf(v.Zip(b, (x, y) => higherIsBetter ? x / y : y / x).ToArray());
    }

    /// <summary>Median over rounds of variant minus baseline.</summary>
    public double Difference(string metric, string variant, string baseline) =>
        MedianOf(Values(metric, variant).Zip(Values(metric, baseline), (x, y) => x - y).ToArray());

    public IEnumerable<(string Metric, string Variant, double[] Values)> All() =>
        _values.Select(kv => (kv.Key.Metric, kv.Key.Variant, kv.Value));

    public static double MedianOf(double[] values)
    {
        var v = values.Where(x => !double.IsNaN(x) && !double.IsInfinity(x)).Order().ToArray();
        if (v.Length == 0) return double.NaN;
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }
}
