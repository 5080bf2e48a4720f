#!/usr/bin/env python3
"""TCP programs for the integration tests: each subcommand is an ordinary TCP/IP program that knows
nothing of Unix sockets; the tests run it under unsock-launch and check what it sees."""
import asyncio
import ctypes
import json
import os
import signal
import socket
import sys
import threading
import time


def fd_count():
    return len(os.listdir("/proc/self/fd"))


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def listen_on(host, port, backlog):
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.bind((host, int(port)))
    s.listen(backlog)
    return s


def serve_echo(host, port, count):
    """Listens, prints 'listening <port>' and echoes `count` connections (0 = forever)."""
    s = listen_on(host, port, 128)
    print("listening", s.getsockname()[1], flush=True)
    served = 0
    while count == 0 or served < count:
        c, _ = s.accept()
        with c:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                c.sendall(data)
        served += 1
    s.shutdown(socket.SHUT_RDWR)
    s.close()
    print("served", served, flush=True)


def serve_threaded(host, port):
    """Echo server with one thread per connection, forever."""
    s = listen_on(host, port, 1024)
    print("listening", s.getsockname()[1], flush=True)

    def handle(c):
        with c:
            while True:
                d = c.recv(65536)
                if not d:
                    return
                c.sendall(d)

    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def names(host, port):
    """Connects and reports what the socket API says about the connection, as JSON."""
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, b"\x05" + b"\x00" * 15)
    s.connect((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if family(host) == socket.AF_INET:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)
        tos = s.getsockopt(socket.IPPROTO_IP, socket.IP_TOS)
    else:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, 0x10)
        tos = s.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS)
    out = {
        "tos": tos,
        "peer": list(s.getpeername()[:2]),
        "sock_family": s.getsockname() and len(s.getsockname()),
        "so_domain": s.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN),
        "so_protocol": s.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL),
        "nodelay": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
        "keepidle": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        "rcvtimeo_kept": s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)[0],
        "keepalive_count": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        "cloexec": bool(os.get_inheritable(s.fileno()) is False),
    }
    s.sendall(b"ping")
    out["echo"] = s.recv(4).decode()
    # The same fd number again, this time inheritable: FD_CLOEXEC must follow the program's socket.
    number = s.fileno()
    s.close()
    t = socket.socket(family(host), socket.SOCK_STREAM)
    os.set_inheritable(t.fileno(), True)
    t.connect((host, int(port)))
    out["same_fd"] = t.fileno() == number
    out["inheritable_kept"] = os.get_inheritable(t.fileno())
    print(json.dumps(out), flush=True)


def bind0(host):
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.bind((host, 0))
    s.listen(1)
    print(json.dumps({"port": s.getsockname()[1], "addr": s.getsockname()[0],
                      "so_domain": s.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)}), flush=True)
    time.sleep(float(os.environ.get("HOLD", "0")))


def bind_only(host, port):
    """Binds and reports the errno (0 on success), then holds the socket for HOLD seconds."""
    s = socket.socket(family(host), socket.SOCK_STREAM)
    try:
        s.bind((host, int(port)))
        s.listen(1)
        print("bound", flush=True)
        time.sleep(float(os.environ.get("HOLD", "0")))
    except OSError as e:
        print("errno", e.errno, flush=True)


def connect_only(host, port):
    s = socket.socket(family(host), socket.SOCK_STREAM)
    try:
        s.connect((host, int(port)))
        print("connected", flush=True)
    except OSError as e:
        print("errno", e.errno, flush=True)


def socket_only(fam):
    try:
        socket.socket({"inet": socket.AF_INET, "inet6": socket.AF_INET6}[fam], socket.SOCK_STREAM)
        print("created", flush=True)
    except OSError as e:
        print("errno", e.errno, flush=True)


def many(host, port, total, threads):
    """`total` short connections from `threads` threads, one byte each way; reports failures and fds."""
    total, threads = int(total), int(threads)
    before = fd_count()
    failures = []
    lock = threading.Lock()
    counter = [0]

    def worker():
        while True:
            with lock:
                if counter[0] >= total:
                    return
                counter[0] += 1
            try:
                with socket.create_connection((host, int(port)), timeout=30) as c:
                    c.sendall(b"x")
                    if c.recv(1) != b"x":
                        raise OSError("short echo")
            except OSError as e:
                with lock:
                    failures.append(repr(e))

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(json.dumps({"before": before, "after": fd_count(), "failures": len(failures),
                      "first": failures[:3]}), flush=True)


def signalled(host, port, total):
    """Makes `total` connections while a thread sends this process SIGUSR1 every 10 ms. The handler is
    installed with SA_RESTART, as Go installs its preemption signal (SIGURG)."""
    got = [0]
    signal.signal(signal.SIGUSR1, lambda *_: got.__setitem__(0, got[0] + 1))
    signal.siginterrupt(signal.SIGUSR1, False)
    stop = threading.Event()

    def pester():
        while not stop.is_set():
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.01)

    threading.Thread(target=pester, daemon=True).start()
    failures = []
    for _ in range(int(total)):
        try:
            with socket.create_connection((host, int(port)), timeout=30) as c:
                c.sendall(b"y")
                if c.recv(1) != b"y":
                    failures.append("short echo")
        except OSError as e:
            failures.append(repr(e))
    stop.set()
    print(json.dumps({"failures": len(failures), "first": failures[:3], "signals": got[0]}), flush=True)


def sigint_accept(host, port):
    """Blocks in accept; a SIGINT must interrupt it (KeyboardInterrupt)."""
    s = listen_on(host, port, 1)
    print("listening", flush=True)
    try:
        s.accept()
        print("accepted?!", flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)


def asyncio_pair(host, port, n):
    """An asyncio server and client in one process (both non-blocking), n round trips."""
    async def handle(reader, writer):
        while data := await reader.read(100):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, host, int(port))
        ok = 0
        for i in range(int(n)):
            r, w = await asyncio.open_connection(host, int(port))
            w.write(b"msg%d" % i)
            await w.drain()
            if await r.read(100) == b"msg%d" % i:
                ok += 1
            w.close()
            await w.wait_closed()
        server.close()
        await server.wait_closed()
        print(json.dumps({"ok": ok}), flush=True)

    asyncio.run(main())


def bad_pointers(host, port):
    """Raw syscalls with bad pointers and lengths: each must fail with an errno, nothing may hang."""
    libc = ctypes.CDLL(None, use_errno=True)
    results = {}
    s = socket.socket(family(host), socket.SOCK_STREAM)

    def call(name, nr, *args):
        r = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
        results[name] = 0 if r >= 0 else ctypes.get_errno()

    call("connect_null", 42, s.fileno(), 0, 16)
    call("connect_wild", 42, s.fileno(), 0x10, 16)
    call("bind_wild", 49, s.fileno(), 0x10, 16)
    call("connect_badfd", 42, 9999, 0x10, 16)
    s.connect((host, int(port)))
    call("getsockname_wild", 51, s.fileno(), 0x10, 0x20)
    buf = ctypes.create_string_buffer(64)
    call("getsockname_badlen", 51, s.fileno(), ctypes.addressof(buf), 0x30)
    neg = ctypes.c_int(-1)
    call("getsockname_neglen", 51, s.fileno(), ctypes.addressof(buf), ctypes.addressof(neg))
    # A short buffer: the kernel writes only what fits and reports the full length.
    short = ctypes.create_string_buffer(b"\xaa" * 32, 32)
    short_len = ctypes.c_int(4)
    call("getsockname_short", 51, s.fileno(), ctypes.addressof(short), ctypes.addressof(short_len))
    results["short_len"] = short_len.value
    results["short_untouched"] = short.raw[4:] == b"\xaa" * 28
    results["short_family"] = int.from_bytes(short.raw[:2], "little")
    val = ctypes.c_int(0)
    call("getsockopt_wild", 55, s.fileno(), 6, 1, 0x10, 0x20)
    small = ctypes.c_int(2)
    call("setsockopt_short", 54, s.fileno(), 6, 1, ctypes.addressof(val), 2)
    s.sendall(b"z")
    results["still_works"] = s.recv(1).decode()
    print(json.dumps(results), flush=True)


def accept_peers(host, port):
    """Accepts two connections: one with an address buffer (prints the peer), one with accept(fd, NULL, NULL)."""
    s = listen_on(host, port, 4)
    print("listening", flush=True)
    c, peer = s.accept()
    out = {"peer": list(peer[:2]), "peer_again": list(c.getpeername()[:2]), "local": list(c.getsockname()[:2]),
           "so_domain": c.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)}
    c.close()
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.accept(s.fileno(), None, None)
    out["null_accept"] = "ok" if fd >= 0 else ctypes.get_errno()
    if fd >= 0:
        os.close(fd)
    print(json.dumps(out), flush=True)


def fork_pair(host, port):
    """A parent that forks a child server and then connects to it: both carry the filter."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        s = listen_on(host, port, 1)
        os.write(w, b"x")
        c, _ = s.accept()
        c.sendall(c.recv(10))
        os._exit(0)
    os.close(w)
    os.read(r, 1)
    with socket.create_connection((host, int(port))) as c:
        c.sendall(b"forked")
        print(c.recv(10).decode(), flush=True)
    os.waitpid(pid, 0)


def never_accept(host, port):
    """Listens with the smallest backlog and never accepts: connects beyond it find the backlog full."""
    s = listen_on(host, port, 0)
    print("listening", flush=True)
    time.sleep(120)


def full_backlog(host, port, timeout_ms):
    """Connects until the backlog is full. With SO_SNDTIMEO the last connect must time out (ETIMEDOUT,
    never EAGAIN); without one it must block until a SIGINT interrupts it."""
    kept = []
    for i in range(5):
        s = socket.socket(family(host), socket.SOCK_STREAM)
        if int(timeout_ms) > 0:
            ms = int(timeout_ms)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                         (ms // 1000).to_bytes(8, "little") + ((ms % 1000) * 1000).to_bytes(8, "little"))
        print("connecting", i, flush=True)
        start = time.monotonic()
        try:
            s.connect((host, int(port)))
            print("connected", i, flush=True)
            kept.append(s)
        except KeyboardInterrupt:
            print("interrupted after %.2f" % (time.monotonic() - start), flush=True)
            return
        except OSError as e:
            print("errno", e.errno, "after %.2f" % (time.monotonic() - start), flush=True)
            return


def shutdown_hold(host, port):
    """Listens, then shuts the listener down and stays alive: the socket file must go at the shutdown."""
    s = listen_on(host, port, 1)
    print("listening", flush=True)
    time.sleep(1.0)
    if os.environ.get("CLOSE_ONLY"):
        s.close()  # no shutdown: only the sweep can notice
    else:
        s.shutdown(socket.SHUT_RDWR)
    print("shut", flush=True)
    time.sleep(30)


def own_unix(path):
    """A program's own AF_UNIX sockets: their addresses must stay what the kernel says."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(path)
    a, _ = srv.accept()
    print(json.dumps({"client_peer": c.getpeername(), "server_name": a.getsockname(),
                      "domain": c.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)}), flush=True)


def accept_emfile(host, port):
    """accept with a full fd table must fail with EMFILE (not hang), and the connection must still be
    there for the next accept once there is room."""
    import resource
    s = listen_on(host, port, 4)
    print("listening", flush=True)
    while not select_readable(s):
        pass
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.open("/dev/null", os.O_RDONLY)  # the number the next fd would get
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        s.accept()
        print("accepted with a full fd table?!", flush=True)
    except OSError as e:
        print("errno", e.errno, flush=True)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    c, peer = s.accept()
    c.sendall(b"late")
    print("accepted after", peer[0], flush=True)


def select_readable(s):
    import select
    return bool(select.select([s], [], [], 1.0)[0])


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {
        "serve-echo": lambda: serve_echo(args[0], args[1], int(args[2]) if len(args) > 2 else 0),
        "serve-threaded": lambda: serve_threaded(*args),
        "names": lambda: names(*args),
        "bind0": lambda: bind0(*args),
        "bind": lambda: bind_only(*args),
        "connect": lambda: connect_only(*args),
        "socket": lambda: socket_only(*args),
        "many": lambda: many(*args),
        "signalled": lambda: signalled(*args),
        "sigint-accept": lambda: sigint_accept(*args),
        "asyncio": lambda: asyncio_pair(*args),
        "bad-pointers": lambda: bad_pointers(*args),
        "accept-peers": lambda: accept_peers(*args),
        "fork-pair": lambda: fork_pair(*args),
        "never-accept": lambda: never_accept(*args),
        "full-backlog": lambda: full_backlog(*args),
        "shutdown-hold": lambda: shutdown_hold(*args),
        "own-unix": lambda: own_unix(*args),
        "accept-emfile": lambda: accept_emfile(*args),
    }[cmd]()
