using Microsoft.Extensions.Logging;

namespace Unsock.Launcher;

/// <summary>
/// The launcher's log sink: "unsock: ..." lines on stderr, warnings and errors always, decisions with -v.
/// A few lines of ours instead of the console logger package, which would cost start-up time.
/// </summary>
internal sealed class StderrLoggerFactory(bool verbose) : ILoggerFactory
{
    private readonly StderrLogger _logger = new(verbose ? LogLevel.Debug : LogLevel.Warning);

    public ILogger CreateLogger(string categoryName) => _logger;

    public void AddProvider(ILoggerProvider provider) { }

    public void Dispose() { }

    private sealed class StderrLogger(LogLevel minimum) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= minimum && logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel)) return;
            string text = formatter(state, exception);
            string line = exception is null ? $"unsock: {text}" : $"unsock: {text}: {exception}";
            var err = Console.Error;
            lock (err) err.WriteLine(line);
        }
    }
}
