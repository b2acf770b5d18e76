"""Real kvserver processes for the script tests (tests/python, tests/docker).

Everything here is bounded in time and cleans up after itself: a
ProcessGroup is a context manager that stops (SIGTERM, then SIGKILL) every
process it started, whatever happened in between. Servers bind loopback
addresses only.

Standard library only, so it runs under any Python 3.9+.
"""

import json
import os
import signal
import socket
import subprocess
import time


class TestFailure(Exception):
    """A check failed; the message says what and where."""


def free_ports(count, host="127.0.0.1"):
    """`count` distinct ports that were free on `host` a moment ago.

    All sockets stay bound until every port is chosen, so the ports differ;
    another process may still take one before the server binds it, which
    the caller sees as a server failing to start.
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def port_is_free(host, port):
    """Whether a TCP listener could bind host:port right now."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class ProcessGroup:
    """Processes started by a test, each with its output in a log file."""

    def __init__(self, log_dir):
        self._log_dir = log_dir
        self._procs = {}  # name -> (Popen, log path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop_all()
        return False

    def start(self, name, argv):
        if name in self._procs:
            raise ValueError(f"process {name} started twice")
        log_path = os.path.join(self._log_dir, f"{name}.log")
        with open(log_path, "wb") as log:
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            except OSError as e:  # e.g. the binary is being relinked right now
                raise TestFailure(f"cannot start {name} ({argv[0]}): {e}") from e
        self._procs[name] = (proc, log_path)
        return proc

    def log_tail(self, name, lines=25):
        _, path = self._procs[name]
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError as e:
            return f"(cannot read {path}: {e})"
        return "\n".join(text.splitlines()[-lines:])

    def all_logs(self, lines=25):
        return "\n".join(f"--- {name} (last {lines} lines)\n{self.log_tail(name, lines)}" for name in self._procs)

    def check_running(self):
        """Raises TestFailure if any process has exited."""
        for name, (proc, _) in self._procs.items():
            if proc.poll() is not None:
                raise TestFailure(
                    f"{name} exited early with status {proc.returncode}:\n{self.log_tail(name)}")

    def stop_all(self, grace_s=10.0):
        """SIGTERM to every running process, SIGKILL to those still running
        after `grace_s`. Returns {name: exit status} (negative = signal)."""
        for proc, _ in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc, _ in self._procs.values():
            remaining = max(0.0, deadline - time.monotonic())
            try:
                proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        return {name: proc.returncode for name, (proc, _) in self._procs.items()}

    def names(self):
        return list(self._procs)


def run(argv, timeout_s):
    """Runs a command to completion within `timeout_s`; returns
    CompletedProcess with text stdout/stderr."""
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        raise TestFailure(f"{' '.join(argv)} did not finish within {timeout_s} s") from e


def kvctl(kvctl_path, endpoints, *args, timeout_s=5):
    """kvctl with explicit endpoints (never $QUORUMKV_ENDPOINTS) and a time
    limit; the process gets a few seconds more than kvctl's own limit."""
    argv = [kvctl_path, "--endpoints", ",".join(endpoints), "--timeout", f"{timeout_s}s", *args]
    return run(argv, timeout_s + 10)


def wait_for_leader(kvctl_path, endpoints, group, timeout_s=30):
    """Polls `kvctl status` until every endpoint answers and all agree on one
    leader, which reports itself as leader. Returns the leader's id."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        group.check_running()
        r = kvctl(kvctl_path, endpoints, "--output", "json", "status", timeout_s=1)
        last = f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
        if r.returncode == 0:
            try:
                rows = json.loads(r.stdout)["endpoints"]
            except (ValueError, KeyError) as e:
                raise TestFailure(f"kvctl status --output json printed something else: {e}\n{last}") from e
            leaders = {row.get("leader_id", 0) for row in rows}
            self_leaders = [row["node_id"] for row in rows if row.get("role") == "leader"]
            if len(rows) == len(endpoints) and len(leaders) == 1 and 0 not in leaders and \
                    self_leaders == list(leaders):
                return self_leaders[0]
        time.sleep(0.2)
    raise TestFailure(f"no agreed leader within {timeout_s} s; last kvctl status: {last}\n{group.all_logs()}")
