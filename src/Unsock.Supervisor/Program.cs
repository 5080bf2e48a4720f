using Microsoft.Extensions.Hosting;

// The external supervisor is its own issue; until then it is an empty host that systemd can run.
var builder = Host.CreateApplicationBuilder(args);
builder.Services.AddSystemd();
builder.Build().Run();
