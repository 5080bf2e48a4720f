#!/usr/bin/env python3
"""Programs for the rule-kind tests (blackhole, dual binds, abstract, fromUnix, systemd, proxies). Each one is an
ordinary program; the tests run it under unsock-launch and check what it sees."""
import json
import os
import select
import socket
import sys
import time


def dual_serve(port):
    """Binds 127.0.0.1 and ::1 on one port (as servers do for "localhost"), listens on both, echoes on both."""
    socks = []
    for host in ("127.0.0.1", "::1"):
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        s.bind((host, int(port)))
        s.listen(16)
        socks.append(s)
    print(json.dumps({"names": [list(s.getsockname()[:2]) for s in socks]}), flush=True)
    while True:
        ready, _, _ = select.select(socks, [], [])
        for s in ready:
            c, peer = s.accept()
            with c:
                data = c.recv(100)
                c.sendall(b"echo:" + data)


def bind_listen(host, port):
    """Binds and listens, reports getsockname, then waits for a connection for WAIT seconds; says whether one came."""
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, int(port)))
    s.listen(4)
    print(json.dumps({"name": list(s.getsockname()[:2]), "fd": s.fileno(),
                      "so_domain": s.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)}), flush=True)
    s.settimeout(float(os.environ.get("WAIT", "3")))
    try:
        c, peer = s.accept()
        print(json.dumps({"accepted": list(peer[:2])}), flush=True)
        c.sendall(b"hello")
        c.close()
    except socket.timeout:
        print(json.dumps({"accepted": None}), flush=True)


def unix_serve(path, count):
    """An AF_UNIX server: binds path (or @name for abstract), reports getsockname, echoes `count` connections."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind("\0" + path[1:] if path.startswith("@") else path)
    s.listen(16)
    print(json.dumps({"name": s.getsockname() if isinstance(s.getsockname(), str) else "@" + s.getsockname()[1:].decode()}), flush=True)
    for _ in range(int(count)):
        c, _ = s.accept()
        with c:
            data = c.recv(100)
            c.sendall(b"echo:" + data)
    s.close()
    print("closed", flush=True)
    time.sleep(float(os.environ.get("HOLD", "0")))


def unix_connect(path, message):
    """An AF_UNIX client: connects, reports getpeername, sends message, prints the reply."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect("\0" + path[1:] if path.startswith("@") else path)
    except OSError as e:
        print(json.dumps({"errno": e.errno}), flush=True)
        return
    peer = s.getpeername()
    s.sendall(message.encode())
    reply = s.recv(100).decode()
    print(json.dumps({"peer": peer if isinstance(peer, str) else "@" + peer[1:].decode(), "reply": reply}), flush=True)


def firecracker_proxy(path):
    """A fake Firecracker vsock multiplexer: CONNECT <port>\\n, answers OK 1073741824\\n, then serves 'port <P>:' + data."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(16)
    print("listening", flush=True)
    while True:
        c, _ = s.accept()
        with c:
            line = b""
            while not line.endswith(b"\n"):
                chunk = c.recv(1)
                if not chunk:
                    break
                line += chunk
            if not line.startswith(b"CONNECT "):
                continue
            port = line[8:-1].decode()
            c.sendall(b"OK 1073741824\n")
            data = c.recv(100)
            c.sendall(("port %s:" % port).encode() + data)


def systemd_harness(kind, path, *command):
    """Starts `command` as systemd would with one passed socket at fd 3 (LISTEN_FDS=1, LISTEN_PID = this pid, which
    exec keeps). kind: 'listening' a listening AF_UNIX socket at path; 'unlistened' bound, not listening; 'pipe' not a socket."""
    if kind == "pipe":
        r, w = os.pipe()
        fd = r
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        if kind == "listening":
            s.listen(16)
        fd = s.detach()
    if fd != 3:
        os.dup2(fd, 3)
        os.close(fd)
    os.set_inheritable(3, True)
    env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="web")
    os.execvpe(command[0], list(command), env)


def bind_rounds(path, rounds):
    """Binds an AF_UNIX socket at path, listens and closes it, `rounds` times; counts what each bind said."""
    seen = {}
    for _ in range(int(rounds)):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(path)
            s.listen(1)
            key = "ok"
        except OSError as e:
            key = "errno %d" % e.errno
        seen[key] = seen.get(key, 0) + 1
        s.close()
        time.sleep(0.01)
    print(json.dumps(seen), flush=True)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    {
        "dual-serve": dual_serve,
        "bind-listen": bind_listen,
        "unix-serve": unix_serve,
        "unix-connect": unix_connect,
        "firecracker-proxy": firecracker_proxy,
        "systemd-harness": systemd_harness,
        "bind-rounds": bind_rounds,
    }[cmd](*args)


if __name__ == "__main__":
    main()
