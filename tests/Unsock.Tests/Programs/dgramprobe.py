#!/usr/bin/env python3
"""UDP programs for the datagram tests. Each prints one JSON line of what the socket API said (addresses
as "host:port", errnos by name), so that a run under unsock-launch can be checked, or compared with a
native run over real UDP."""
import ctypes
import errno
import json
import logging
import logging.handlers
import mmap
import os
import signal
import socket
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def err_name(e):
    return errno.errorcode.get(e, str(e)) if e else "OK"


def show(addr):
    if isinstance(addr, tuple):
        return f"{addr[0]}:{addr[1]}"
    return repr(addr)


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def out(**kw):
    # One write per line: several probes share the test's stdout pipe, and print() makes two writes (the text, then
    # the newline) when Python runs unbuffered (PYTHONUNBUFFERED), so lines of two probes could run together.
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def send_until_accepted(s, data, addr, seconds=20):
    """The server's socket file may not exist yet: ECONNREFUSED until it does (UDP would drop silently)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return s.sendto(data, addr)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def dns_server(host, port, count):
    """Answers COUNT queries: 'answer:' + query, to the address recvfrom named."""
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.bind((host, port))
    out(ready=show(s.getsockname()))
    senders = []
    for _ in range(count):
        data, addr = s.recvfrom(4096)
        senders.append(show(addr))
        s.sendto(b"answer:" + data, addr)
    out(sockname=show(s.getsockname()), senders=senders)


def dns_client(host, port, mode):
    """One query: unconnected (sendto/recvfrom), connected (connect/send/recvfrom) or msg (sendmsg/recvmsg)."""
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.settimeout(20)
    result = {}
    if mode == "connected":
        deadline = time.monotonic() + 20
        while True:
            try:
                s.connect((host, port))
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        result["peername"] = show(s.getpeername())
        s.send(b"q-connected")
    elif mode == "msg":
        deadline = time.monotonic() + 20
        while True:
            try:
                s.sendmsg([b"q-", b"msg"], [], 0, (host, port))
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    else:
        send_until_accepted(s, b"q-unconnected", (host, port))
    result["sockname_after_send"] = show(s.getsockname())
    # What the socket says it is: the family and protocol of the UDP socket the program made.
    result["sockopts"] = [s.getsockopt(socket.SOL_SOCKET, o) for o in (socket.SO_DOMAIN, socket.SO_TYPE, socket.SO_PROTOCOL)]
    if mode == "msg":
        data, _, flags, addr = s.recvmsg(4096)
        result["flags"] = flags
    else:
        data, addr = s.recvfrom(4096)
    result.update(reply=data.decode(), source=show(addr), sockname=show(s.getsockname()))
    out(**result)


def sink(host, port, count):
    """Receives COUNT one-way datagrams (syslog, statsd) and prints them with their senders."""
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.bind((host, port))
    out(ready=show(s.getsockname()))
    got = []
    senders = set()
    for _ in range(count):
        data, addr = s.recvfrom(65536)
        got.append(data.decode(errors="replace"))
        senders.add(show(addr))
    out(messages=got, senders=sorted(senders))


def syslog_sender(host, port, count):
    handler = logging.handlers.SysLogHandler(address=(host, port), socktype=socket.SOCK_DGRAM)
    logger = logging.getLogger("unsock-test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # The first message may find no socket file yet: SysLogHandler would swallow the error, so probe first.
    send_until_accepted(handler.socket, b"<14>probe", (host, port))
    for i in range(count - 1):
        logger.info("syslog line %d", i)
    out(sent=count)


def statsd_sender(host, port, count):
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    send_until_accepted(s, b"probe:1|c", (host, port))
    for i in range(count - 1):
        s.sendto(f"requests.{i}:1|c".encode(), (host, port))
    out(sent=count, sockname=show(s.getsockname()))


def fidelity(host, port):
    """Receive flags and modes on a bound socket, sent to from a second socket of the same process."""
    r = socket.socket(family(host), socket.SOCK_DGRAM)
    r.bind((host, port))
    w = socket.socket(family(host), socket.SOCK_DGRAM)
    w.bind((host, 0))
    result = {}
    payload = bytes(range(100))
    w.sendto(payload, (host, port))
    data, addr = r.recvfrom(10, socket.MSG_PEEK)
    result["peek"] = [len(data), data == payload[:10], addr == w.getsockname()]
    buf = bytearray(4)
    n, addr = r.recvfrom_into(buf, 4, socket.MSG_TRUNC)
    result["trunc"] = [n, bytes(buf) == payload[:4], addr == w.getsockname()]
    try:
        r.recvfrom(100, socket.MSG_DONTWAIT)
        result["after_trunc"] = "data"
    except OSError as e:
        result["after_trunc"] = err_name(e.errno)
    w.sendto(b"x" * 10, (host, port))
    data, _, flags_, addr = r.recvmsg(4)
    result["recvmsg_trunc"] = [len(data), flags_ & socket.MSG_TRUNC != 0, addr == w.getsockname()]
    r.setblocking(False)
    try:
        r.recvfrom(100)
        result["nonblocking"] = "data"
    except OSError as e:
        result["nonblocking"] = err_name(e.errno)
    r.setblocking(True)
    r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, (0).to_bytes(8, "little") + (300000).to_bytes(8, "little"))
    start = time.monotonic()
    try:
        r.recvfrom(100)
        result["rcvtimeo"] = "data"
    except OSError as e:
        result["rcvtimeo"] = err_name(e.errno)
    result["rcvtimeo_waited"] = time.monotonic() - start >= 0.25
    # A blocking receive is interrupted by the program's own signal, whose handler runs.
    def alarm(signum, frame):
        raise InterruptedError("alarm")
    signal.signal(signal.SIGALRM, alarm)
    r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, bytes(16))
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        r.recvfrom(100)
        result["signal"] = "data"
    except InterruptedError as e:
        result["signal"] = str(e)
    # Several datagrams queued (fewer than net.unix.max_dgram_qlen, 10 by default, which an AF_UNIX receiver
    # queues at most): each once, in order, none lost or duplicated.
    for i in range(8):
        w.sendto(b"n%d" % i, (host, port))
    seen = [r.recvfrom(100)[0].decode() for _ in range(8)]
    result["order"] = seen == ["n%d" % i for i in range(8)]
    # A zero-length datagram is a datagram.
    w.sendto(b"", (host, port))
    data, addr = r.recvfrom(100)
    result["empty"] = [len(data), addr == w.getsockname()]
    # recvfrom whose address buffer is read-only: EFAULT, and the datagram is gone (as the kernel does it).
    w.sendto(b"lost?", (host, port))
    w.sendto(b"next", (host, port))
    data_buf = ctypes.create_string_buffer(64)
    addrlen = ctypes.c_uint32(128)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    read_only = libc.mmap(None, 4096, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    n = libc.syscall(ctypes.c_long(45), ctypes.c_long(r.fileno()), data_buf, ctypes.c_long(64), ctypes.c_long(0),
                     ctypes.c_void_p(read_only), ctypes.byref(addrlen))
    result["efault"] = err_name(ctypes.get_errno()) if n < 0 else f"returned {n}"
    data, _ = r.recvfrom(100)
    result["after_efault"] = data.decode()
    out(**result)


def wait_for(stopfile, limit=120):
    deadline = time.monotonic() + limit
    while not os.path.exists(stopfile) and time.monotonic() < deadline:
        time.sleep(0.05)


def blocked_receiver(host, port, stopfile):
    """Binds and never reads until STOPFILE exists: its queue fills and senders must wait or drop."""
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.bind((host, port))
    out(ready=show(s.getsockname()))
    wait_for(stopfile)
    out(done=True)


def flood(host, port, stopfile):
    """Sends as fast as it can until STOPFILE exists, from eight blocking sockets (SO_SNDTIMEO 200 ms) and a
    non-blocking one; counts the outcomes of each kind, and the shortest wait of a blocking send that timed out."""
    import threading
    lock = threading.Lock()
    counts = {"blocking": {"sent": 0, "errors": {}}, "nonblocking": {"sent": 0, "errors": {}}}
    shortest = [None]

    def note(kind, error=None, waited=None):
        with lock:
            c = counts[kind]
            if error is None:
                c["sent"] += 1
            else:
                c["errors"][error] = c["errors"].get(error, 0) + 1
            if waited is not None and (shortest[0] is None or waited < shortest[0]):
                shortest[0] = waited

    def blocking():
        s = socket.socket(family(host), socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, (0).to_bytes(8, "little") + (200000).to_bytes(8, "little"))
        while not os.path.exists(stopfile):
            start = time.monotonic()
            try:
                s.sendto(b"f" * 512, (host, port))
                note("blocking")
            except OSError as e:
                note("blocking", err_name(e.errno), time.monotonic() - start if e.errno == errno.EAGAIN else None)

    threads = [threading.Thread(target=blocking) for _ in range(8)]
    for t in threads:
        t.start()
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.setblocking(False)
    announced = False
    while not os.path.exists(stopfile):
        try:
            s.sendto(b"n" * 512, (host, port))
            note("nonblocking")
        except OSError as e:
            note("nonblocking", err_name(e.errno))
            if e.errno == errno.EAGAIN and not announced:
                out(flooding=True)  # the receiver's queue is full
                announced = True
        time.sleep(0.001)
    for t in threads:
        t.join()
    out(shortest_blocking_timeout=shortest[0], **counts)


def once(action, host, port):
    """One bind or one sendto, no retries: prints the errno."""
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    try:
        if action == "bind":
            s.bind((host, port))
        else:
            s.sendto(b"once", (host, port))
        out(action=action, port=port, result="OK")
    except OSError as e:
        out(action=action, port=port, result=err_name(e.errno))


def sends(host, count, ports):
    """COUNT sendto and COUNT sendmsg with the address from one plain (unconnected) UDP socket to each port, no
    retries: prints how each call ended, by errno name, per port."""
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    result = {}
    for port in ports:
        ends = {"sendto": {}, "sendmsg": {}}
        for call in ("sendto", "sendmsg"):
            for i in range(count):
                try:
                    if call == "sendto":
                        s.sendto(b"to%d" % i, (host, port))
                    else:
                        s.sendmsg([b"msg", b"%d" % i], [], 0, (host, port))
                    name = "OK"
                except OSError as e:
                    name = err_name(e.errno)
                ends[call][name] = ends[call].get(name, 0) + 1
                if i % 64 == 63:
                    time.sleep(0.01)  # let the receiver drain: a full buffer only drops, it proves nothing
        result[str(port)] = ends
    out(sends=result)


def waiters(host, base, count, seconds):
    """COUNT threads block in recvfrom on COUNT sockets for SECONDS, then the process exits with them waiting."""
    import threading
    socks = []
    for i in range(count):
        s = socket.socket(family(host), socket.SOCK_DGRAM)
        s.bind((host, base + i))
        socks.append(s)
        threading.Thread(target=s.recvfrom, args=(100,), daemon=True).start()
    out(waiting=count)
    time.sleep(seconds)
    os._exit(0)


def unix_server(path, count):
    """A native AF_UNIX datagram server: answers COUNT datagrams to their senders' names."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    out(ready=path)
    senders = []
    for _ in range(count):
        data, addr = s.recvfrom(4096)
        senders.append(addr if isinstance(addr, str) else repr(addr))
        s.sendto(b"unix-answer:" + data, addr)
    out(senders=senders)


def unix_client(path, own):
    """A native AF_UNIX datagram client bound to OWN: one query to PATH, prints the reply and its sender."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(own)
    s.settimeout(20)
    deadline = time.monotonic() + 20
    while True:
        try:
            s.sendto(b"from-unix", path)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    data, addr = s.recvfrom(4096)
    out(reply=data.decode(), source=addr)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "dns-server":
        dns_server(args[0], int(args[1]), int(args[2]))
    elif cmd == "dns-client":
        dns_client(args[0], int(args[1]), args[2] if len(args) > 2 else "unconnected")
    elif cmd == "sink":
        sink(args[0], int(args[1]), int(args[2]))
    elif cmd == "syslog":
        syslog_sender(args[0], int(args[1]), int(args[2]))
    elif cmd == "statsd":
        statsd_sender(args[0], int(args[1]), int(args[2]))
    elif cmd == "fidelity":
        fidelity(args[0], int(args[1]))
    elif cmd == "blocked":
        blocked_receiver(args[0], int(args[1]), args[2])
    elif cmd == "flood":
        flood(args[0], int(args[1]), args[2])
    elif cmd == "once":
        once(args[0], args[1], int(args[2]))
    elif cmd == "sends":
        sends(args[0], int(args[1]), [int(p) for p in args[2:]])
    elif cmd == "waiters":
        waiters(args[0], int(args[1]), int(args[2]), float(args[3]))
    elif cmd == "unix-server":
        unix_server(args[0], int(args[1]))
    elif cmd == "unix-client":
        unix_client(args[0], args[1])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
