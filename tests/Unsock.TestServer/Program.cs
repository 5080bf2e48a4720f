using System.Net;
using System.Net.Http;
using System.Net.Sockets;
using System.Text;

// server PORT: a TcpListener on 127.0.0.1:PORT answering HTTP requests until killed; prints "remote ADDR:PORT" per connection.
// client URL:  GETs URL once with HttpClient; prints "local ADDR:PORT" (its own end) and "body ...".
if (args is ["server", var portText])
{
    var listener = new TcpListener(IPAddress.Loopback, int.Parse(portText));
    listener.Start();
    Console.WriteLine("listening");
    while (true)
    {
        using var client = await listener.AcceptTcpClientAsync();
        string remote = client.Client.RemoteEndPoint!.ToString()!;
        Console.WriteLine($"remote {remote}");
        var stream = client.GetStream();
        var request = new byte[4096];
        int got = 0;
        while (got < request.Length && !Encoding.ASCII.GetString(request, 0, got).Contains("\r\n\r\n"))
        {
            int n = await stream.ReadAsync(request.AsMemory(got));
            if (n == 0) break;
            got += n;
        }
        byte[] body = Encoding.ASCII.GetBytes($"you are {remote}");
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n"));
        await stream.WriteAsync(body);
    }
}
else if (args is ["client", var url])
{
    string local = "";
    var handler = new SocketsHttpHandler
    {
        ConnectCallback = async (context, cancel) =>
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            await socket.ConnectAsync(context.DnsEndPoint, cancel);
            local = socket.LocalEndPoint!.ToString()!;
            return new NetworkStream(socket, ownsSocket: true);
        },
    };
    using var http = new HttpClient(handler);
    string body = await http.GetStringAsync(url);
    Console.WriteLine($"local {local}");
    Console.WriteLine($"body {body}");
}
else
{
    Console.Error.WriteLine("usage: Unsock.TestServer server PORT | client URL");
    return 2;
}
return 0;
