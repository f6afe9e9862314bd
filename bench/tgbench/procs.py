"""Processes the harness starts, and what it reads about them from /proc.

Every process the harness starts goes through Registry.start(): it gets its
own session (so a Ctrl-C in the terminal reaches only the harness, which then
stops things in order), a parent-death signal (so nothing outlives a harness
that was killed), and a row in the registry. Registry.stop_all() stops them in
reverse order, each by its own PID: the polite signal first, SIGKILL after a
bounded wait.
"""

import ctypes
import os
import signal
import socket
import subprocess
import time

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def child_setup():
    # Runs in the child after fork (and after setuid when user= is given):
    # die with the harness, whatever happens to it.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Proc:
    def __init__(self, name, popen, stop_signal, logpath):
        self.name = name
        self.popen = popen
        self.pid = popen.pid
        self.stop_signal = stop_signal
        self.logpath = logpath

    def alive(self):
        return self.popen.poll() is None

    def log_tail(self, n=20):
        try:
            with open(self.logpath, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""


class Registry:
    """The processes this run started, stopped in reverse order at the end."""

    def __init__(self, logdir):
        self.logdir = logdir
        self.procs = []

    def start(self, name, argv, stop_signal=signal.SIGTERM, user=None, env=None, cwd=None,
              stdin=subprocess.DEVNULL):
        logpath = os.path.join(self.logdir, name + ".log")
        log = open(logpath, "ab")
        kwargs = {}
        if user is not None:
            kwargs["user"] = user
            kwargs["group"] = user
            kwargs["extra_groups"] = []
        try:
            p = subprocess.Popen(argv, stdin=stdin, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True, preexec_fn=child_setup, env=env,
                                 cwd=cwd, **kwargs)
        finally:
            log.close()
        proc = Proc(name, p, stop_signal, logpath)
        self.procs.append(proc)
        return proc

    def stop(self, proc, timeout=10.0):
        if proc not in self.procs:
            return
        self.procs.remove(proc)
        if proc.popen.poll() is not None:
            return
        try:
            os.kill(proc.pid, proc.stop_signal)
            proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.popen.wait(timeout=5)
        except ProcessLookupError:
            pass

    def stop_all(self):
        for proc in reversed(list(self.procs)):
            try:
                self.stop(proc)
            except Exception as e:  # keep stopping the others
                print("bench: stopping %s (pid %d): %s" % (proc.name, proc.pid, e))


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc=None, timeout=30.0):
    """Waits until 127.0.0.1:port accepts a connection; raises if proc dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError("%s exited with %s before listening on %d:\n%s"
                               % (proc.name, proc.popen.returncode, port, proc.log_tail()))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("nothing listens on 127.0.0.1:%d after %.0f s" % (port, timeout))


def cpu_ticks(pid):
    """utime + stime of the whole process (all threads), in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]) + int(fields[12])


def cpu_ns(pid):
    """On-CPU time of the process's live threads in ns (sum of /proc/PID/task/*/schedstat), or
    None where the kernel has no schedstat. Nanosecond resolution, where cpu_ticks() has 10 ms:
    for runs too short to count ticks (a few thousand operations on a slow test server)."""
    total = 0
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None
    for tid in tasks:
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            continue  # the thread exited in between
        except (OSError, ValueError, IndexError):
            return None
    return total


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS for pid %d" % pid)


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])
