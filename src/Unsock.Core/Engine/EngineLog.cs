namespace Unsock.Core.Engine;

/// <summary>The -v decision log: one line per decision, to stderr by default.</summary>
public sealed class EngineLog(TextWriter? writer)
{
    public bool Enabled => writer is not null;

    public void Decision(int pid, string call, string subject, string outcome)
    {
        if (writer is null) return;
        lock (writer) writer.WriteLine($"unsock: pid {pid} {call} {subject}: {outcome}");
    }

    public void Message(string text)
    {
        if (writer is null) return;
        lock (writer) writer.WriteLine($"unsock: {text}");
    }
}
