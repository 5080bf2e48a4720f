// Java's com.sun.net.httpserver.HttpServer and java.net.http.HttpClient (run as `java JavaHttp.java ...`).
//   server PORT   serves 127.0.0.1:PORT until killed; prints "remote /ADDR:PORT" per request
//   client URL    GETs URL once; prints "body ..."
import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

public class JavaHttp {
    public static void main(String[] args) throws Exception {
        if (args[0].equals("server")) {
            HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", Integer.parseInt(args[1])), 16);
            server.createContext("/", exchange -> {
                String remote = exchange.getRemoteAddress().toString();
                System.out.println("remote " + remote);
                byte[] body = ("you are " + remote).getBytes();
                exchange.sendResponseHeaders(200, body.length);
                exchange.getResponseBody().write(body);
                exchange.close();
            });
            server.start();
            System.out.println("listening");
        } else {
            HttpClient client = HttpClient.newHttpClient();
            HttpResponse<String> response = client.send(HttpRequest.newBuilder(URI.create(args[1])).build(), HttpResponse.BodyHandlers.ofString());
            System.out.println("body " + response.body());
        }
    }
}
