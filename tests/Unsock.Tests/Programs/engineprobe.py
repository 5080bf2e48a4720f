#!/usr/bin/env python3
"""Programs that lean on the engine: a victim that times its connects, non-blocking connects into a full
backlog, a listener handed away with SCM_RIGHTS, many threads asking getsockname at once."""
import json
import os
import socket
import sys
import threading
import time


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def victim(host, port, n):
    """Listens and connects to itself n times; prints the slowest connect (it must stay fast whatever others do)."""
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.bind((host, int(port)))
    s.listen(64)
    slowest = 0.0
    for _ in range(int(n)):
        start = time.monotonic()
        c = socket.create_connection((host, int(port)))
        slowest = max(slowest, time.monotonic() - start)
        a, _ = s.accept()
        c.sendall(b"x")
        assert a.recv(1) == b"x"
        a.close()
        c.close()
    print(json.dumps({"slowest": slowest, "family": c.family}), flush=True)


def peer_server(host, port, n):
    """Accepts n connections; prints, per connection, the peer port accept reported and the port the client says it has."""
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.bind((host, int(port)))
    s.listen(64)
    print("listening", flush=True)
    for _ in range(int(n)):
        c, peer = s.accept()
        said = c.recv(16).decode()
        print(json.dumps({"accepted": peer[1], "client": int(said)}), flush=True)
        c.close()


def peer_client(host, port, n):
    """Connects n times and sends the port getsockname reports for itself."""
    for _ in range(int(n)):
        c = socket.create_connection((host, int(port)))
        c.sendall(str(c.getsockname()[1]).encode())
        c.recv(1)
        c.close()


def nonblock_full(host, port):
    """Never accepts; connects non-blocking until the backlog is full. Each connect must return at once."""
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.bind((host, int(port)))
    s.listen(0)
    results = []
    kept = []
    for _ in range(6):
        c = socket.socket(family(host), socket.SOCK_STREAM)
        c.setblocking(False)
        start = time.monotonic()
        err = c.connect_ex((host, int(port)))
        results.append({"errno": err, "seconds": time.monotonic() - start})
        kept.append(c)
    print(json.dumps(results), flush=True)


def pass_listener(host, port, path):
    """Listens on host:port, hands the listener to whoever listens on the Unix socket at path, and exits."""
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.bind((host, int(port)))
    s.listen(8)
    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    u.connect(path)
    socket.send_fds(u, [b"listener"], [s.fileno()])
    u.recv(1)  # the holder has it
    print("handed over", flush=True)


def hold_listener(path):
    """Outside any launcher: receives a listener by SCM_RIGHTS and serves one connection on it."""
    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    u.bind(path)
    u.listen(1)
    print("ready", flush=True)
    c, _ = u.accept()
    _, fds, _, _ = socket.recv_fds(c, 100, 1)
    c.sendall(b"k")
    listener = socket.socket(fileno=fds[0])
    print("holding", flush=True)
    while True:
        a, _ = listener.accept()
        a.sendall(b"held\n")
        a.close()


def names_from_threads(host, port, n):
    """n threads each ask getsockname of one converted listener once, all at the same time."""
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.bind((host, int(port)))
    s.listen(8)
    barrier = threading.Barrier(int(n))
    families = {}
    lock = threading.Lock()

    def ask():
        barrier.wait()
        try:
            name = s.getsockname()
            key = "inet" if isinstance(name, tuple) else "unix:" + str(name)
        except OSError as e:
            key = "errno %d" % e.errno
        with lock:
            families[key] = families.get(key, 0) + 1
        time.sleep(2)  # keep the thread (and the supervisor's cache entry for it) alive

    threads = [threading.Thread(target=ask) for _ in range(int(n))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(families), flush=True)


if __name__ == "__main__":
    threading.stack_size(256 * 1024)
    cmd, args = sys.argv[1], sys.argv[2:]
    {
        "victim": lambda: victim(*args),
        "peer-server": lambda: peer_server(*args),
        "peer-client": lambda: peer_client(*args),
        "nonblock-full": lambda: nonblock_full(*args),
        "pass-listener": lambda: pass_listener(*args),
        "hold-listener": lambda: hold_listener(*args),
        "names-from-threads": lambda: names_from_threads(*args),
    }[cmd]()
