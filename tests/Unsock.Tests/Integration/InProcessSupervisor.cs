using Unsock.Core.Engine;
using Unsock.Core.Filter;
using Unsock.Core.Policies;
using Unsock.Core.Supervision;

namespace Unsock.Tests.Integration;

/// <summary>
/// The supervisor's side of the control protocol, in the test process: enough of a service for the launcher's
/// hand-off to be tested on its own (the real service has its own tests). Serves one connection at a time.
/// </summary>
public sealed class InProcessSupervisor : IDisposable
{
    private readonly NotificationEngine _engine = new();
    private readonly int _listenFd;
    private readonly Thread _thread;
    private volatile bool _stopping;

    /// <param name="answer">Replaces the normal answer to a request when it returns non-null (to refuse, or to misbehave).</param>
    public InProcessSupervisor(string socketPath, Func<ControlRequest, ControlReply?>? answer = null)
    {
        SocketPath = socketPath;
        Answer = answer;
        int err = Interop.ControlSocket.Listen(socketPath, 16, out _listenFd);
        if (err != 0) throw new InvalidOperationException($"cannot listen at {socketPath}: errno {err}");
        _engine.Start();
        _thread = new Thread(Serve) { IsBackground = true, Name = "test-supervisor" };
        _thread.Start();
    }

    public string SocketPath { get; }

    public Func<ControlRequest, ControlReply?>? Answer { get; }

    /// <summary>Named policies the supervisor knows.</summary>
    public Dictionary<string, Policy> Named { get; } = new();

    /// <summary>Every (peer pid, request) received, in order.</summary>
    public List<(int Pid, ControlRequest Request)> Received { get; } = new();

    public IReadOnlyList<ListenerAttachment> Attachments => _engine.Attachments;

    private void Serve()
    {
        while (!_stopping)
        {
            if (!Interop.Socket.Poll(_listenFd, 1 /* POLLIN */, 100)) continue;
            if (Interop.Socket.Accept(_listenFd, Interop.Socket.SockCloexec, out int fd) != 0) continue;
            using var channel = ControlChannel.Adopt(fd, "launcher");
            try
            {
                Converse(channel);
            }
            catch (ControlChannelException)
            {
                // The launcher went away or sent something broken: the next one is served.
            }
        }
    }

    private void Converse(ControlChannel channel)
    {
        var (pid, uid, gid) = channel.PeerCredentials();
        Policy? pinned = null;
        while (channel.ReceiveRequest(out int passedFd) is { } request)
        {
            lock (Received) Received.Add((pid, request));
            if (Answer?.Invoke(request) is { } forced)
            {
                Interop.ControlSocket.Close(passedFd);
                channel.Send(forced);
                continue;
            }
            switch (request.Kind)
            {
                case ControlProtocol.Register:
                    try
                    {
                        pinned = request.Policy is { } name
                            ? Named.TryGetValue(name, out var p) ? p : throw new PolicyException($"no policy named {name}", name)
                            : Policy.Parse(request.PolicyText ?? "", request.PolicySource ?? "inline");
                    }
                    catch (PolicyException e)
                    {
                        channel.Send(ControlReply.Refused(e.Message));
                        continue;
                    }
                    var program = FilterCompiler.Compile(FilterPlan.For(pinned));
                    channel.Send(new ControlReply { Ok = true, Filter = Convert.ToBase64String(program.Bytes.Span), Target = 1 });
                    break;
                case ControlProtocol.Attach when pinned is not null && passedFd >= 0:
                    _engine.Attach(passedFd, pinned, new TargetContext(pid, uid, gid));
                    channel.Send(new ControlReply { Ok = true, Target = 1 });
                    break;
                default:
                    Interop.ControlSocket.Close(passedFd);
                    channel.Send(ControlReply.Refused($"unexpected {request.Kind}"));
                    break;
            }
        }
    }

    public void Dispose()
    {
        _stopping = true;
        _thread.Join();
        Interop.ControlSocket.Close(_listenFd);
        _engine.Dispose();
        File.Delete(SocketPath);
    }
}
