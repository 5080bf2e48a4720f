#!/usr/bin/env python3
"""Plays systemd's part for a service that keeps fds across restarts: NOTIFY_SOCKET (READY=1, STOPPING=1,
FDSTORE=1 with FDNAME and fds by SCM_RIGHTS, FDSTOREREMOVE=1), the file descriptor store (kept across
restarts, an fd already stored under the same name not stored twice, as systemd does), socket activation of
the control socket (made once, passed on every start), and LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID/FDSTORE at
each start with the control socket first and then the stored fds.

usage: fakesystemd.py NOTIFY CONTROL -- PROGRAM [ARGS...]
Commands are signals to this process: SIGUSR1 restarts the service (SIGTERM, wait for its exit, start again),
SIGUSR2 kills it (SIGKILL, then the same), SIGTERM stops it and ends. Every event is a JSON line on stdout:
{"event": "ready", "pid": P, "start": N, "pauseMs": M, "store": [names]} where the pause runs from the
signal to READY=1 of the next process; {"event": "exited", "status": S}."""
import array, json, os, signal, socket, sys, threading, time

notify_path, control_path = sys.argv[1], sys.argv[2]
argv = sys.argv[sys.argv.index("--") + 1:]
lock = threading.Lock()
store = []  # (name, fd), in the order stored
ready = threading.Event()
child = None


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def same_file(a, b):
    sa, sb = os.fstat(a), os.fstat(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def listen_notify():
    if os.path.exists(notify_path):
        os.unlink(notify_path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(notify_path)
    fd_size = array.array("i").itemsize
    while True:
        data, anc, _, _ = s.recvmsg(8192, socket.CMSG_SPACE(253 * fd_size))
        fds = []
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(payload[: len(payload) - len(payload) % fd_size])
                fds.extend(a)
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
        with lock:
            if fields.get("FDSTORE") == "1":
                name = fields.get("FDNAME", "stored")
                for fd in fds:
                    if any(n == name and same_file(f, fd) for n, f in store):
                        os.close(fd)
                    else:
                        os.set_inheritable(fd, False)
                        store.append((name, fd))
                fds = []
            if fields.get("FDSTOREREMOVE") == "1":
                name = fields.get("FDNAME")
                for n, f in [e for e in store if e[0] == name]:
                    os.close(f)
                    store.remove((n, f))
        for fd in fds:
            os.close(fd)
        if fields.get("READY") == "1":
            ready.set()


def start(number, since):
    global child
    control = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    if number == 0:
        if os.path.exists(control_path):
            os.unlink(control_path)
        control.bind(control_path)
        os.chmod(control_path, 0o666)
        control.listen(4096)
        start.control = control
    with lock:
        passed = [("control", start.control.fileno())] + list(store)
    ready.clear()
    pid = os.fork()
    if pid == 0:
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            # Above every fd we pass, then down to 3, 4, ...: no dup2 overwrites a source still to be moved.
            high = [os.dup(f) for _, f in passed]
            base = 1000 + max(high)
            moved = []
            for i, f in enumerate(high):
                os.dup2(f, base + i)
                moved.append(base + i)
            for i, f in enumerate(moved):
                os.dup2(f, 3 + i)
                os.set_inheritable(3 + i, True)
            os.closerange(3 + len(passed), base + len(passed) + 1)
            env = dict(os.environ, NOTIFY_SOCKET=notify_path, LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(passed)),
                       LISTEN_FDNAMES=":".join(n for n, _ in passed), FDSTORE="4096")
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    child = pid
    if not ready.wait(120):
        out({"event": "not-ready", "pid": pid})
        return
    with lock:
        names = [n for n, _ in store]
    out({"event": "ready", "pid": pid, "start": number, "passed": len(passed), "store": names,
         "pauseMs": None if since is None else round((time.monotonic() - since) * 1000, 1)})


def wait_exit():
    _, status = os.waitpid(child, 0)
    out({"event": "exited", "status": os.waitstatus_to_exitcode(status)})


commands = {signal.SIGUSR1: "restart", signal.SIGUSR2: "kill", signal.SIGTERM: "stop"}
signal.pthread_sigmask(signal.SIG_BLOCK, list(commands))
threading.Thread(target=listen_notify, daemon=True).start()
time.sleep(0.05)
start(0, None)
starts = 1
while True:
    command = commands[signal.sigwait(list(commands))]
    since = time.monotonic()
    os.kill(child, signal.SIGKILL if command == "kill" else signal.SIGTERM)
    wait_exit()
    if command == "stop":
        break
    start(starts, since)
    starts += 1
