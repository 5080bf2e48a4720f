#!/usr/bin/env python3
"""TCP programs for the decision-integrity and fidelity tests: each prints JSON of what the socket API
said (errnos by name), so that a run under unsock-launch can be compared with a native run."""
import ctypes
import errno
import fcntl
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time

libc = ctypes.CDLL(None, use_errno=True)
F_SETOWN, F_GETOWN, F_SETSIG, F_GETSIG = 8, 9, 10, 11
O_ASYNC = 0x2000


def err_name(e):
    return errno.errorcode.get(e, str(e)) if e else "OK"


def syscall(nr, *args):
    r = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
    return "OK" if r >= 0 else err_name(ctypes.get_errno())


def attempt(fn):
    try:
        r = fn()
        return "OK" if r is None else r
    except OSError as e:
        return err_name(e.errno)


def echo_server(port):
    """Listens on 127.0.0.1:port and echoes every connection (a thread each)."""
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.listen(64)

    def handle(c):
        with c:
            while True:
                d = c.recv(65536)
                if not d:
                    return
                c.sendall(d)

    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=handle, args=(c,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return s


def fidelity(port, path):
    port = int(port)
    listener = echo_server(port)
    out = {}
    f = os.open(path, os.O_RDONLY)
    out["connect_file_null"] = syscall(42, f, 0, 16)
    out["bind_file_null"] = syscall(49, f, 0, 16)
    s6 = socket.socket(socket.AF_INET6)
    sa = ctypes.create_string_buffer(struct.pack("<H", socket.AF_INET) + struct.pack(">H", port) + socket.inet_aton("127.0.0.1") + bytes(8))
    out["v6_socket_inet_sockaddr"] = syscall(42, s6.fileno(), ctypes.addressof(sa), 16)
    out["v6_socket_inet_sockaddr_bind"] = syscall(49, s6.fileno(), ctypes.addressof(sa), 16)
    out["connect_on_listener"] = attempt(lambda: listener.connect(("127.0.0.1", port)))
    # A client that binds its source address first (nc -s, curl --interface).
    c = socket.socket()
    c.bind(("127.0.0.1", 0))
    bound = c.getsockname()
    out["peer_before_connect"] = attempt(lambda: c.getpeername())
    out["bind_then_connect"] = attempt(lambda: c.connect(("127.0.0.1", port)))
    if out["bind_then_connect"] == "OK":
        c.sendall(b"ping")
        out["bind_then_connect_echo"] = c.recv(4).decode()
        out["name_after_connect_kept"] = c.getsockname() == bound
        out["peer_after_connect"] = list(c.getpeername())[:2] == ["127.0.0.1", port]
        out["connect_again"] = attempt(lambda: c.connect(("127.0.0.1", port)))
    d = socket.socket()
    d.bind(("127.0.0.1", 0))
    out["shutdown_before_connect"] = attempt(lambda: d.shutdown(socket.SHUT_RDWR))
    out["bound_address"] = bound[0]
    out["bound_port_nonzero"] = bound[1] != 0
    l2 = socket.socket()
    l2.bind(("127.0.0.1", port + 1))
    l2.listen(1)
    out["listen_twice"] = attempt(lambda: l2.listen(5))
    out["bind_twice"] = attempt(lambda: l2.bind(("127.0.0.1", port + 2)))
    # Option numbers the kernel does not know, and one it knows.
    t = socket.create_connection(("127.0.0.1", port))
    out["set_bogus_tcp"] = attempt(lambda: t.setsockopt(socket.IPPROTO_TCP, 9999, 1))
    out["get_bogus_tcp"] = attempt(lambda: t.getsockopt(socket.IPPROTO_TCP, 9999))
    out["set_bogus_ip"] = attempt(lambda: t.setsockopt(socket.IPPROTO_IP, 7777, 1))
    out["set_ipv6_level_on_ipv4"] = attempt(lambda: t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1))
    t.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 4)
    out["keepcnt_read_back"] = t.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)
    print(json.dumps(out), flush=True)


def owner(port):
    """O_ASYNC, F_SETOWN and F_SETSIG set before bind and before connect must still deliver signals after."""
    port = int(port)
    got = {"USR1": 0, "USR2": 0}
    signal.signal(signal.SIGUSR1, lambda *_: got.__setitem__("USR1", got["USR1"] + 1))
    signal.signal(signal.SIGUSR2, lambda *_: got.__setitem__("USR2", got["USR2"] + 1))
    pid = os.getpid()

    def arm(sock, sig):
        fcntl.fcntl(sock.fileno(), F_SETOWN, pid)
        fcntl.fcntl(sock.fileno(), F_SETSIG, sig)
        fcntl.fcntl(sock.fileno(), fcntl.F_SETFL, fcntl.fcntl(sock.fileno(), fcntl.F_GETFL) | O_ASYNC)

    def state(sock):
        return {"owner": fcntl.fcntl(sock.fileno(), F_GETOWN) == pid,
                "signal": fcntl.fcntl(sock.fileno(), F_GETSIG),
                "async": bool(fcntl.fcntl(sock.fileno(), fcntl.F_GETFL) & O_ASYNC)}

    listener = socket.socket()
    arm(listener, signal.SIGUSR2)
    listener.bind(("127.0.0.1", port))
    listener.listen(4)
    client = socket.socket()
    arm(client, signal.SIGUSR1)
    client.connect(("127.0.0.1", port))
    out = {"listener": state(listener), "client": state(client)}
    got["USR1"] = 0  # the connect's own completion may signal on TCP; count what comes after
    conn, _ = listener.accept()
    deadline = time.monotonic() + 10
    while got["USR2"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    conn.sendall(b"data")
    while got["USR1"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    out["listener_signalled"] = got["USR2"] > 0
    out["client_signalled"] = got["USR1"] > 0
    out["sigusr1"], out["sigusr2"] = int(signal.SIGUSR1), int(signal.SIGUSR2)
    print(json.dumps(out), flush=True)
    # Python puts default handlers back while it shuts down: a late SIGIO signal must not kill it then.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def flood(port, count):
    """setsockopt with option numbers the kernel does not know, many times: each must fail, nothing kept."""
    port, count = int(port), int(count)
    echo_server(port)
    t = socket.create_connection(("127.0.0.1", port))
    t.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    val = ctypes.c_int(1)
    print("ready", flush=True)
    time.sleep(float(os.environ.get("PAUSE", "1.5")))
    errors = {}
    for i in range(count):
        r = libc.setsockopt(t.fileno(), socket.IPPROTO_TCP, 100000 + i, ctypes.byref(val), 4)
        e = "OK" if r == 0 else err_name(ctypes.get_errno())
        errors[e] = errors.get(e, 0) + 1
    print(json.dumps({"results": errors, "nodelay": t.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)}), flush=True)
    time.sleep(float(os.environ.get("PAUSE", "1.5")) * 2)


def fastopen(port, host_server):
    """sendto with MSG_FASTOPEN: connects and sends in one call."""
    port = int(port)
    if host_server == "self":
        echo_server(port)
    out = {}
    for blocking in (True, False):
        c = socket.socket()
        c.setblocking(blocking)
        key = "blocking" if blocking else "nonblocking"
        try:
            out[key] = c.sendto(b"hello", socket.MSG_FASTOPEN, ("127.0.0.1", port))
        except OSError as e:
            out[key] = err_name(e.errno)
        if not blocking and out[key] == "EINPROGRESS":
            select.select([], [c], [], 10)
            out[key + "_so_error"] = err_name(c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
            c.setblocking(True)
            c.sendall(b"hello")
            out[key] = 5
        if isinstance(out[key], int):
            c.settimeout(10)
            out[key + "_echo"] = c.recv(5).decode()
            out[key + "_peer"] = list(c.getpeername())[:2] == ["127.0.0.1", port]
        c.close()
    # sendmsg with MSG_FASTOPEN, two iovecs
    c = socket.socket()
    try:
        out["sendmsg"] = c.sendmsg([b"he", b"llo"], [], socket.MSG_FASTOPEN, ("127.0.0.1", port))
        c.settimeout(10)
        out["sendmsg_echo"] = c.recv(5).decode()
    except OSError as e:
        out["sendmsg"] = err_name(e.errno)
    print(json.dumps(out), flush=True)


def connects(port, closed_port):
    """connect calls the policy allows, on a real TCP listener: blocking, non-blocking, again, refused."""
    port = int(port)
    out = {}
    c = socket.socket()
    out["blocking"] = attempt(lambda: c.connect(("127.0.0.1", port)))
    c.sendall(b"one")
    out["blocking_echo"] = c.recv(3).decode()
    out["again"] = attempt(lambda: c.connect(("127.0.0.1", port)))
    n = socket.socket()
    n.setblocking(False)
    out["nonblocking"] = attempt(lambda: n.connect(("127.0.0.1", port)))
    select.select([], [n], [], 10)
    out["nonblocking_so_error"] = err_name(n.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    out["nonblocking_after"] = attempt(lambda: n.connect(("127.0.0.1", port)))
    out["nonblocking_after_again"] = attempt(lambda: n.connect(("127.0.0.1", port)))
    n.setblocking(True)
    n.sendall(b"two")
    out["nonblocking_echo"] = n.recv(3).decode()
    r = socket.socket()
    out["refused"] = attempt(lambda: r.connect(("127.0.0.1", int(closed_port))))
    print(json.dumps(out), flush=True)


def restart(port):
    """A blocking connect that waits (the listener's backlog is full) while SIGUSR1 arrives every 10 ms with
    SA_RESTART: each restart finds the connect in progress; it must end as TCP's does, connected."""
    port = int(port)
    got = [0]
    signal.signal(signal.SIGUSR1, lambda *_: got.__setitem__(0, got[0] + 1))
    signal.siginterrupt(signal.SIGUSR1, False)
    first = socket.create_connection(("127.0.0.1", port))  # fills the backlog of 0
    stop = threading.Event()

    def pester():
        while not stop.is_set():
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.01)

    threading.Thread(target=pester, daemon=True).start()
    c = socket.socket()
    print("connecting", flush=True)
    start = time.monotonic()
    result = attempt(lambda: c.connect(("127.0.0.1", port)))
    stop.set()
    out = {"result": result, "signals_during": got[0], "seconds": round(time.monotonic() - start, 2)}
    if result == "OK":
        c.sendall(b"after")
        c.settimeout(10)
        out["echo"] = c.recv(5).decode()
        out["again"] = attempt(lambda: c.connect(("127.0.0.1", port)))
    first.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {
        "fidelity": lambda: fidelity(*args),
        "owner": lambda: owner(*args),
        "flood": lambda: flood(*args),
        "fastopen": lambda: fastopen(*args),
        "connects": lambda: connects(*args),
        "restart": lambda: restart(*args),
    }[cmd]()
