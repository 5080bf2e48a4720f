#!/usr/bin/env python3
"""Starts a program as systemd's socket activation does: a listening AF_UNIX SOCK_SEQPACKET socket at
SOCKET as fd 3, LISTEN_FDS=1, LISTEN_PID (this pid, which exec keeps) and LISTEN_FDNAMES=NAME.

usage: activate.py SOCKET NAME PROGRAM [ARGS...]"""
import os, socket, sys

path, name, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind(path)
os.chmod(path, 0o666)
s.listen(4096)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
    s.close()
os.set_inheritable(3, True)
env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES=name)
os.execve(argv[0], argv, env)
