namespace Unsock.Tests.Integration;

/// <summary>
/// What the embedded launcher does before the command's first trapped call: nothing of the engine. Its threads
/// start when a call waits, whether the command or a descendant that outlives it makes it.
/// </summary>
public class LauncherStartTests : IntegrationTest
{
    // The program says it is ready, waits for the file "go", then connects to a port without a socket file.
    private const string ConnectWhenTold = """
        import os, socket, sys, time
        print("ready", flush=True)
        while not os.path.exists(sys.argv[1]): time.sleep(0.02)
        s = socket.socket()
        try: s.connect(("127.0.0.1", 9))
        except OSError as e: print("connect:", e.errno, flush=True)
        """;

    [Fact]
    public void TheEngineStartsAtTheFirstTrappedCallNotBefore()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", Py, "-c", ConnectWhenTold, dir["go"]]);
        Assert.True(Wait.Until(() => p.Stdout.Contains("ready") || p.HasExited, TimeSpan.FromSeconds(20)), p.Describe());

        // The spawning thread ended with the spawn; the engine's (unsock-notify-N, unsock-poller, unsock-sweep) are not there.
        Assert.Empty(EngineThreads(p.Pid));

        File.WriteAllText(dir["go"], "");
        Assert.Equal(0, p.WaitForExit(Long));
        // Redirected to DIR/socks/9.sock, which does not exist: refused as a closed TCP port is, by the engine.
        Assert.Contains("connect: 111", p.Stdout);
    }

    [Fact]
    public void ADescendantThatOutlivesTheCommandIsServedFromItsFirstCall()
    {
        using var dir = new TempDir();
        string policy = Policies.Loopback(dir);
        File.WriteAllText(dir["client.py"], ConnectWhenTold);
        // The command ends at once with status 3; its background child connects once told, after the command is gone.
        string script = $"{Py} {dir["client.py"]} {dir["go"]} > {dir["out"]} & exit 3";
        using var p = new RunningProgram(Launcher.Path, ["--policy", policy, "--", "sh", "-c", script]);
        Assert.True(Wait.Until(() => File.Exists(dir["out"]) && File.ReadAllText(dir["out"]).Contains("ready"), TimeSpan.FromSeconds(20)), p.Describe());
        Assert.False(p.HasExited, p.Describe());
        Assert.Empty(EngineThreads(p.Pid));

        File.WriteAllText(dir["go"], "");
        Assert.Equal(3, p.WaitForExit(Long));
        Assert.Contains("connect: 111", File.ReadAllText(dir["out"]));
    }

    [Fact]
    public void LibcFunctionsAreBoundByTheDynamicLinkerNotLookedUpAtFirstCall()
    {
        // A P/Invoke the runtime resolves itself costs a dlopen and a dlsym at its first call, and the first one
        // also the runtime's reflection start-up; bound directly, they are undefined symbols of the executable.
        var imported = UndefinedDynamicSymbols(Launcher.Path);
        Assert.Contains("signalfd", imported);    // the launcher's own (Spawn)
        Assert.Contains("posix_spawn", imported);
        Assert.Contains("dlopen", imported);      // Dl, libdl.so.2's name for it
        Assert.Contains("eventfd", imported);     // the engine's, through Tmds.LibC
        Assert.DoesNotContain("seccomp_init", imported); // libseccomp stays optional: loaded when a filter is compiled
    }

    /// <summary>The names of the undefined symbols in an ELF64 little-endian file's .dynsym.</summary>
    private static HashSet<string> UndefinedDynamicSymbols(string file)
    {
        byte[] elf = File.ReadAllBytes(file);
        var span = elf.AsSpan();
        ulong shoff = BitConverter.ToUInt64(elf, 0x28);
        int shentsize = BitConverter.ToUInt16(elf, 0x3A), shnum = BitConverter.ToUInt16(elf, 0x3C);
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < shnum; i++)
        {
            int sh = (int)shoff + i * shentsize;
            if (BitConverter.ToUInt32(elf, sh + 4) != 11) continue; // SHT_DYNSYM
            long offset = (long)BitConverter.ToUInt64(elf, sh + 0x18), size = (long)BitConverter.ToUInt64(elf, sh + 0x20);
            int strtab = (int)shoff + (int)BitConverter.ToUInt32(elf, sh + 0x28) * shentsize;
            long strOffset = (long)BitConverter.ToUInt64(elf, strtab + 0x18);
            for (long sym = offset; sym + 24 <= offset + size; sym += 24)
            {
                if (BitConverter.ToUInt16(elf, (int)sym + 6) != 0) continue; // st_shndx: defined here
                int name = (int)(strOffset + BitConverter.ToUInt32(elf, (int)sym));
                int end = span[name..].IndexOf((byte)0);
                names.Add(System.Text.Encoding.ASCII.GetString(elf, name, end));
            }
        }
        return names;
    }

    private static List<string> EngineThreads(int pid)
    {
        var names = new List<string>();
        foreach (string task in Directory.GetDirectories($"/proc/{pid}/task"))
        {
            string name;
            try { name = File.ReadAllText(Path.Combine(task, "comm")).Trim(); }
            catch (IOException) { continue; } // a thread that ended meanwhile
            if (name.StartsWith("unsock-notify", StringComparison.Ordinal) || name is "unsock-poller" or "unsock-sweep") names.Add(name);
        }
        return names;
    }
}
