#!/usr/bin/env python3
"""A program's own non-IP sockets (AF_UNIX, netlink, vsock) and what the socket API says about them, as
JSON (errnos by name): run natively and under unsock-launch with a policy that rejects, the two outputs
must be the same. Usage: ownsockets.py DIR TAG (DIR: a directory the program may write; TAG: unique name)."""
import errno
import json
import os
import socket
import stat
import struct
import sys
import threading
import time


def err_name(e):
    return errno.errorcode.get(e, str(e)) if e else "OK"


def attempt(fn):
    try:
        r = fn()
        return "OK" if r is None else r
    except OSError as e:
        return err_name(e.errno)


def peer_ids(conn):
    pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return {"uid": uid, "gid": gid}


def main(directory, tag):
    out = {"uid": os.getuid()}
    os.chdir(directory)
    old_umask = os.umask(0o027)

    # A path relative to the working directory: created there, under our umask, owned by us.
    server = socket.socket(socket.AF_UNIX)
    out["bind_relative"] = attempt(lambda: server.bind(f"{tag}.sock"))
    os.umask(old_umask)
    if out["bind_relative"] == "OK":
        st = os.lstat(os.path.join(directory, f"{tag}.sock"))
        out["relative_mode"] = oct(stat.S_IMODE(st.st_mode))
        out["relative_owner"] = st.st_uid
        out["getsockname"] = server.getsockname()
        server.listen(8)
        client = socket.socket(socket.AF_UNIX)
        out["connect_relative"] = attempt(lambda: client.connect(f"{tag}.sock"))
        if out["connect_relative"] == "OK":
            conn, _ = server.accept()
            # The server sees the program as its peer, not the supervisor.
            out["peer_of_client"] = peer_ids(conn)
            out["peer_of_server"] = peer_ids(client)
            client.sendall(b"ping")
            out["echo"] = conn.recv(4).decode()
            conn.close()
        client.close()
        # The same path from another directory: relative to the caller's directory, not the supervisor's.
        os.chdir("/")
        other = socket.socket(socket.AF_UNIX)
        out["connect_relative_elsewhere"] = attempt(lambda: other.connect(f"{tag}.sock"))
        other.close()
        os.chdir(directory)

    # An absolute path into a directory the program may not write (/proc): the kernel's errno.
    denied = socket.socket(socket.AF_UNIX)
    out["bind_denied"] = attempt(lambda: denied.bind("/proc/unsock-test.sock"))
    missing = socket.socket(socket.AF_UNIX)
    out["connect_missing"] = attempt(lambda: missing.connect(os.path.join(directory, "missing.sock")))

    # Abstract names, stream and datagram.
    abstract = socket.socket(socket.AF_UNIX)
    out["bind_abstract"] = attempt(lambda: abstract.bind(f"\0unsock-{tag}"))
    abstract.listen(1)
    ac = socket.socket(socket.AF_UNIX)
    out["connect_abstract"] = attempt(lambda: ac.connect(f"\0unsock-{tag}"))
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    out["bind_dgram"] = attempt(lambda: receiver.bind(f"\0unsock-{tag}-dgram"))
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    out["connect_dgram"] = attempt(lambda: sender.connect(f"\0unsock-{tag}-dgram"))
    if out["connect_dgram"] == "OK":
        sender.send(b"datagram")
        out["dgram"] = receiver.recv(16).decode()
    autobind = socket.socket(socket.AF_UNIX)
    out["autobind"] = attempt(lambda: autobind.bind(""))
    out["autobind_abstract"] = autobind.getsockname()[:1] == b"\0" if out["autobind"] == "OK" else None
    # An AF_INET address on a Unix socket: the kernel refuses it.
    wrong = socket.socket(socket.AF_UNIX)
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    sin = ctypes.create_string_buffer(struct.pack("<H", socket.AF_INET) + struct.pack(">H", 9) + socket.inet_aton("127.0.0.1") + bytes(8))
    r = libc.connect(wrong.fileno(), sin, 16)
    out["unix_inet_sockaddr"] = "OK" if r == 0 else err_name(ctypes.get_errno())
    r = libc.connect(wrong.fileno(), sin, 0)
    out["unix_no_sockaddr"] = "OK" if r == 0 else err_name(ctypes.get_errno())

    # A full backlog: a non-blocking connect says EAGAIN; a blocking one waits for room, within SO_SNDTIMEO.
    full = socket.socket(socket.AF_UNIX)
    full.bind(f"\0unsock-{tag}-full")
    full.listen(0)
    fillers = []
    for _ in range(64):
        f = socket.socket(socket.AF_UNIX)
        f.setblocking(False)
        e = attempt(lambda: f.connect(f"\0unsock-{tag}-full"))
        fillers.append(f)
        if e != "OK":
            out["nonblocking_full"] = e
            break
    timed = socket.socket(socket.AF_UNIX)
    timed.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 0, 300000))
    start = time.monotonic()
    out["blocking_full_sndtimeo"] = attempt(lambda: timed.connect(f"\0unsock-{tag}-full"))
    out["waited_for_sndtimeo"] = time.monotonic() - start >= 0.25
    waiting = socket.socket(socket.AF_UNIX)
    room = threading.Timer(0.5, lambda: full.accept())
    room.daemon = True
    room.start()
    start = time.monotonic()
    out["blocking_full"] = attempt(lambda: waiting.connect(f"\0unsock-{tag}-full"))
    out["waited_for_room"] = time.monotonic() - start >= 0.4

    # Netlink: a plain bind; multicast groups, which the kernel checks against the caller's capabilities.
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    out["netlink_bind"] = attempt(lambda: nl.bind((0, 0)))
    nlg = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    out["netlink_bind_group"] = attempt(lambda: nlg.bind((0, 1)))  # RTMGRP_LINK: allowed without privilege
    nlc = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    out["netlink_connect_group"] = attempt(lambda: nlc.connect((0, 1)))  # sending to a group needs CAP_NET_ADMIN
    try:
        audit = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 9)  # NETLINK_AUDIT
        out["netlink_audit_group"] = attempt(lambda: audit.bind((0, 1)))  # needs CAP_AUDIT_READ
    except OSError as e:
        out["netlink_audit_group"] = "socket " + err_name(e.errno)

    # vsock: a port below 1024 needs CAP_NET_BIND_SERVICE.
    try:
        v = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        out["vsock_low_port"] = attempt(lambda: v.bind((socket.VMADDR_CID_ANY, 700 + os.getpid() % 200)))
    except OSError as e:
        out["vsock_low_port"] = "socket " + err_name(e.errno)

    # getaddrinfo with AI_ADDRCONFIG asks netlink which address families the host has.
    out["addrconfig"] = len(socket.getaddrinfo("localhost", 80, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_ADDRCONFIG)) > 0
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
