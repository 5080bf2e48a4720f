#!/usr/bin/env python3
"""Programs that attack, or lean on, the socket files the supervisor handles for its targets. Each is an
ordinary program (TCP/IP, or plain file calls); the tests run them under unsock-launch, or next to it."""
import ctypes
import fcntl
import json
import os
import signal
import socket
import sys
import time

AT_FDCWD = -100
RENAME_EXCHANGE = 2
F_SETLEASE = 1024
libc = ctypes.CDLL(None, use_errno=True)


def exchange(a, b):
    return libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), RENAME_EXCHANGE)


def fork(work):
    pid = os.fork()
    if pid == 0:
        try:
            work()
        finally:
            os._exit(0)
    return pid


def echo_server(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", port))
    s.listen(128)
    while True:
        c, _ = s.accept()
        with c:
            try:
                data = c.recv(16)
                if data:
                    c.sendall(data)
            except OSError:
                pass  # a client that went away


class Stuck(Exception):
    pass


def on_alarm(*_):
    raise Stuck()


def timed_connects(port, rounds):
    """The victim: `rounds` connects with an echo each; the slowest one, and how many never finished."""
    signal.signal(signal.SIGALRM, on_alarm)
    signal.siginterrupt(signal.SIGALRM, True)
    slowest, stuck, failed = 0.0, 0, []
    for _ in range(rounds):
        start = time.monotonic()
        signal.alarm(5)
        try:
            with socket.create_connection(("127.0.0.1", port)) as c:
                c.sendall(b"v")
                if c.recv(1) != b"v":
                    failed.append("short echo")
        except Stuck:
            stuck += 1
        except OSError as e:
            failed.append(repr(e))
        finally:
            signal.alarm(0)
        slowest = max(slowest, time.monotonic() - start)
        time.sleep(0.05)
    return slowest, stuck, failed


def wait_until_served(port):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the victim server never listened")


def connect_forever(port):
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            pass
        s.close()


def attack(prepare, socks, port, victim_port, connectors=10):
    """Starts the victim server, `prepare`s the trap at PORT.sock, hammers PORT with connects from
    several processes, and measures the victim meanwhile."""
    os.makedirs(socks, exist_ok=True)
    children = [fork(lambda: echo_server(victim_port))]
    wait_until_served(victim_port)
    children += prepare()
    children += [fork(lambda: connect_forever(port)) for _ in range(connectors)]
    time.sleep(1.0)  # long enough for every notification thread to have met the trap
    slowest, stuck, failed = timed_connects(victim_port, 20)
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    for pid in children:
        os.waitpid(pid, 0)
    print(json.dumps({"slowest": round(slowest, 3), "stuck": stuck, "failed": failed[:3]}), flush=True)


def fifo_swap(socks, port, victim_port):
    """A 452-byte regular file and a FIFO trade places at PORT.sock, as fast as renameat2 allows: a
    supervisor that stats the path and then opens it blocks in open() on the FIFO forever."""
    path = f"{socks}/{port}.sock"
    fifo = f"{socks}/.fifo-{port}"

    def prepare():
        with open(path, "wb") as f:
            f.write(b"\0" * 452)
        os.mkfifo(fifo)

        def swap():
            while True:
                exchange(path, fifo)
        return [fork(swap)]

    attack(prepare, socks, int(port), int(victim_port))


def lease(socks, port, victim_port):
    """A 452-byte file at PORT.sock with a write lease held on it: open() of it blocks until the lease is
    given up, or lease-break-time (45 s) has passed."""
    path = f"{socks}/{port}.sock"

    def prepare():
        with open(path, "wb") as f:
            f.write(b"\0" * 452)
        r, w = os.pipe()

        def hold():
            signal.signal(signal.SIGIO, signal.SIG_IGN)  # the lease break is announced with SIGIO: ignore it
            fd = os.open(path, os.O_RDONLY)
            fcntl.fcntl(fd, F_SETLEASE, fcntl.F_WRLCK)
            os.write(w, b"x")
            while True:
                time.sleep(60)
        pid = fork(hold)
        os.read(r, 1)
        return [pid]

    attack(prepare, socks, int(port), int(victim_port))


def swap_dirs(a, b):
    """Outside the launcher, as the target's user: trades two names (a directory and a symlink) forever."""
    renameat2, a, b = libc.renameat2, a.encode(), b.encode()
    while True:
        renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)


def hold_listeners(first, count, go):
    """Listens on `count` ports, then (once file `go` exists) shuts a third down, closes a third and
    keeps the rest until it exits: each way of cleaning up a socket file happens."""
    first, count = int(first), int(count)
    listeners = []
    for port in range(first, first + count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", port))
        s.listen(1)
        listeners.append(s)
    print("listening", flush=True)
    while not os.path.exists(go):
        time.sleep(0.02)
    for i, s in enumerate(listeners):
        if i % 3 == 0:
            s.shutdown(socket.SHUT_RDWR)
        elif i % 3 == 1:
            s.close()
    time.sleep(2.5)  # the sweep runs every second
    print("exiting", flush=True)


def two_binds(port):
    """Two sockets bind one address before either listens: TCP refuses the second with EADDRINUSE, and
    the first still gets its connections once it listens."""
    port = int(port)
    out = {}
    a = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    a.bind(("127.0.0.1", port))
    try:
        b.bind(("127.0.0.1", port))
        out["second"] = 0
    except OSError as e:
        out["second"] = e.errno
    a.listen(1)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            a.settimeout(10)
            s, _ = a.accept()
            c.sendall(b"first")
            out["first_got"] = s.recv(5).decode()
            s.close()
    except OSError as e:
        out["first_got"] = repr(e)
    print(json.dumps(out), flush=True)


def long_names(port, total, go):
    """Connects and binds `total` times to an address whose socket path is too long for sun_path: each
    fails, and must leave nothing open in the supervisor."""
    port, total = int(port), int(total)
    errors = {}

    def run(n, op):
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                op(s)
                errors["0"] = errors.get("0", 0) + 1
            except OSError as e:
                errors[str(e.errno)] = errors.get(str(e.errno), 0) + 1
            s.close()

    run(20, lambda s: s.connect(("127.0.0.1", port)))
    print("warm", flush=True)
    while not os.path.exists(go):
        time.sleep(0.02)
    run(total, lambda s: s.connect(("127.0.0.1", port)))
    run(total // 5, lambda s: s.bind(("127.0.0.1", port)))
    print(json.dumps({"errors": errors}), flush=True)
    time.sleep(float(os.environ.get("HOLD", "0")))


def created_modes(socks, *ports):
    """Binds each port under umask 027 while watching the socket directory with inotify: reports each
    file's mode and whether it was ever changed after it was created (IN_ATTRIB), which would mean it
    existed for a while with another mode."""
    import struct
    os.makedirs(socks, exist_ok=True)
    fd = libc.inotify_init1(os.O_NONBLOCK)
    libc.inotify_add_watch(fd, socks.encode(), 0x4 | 0x100)  # IN_ATTRIB | IN_CREATE
    os.umask(0o027)
    kept, out = [], {}
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", int(port)))
        s.listen(1)
        kept.append(s)
    events = []
    try:
        data = os.read(fd, 65536)
    except BlockingIOError:
        data = b""
    while data:
        _, mask, _, length = struct.unpack_from("iIII", data)
        name = data[16:16 + length].rstrip(b"\0").decode()
        events.append(("attrib" if mask & 0x4 else "create") + " " + name)
        data = data[16 + length:]
    for port in ports:
        out[port] = oct(os.stat(f"{socks}/{port}.sock").st_mode & 0o777)
    print(json.dumps({"modes": out, "events": events}), flush=True)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {
        "fifo-swap": lambda: fifo_swap(*args),
        "lease": lambda: lease(*args),
        "swap-dirs": lambda: swap_dirs(*args),
        "hold-listeners": lambda: hold_listeners(*args),
        "two-binds": lambda: two_binds(*args),
        "long-names": lambda: long_names(*args),
        "created-modes": lambda: created_modes(*args),
    }[cmd]()
