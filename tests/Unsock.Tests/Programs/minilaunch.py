#!/usr/bin/env python3
"""The launcher's side of the supervisor protocol, for the supervisor's own tests (unsock-launch does this
for users): connect, register, install the returned filter with a listener, attach it, exec in place.

usage: minilaunch.py SOCKET (--policy NAME | --policy-file PATH) [--no-attach] -- COMMAND [ARGS...]
Exits 125 with the supervisor's reason when it refuses."""
import base64, ctypes, json, os, socket, sys

PR_SET_NO_NEW_PRIVS = 38
SYS_SECCOMP = 317
SECCOMP_SET_MODE_FILTER = 1
FLAG_NEW_LISTENER = 1 << 3
FLAG_WAIT_KILLABLE_RECV = 1 << 5


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def ask(sock, request, fds=()):
    data = json.dumps(request).encode()
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)
    raw = sock.recv(1 << 17)
    if not raw:
        sys.exit("minilaunch: the supervisor closed the connection")
    reply = json.loads(raw)
    if not reply.get("ok"):
        print("minilaunch: refused: " + reply.get("error", "?"), file=sys.stderr, flush=True)
        sys.exit(125)
    return reply


def main():
    args = sys.argv[1:]
    split = args.index("--")
    opts, command = args[:split], args[split + 1:]
    path = opts[0]
    request = {"version": 1, "kind": "register", "command": command}
    if "--policy" in opts:
        request["policy"] = opts[opts.index("--policy") + 1]
    if "--policy-file" in opts:
        source = opts[opts.index("--policy-file") + 1]
        with open(source) as f:
            request["policyText"] = f.read()
        request["policySource"] = source
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.connect(path)
    reply = ask(sock, request)
    program = base64.b64decode(reply["filter"])
    buf = ctypes.create_string_buffer(program, len(program))
    prog = SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        sys.exit("minilaunch: prctl failed")
    libc.syscall.restype = ctypes.c_long
    listener = libc.syscall(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, FLAG_NEW_LISTENER | FLAG_WAIT_KILLABLE_RECV, ctypes.byref(prog))
    if listener < 0:
        sys.exit("minilaunch: seccomp failed: " + os.strerror(ctypes.get_errno()))
    if "--no-attach" in opts:
        # Registered and filtered, never attached: the supervisor must drop the registration in time. The
        # program keeps the connection open (a launcher that hangs), or the close would end it at once.
        os.set_inheritable(sock.fileno(), True)
        os.execvp(command[0], command)
    ask(sock, {"version": 1, "kind": "attach"}, [listener])
    os.close(listener)
    sock.close()
    os.execvp(command[0], command)


main()
