"""Counts the deliveries of one signal, for the launcher's signal tests.

signalcount.py SIGNAL [ACTION [WAIT]]
  Prints "inherited default|ignored|handler" (the disposition it started with), installs a handler,
  prints "ready", does ACTION, and prints "SIGNAL count N" once 1.5 s passed after the first delivery
  (or WAIT seconds, default 30, without any).
  ACTION: "group"      kill(0, SIGNAL): the signal goes to our whole process group
          "parent"     kill(getppid(), SIGNAL): to the launcher
          "descendant" a child process of ours sends kill(0, SIGNAL)
"""
import os
import select
import signal
import sys
import time

name = sys.argv[1]
action = sys.argv[2] if len(sys.argv) > 2 else ""
wait = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
signo = getattr(signal, "SIG" + name)

start = signal.getsignal(signo)
# Python itself turns a default SIGINT into its KeyboardInterrupt handler.
default = start in (signal.SIG_DFL, signal.default_int_handler)
print("inherited " + ("ignored" if start == signal.SIG_IGN else "default" if default else "handler"), flush=True)

r, w = os.pipe()
os.set_blocking(w, False)
# One byte per delivery at the C level: Python may run its handler once for two quick deliveries.
signal.set_wakeup_fd(w)
signal.signal(signo, lambda s, f: None)
print("ready", flush=True)

if action == "group":
    os.kill(0, signo)
elif action == "parent":
    os.kill(os.getppid(), signo)
elif action == "descendant":
    pid = os.fork()
    if pid == 0:
        signal.set_wakeup_fd(-1)
        signal.signal(signo, signal.SIG_IGN)
        os.kill(0, signo)
        time.sleep(2)  # the launcher recognises a sender that is still there
        os._exit(0)
    os.waitpid(pid, 0)

count, deadline = 0, time.monotonic() + wait
while time.monotonic() < deadline:
    try:
        ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
    except InterruptedError:
        continue
    if ready:
        if count == 0:
            deadline = time.monotonic() + 1.5
        count += len(os.read(r, 64))
print(f"{name} count {count}", flush=True)
