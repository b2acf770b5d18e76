#!/usr/bin/env python3
"""ctest python_client_example: examples/python/quorumkv_client.py against a
three-node cluster of real kvserver processes on 127.0.0.1 (free ports).

  /usr/bin/python3 tests/python/python_client_example_test.py --repo . \
      --kvserver build/bin/kvserver --kvctl build/bin/kvctl

1. The example starts before the servers and generates its own stubs; once
   it has retried its first write at least once (connection refused), the
   servers start. It must ride out the refusals and the election, then
   put, read back from every node at every consistency level, delete, and
   print a status table that shows one leader all nodes agree on. Exit
   status 0.
2. Again, with stubs this test generated with protoc (--stubs-dir), another
   key and value; kvctl confirms the example left the key deleted.
3. Usage errors exit 2; an endpoint where nothing listens fails with
   UNAVAILABLE after the retries, exit 1, within its --timeout.
Every server is stopped (SIGTERM, and must exit 0) and the temporary
directory removed, also on failure.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

# No __pycache__ in the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from local_cluster import ProcessGroup, TestFailure, free_ports, kvctl, run, wait_for_leader  # noqa: E402

PYTHON = sys.executable
CONSISTENCIES = ("LINEARIZABLE", "LEASE", "SERIALIZABLE")


def table_rows(stdout, title):
    """The rows of the table printed after the line `title` (header
    skipped), each split on runs of 2+ spaces."""
    lines = stdout.splitlines()
    try:
        start = lines.index(title)
    except ValueError as e:
        raise TestFailure(f"no \"{title}\" in the output:\n{stdout}") from e
    header = lines[start + 1]
    if not header.startswith("ENDPOINT"):
        raise TestFailure(f"no table header after \"{title}\":\n{stdout}")
    rows = []
    for line in lines[start + 2:]:
        if not re.match(r"\S+:\d+\s", line):
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def check_output(stdout, endpoints, key, value):
    """Checks a successful run's output, line by line."""
    if not re.search(rf"^put '{re.escape(key)}' = '{re.escape(value)}': ok \(sequence 1; node [123] applied it",
                     stdout, re.M):
        raise TestFailure(f"no put line for {key!r}:\n{stdout}")

    reads = table_rows(stdout, f"reads of '{key}':")
    expected = [(e, c) for e in endpoints for c in CONSISTENCIES]
    got = [(r[0], r[2]) for r in reads]
    if got != expected:
        raise TestFailure(f"reads table rows {got}, expected {expected}:\n{stdout}")
    nodes_seen = {}
    for r in reads:
        if len(r) != 4 or r[3] != value:
            raise TestFailure(f"read row {r}: expected value {value!r} and no UNEXPECTED mark:\n{stdout}")
        nodes_seen.setdefault(r[0], set()).add(r[1])
    node_ids = [next(iter(ids)) for _, ids in sorted(nodes_seen.items())]
    if any(len(ids) != 1 for ids in nodes_seen.values()) or sorted(node_ids) != ["1", "2", "3"]:
        raise TestFailure(f"each endpoint must answer as one distinct node of 1..3, got {nodes_seen}")

    if not re.search(rf"^delete '{re.escape(key)}': deleted \(sequence 2\)$", stdout, re.M):
        raise TestFailure(f"no successful delete line:\n{stdout}")
    if f"after the delete, a linearizable read finds nothing on {', '.join(endpoints)}" not in stdout:
        raise TestFailure(f"the key is still found after the delete:\n{stdout}")

    status = table_rows(stdout, "cluster status:")
    if [r[0] for r in status] != endpoints:
        raise TestFailure(f"status rows {status}, expected one per endpoint:\n{stdout}")
    roles = [r[2] for r in status]
    leaders = {r[4] for r in status}
    if roles.count("leader") != 1 or len(leaders) != 1:
        raise TestFailure(f"expected one leader that all nodes name, got roles {roles}, leaders {leaders}")
    leader_row = status[roles.index("leader")]
    if leader_row[1] != next(iter(leaders)):
        raise TestFailure(f"the leader row {leader_row} does not name itself")
    for r in status:
        if len(r) != 8 or r[7] != "1,2,3":
            raise TestFailure(f"status row {r}: expected members 1,2,3 and no error")


def read_text(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def wait_for_text(path, text, proc, timeout_s):
    """Waits until the file at `path` contains `text`, while `proc` runs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in read_text(path):
            return
        if proc.poll() is not None:
            raise TestFailure(f"the example exited ({proc.returncode}) before printing {text!r}:\n"
                              f"{read_text(path)}")
        time.sleep(0.05)
    raise TestFailure(f"the example printed no {text!r} within {timeout_s} s:\n{read_text(path)}")


def check_same_write_identity(stderr):
    """Every retry of the first write resends (client_id, sequence 1)."""
    ids = set(re.findall(r"^retry: Put \(client_id (\d+), sequence (\d+)\)", stderr, re.M))
    if len(ids) != 1 or next(iter(ids))[1] != "1":
        raise TestFailure(f"the retries of the first Put must all carry one client_id and sequence 1, got {ids}")


def run_example(args, extra, timeout_s=60):
    argv = [PYTHON, args.example] + extra
    start = time.monotonic()
    r = run(argv, timeout_s)
    return r, time.monotonic() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--kvserver", required=True)
    parser.add_argument("--kvctl", required=True)
    args = parser.parse_args()
    repo = os.path.abspath(args.repo)
    args.example = os.path.join(repo, "examples", "python", "quorumkv_client.py")
    tmp = tempfile.mkdtemp(prefix="quorumkv-pyclient-")
    group = ProcessGroup(tmp)
    try:
        ports = free_ports(6)
        client = [f"127.0.0.1:{p}" for p in ports[0::2]]
        peer = [f"127.0.0.1:{p}" for p in ports[1::2]]
        cluster = ",".join(f"{i + 1}={peer[i]}@{client[i]}" for i in range(3))
        with group:
            # 1. The example first, then the servers: it must retry.
            out_path, err_path = os.path.join(tmp, "example.out"), os.path.join(tmp, "example.err")
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                example = subprocess.Popen([PYTHON, args.example, "--endpoints", ",".join(client), "--timeout", "30"],
                                           stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            try:
                wait_for_text(err_path, "retry: Put (client_id ", example, timeout_s=30)
                for i in range(3):
                    group.start(f"node{i + 1}", [args.kvserver, f"--id={i + 1}", f"--data-dir={tmp}/node{i + 1}",
                                                f"--client-addr={client[i]}", f"--peer-addr={peer[i]}",
                                                f"--initial-cluster={cluster}"])
                status = example.wait(timeout=60)
            except subprocess.TimeoutExpired as e:
                raise TestFailure("first run: the example did not finish within 60 s of the servers' start") from e
            finally:
                if example.poll() is None:
                    example.kill()
                    example.wait(timeout=10)
            stdout, stderr = read_text(out_path), read_text(err_path)
            if status != 0:
                raise TestFailure(f"first run: exit {status}\nstdout:\n{stdout}\nstderr:\n{stderr}")
            check_output(stdout, client, "examples/python", "hello from Python")
            check_same_write_identity(stderr)
            print(f"run 1 ok ({stderr.count('retry: ')} retried attempts while the servers started)")

            # 2. With stubs generated here, another key and value.
            wait_for_leader(args.kvctl, client, group)
            stubs = os.path.join(tmp, "stubs")
            os.mkdir(stubs)
            proto_dir = os.path.join(repo, "proto")
            g = run(["protoc", f"-I{proto_dir}", f"--python_out={stubs}", f"--grpc_out={stubs}",
                     "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin", os.path.join(proto_dir, "kv.proto")],
                    timeout_s=60)
            if g.returncode != 0:
                raise TestFailure(f"protoc: {g.stderr}")
            key, value = "tests/python/ключ", "value with spaces, ünïcödé"
            r, took = run_example(args, ["--endpoints", ",".join(reversed(client)), "--stubs-dir", stubs,
                                         "--key", key, "--value", value])
            if r.returncode != 0:
                raise TestFailure(f"second run: exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
            check_output(r.stdout, list(reversed(client)), key, value)
            k = kvctl(args.kvctl, client, "get", key)
            if k.returncode != 1 or "key not found" not in k.stderr:
                raise TestFailure(f"kvctl still finds {key!r} after the example deleted it: {k.stdout} {k.stderr}")
            print(f"run 2 ok in {took:.1f} s (pre-generated stubs, endpoints in reverse order)")

            # 3. Errors.
            r, _ = run_example(args, ["--endpoints", "127.0.0.1"])
            if r.returncode != 2 or "--endpoints: \"127.0.0.1\" is not host:port" not in r.stderr:
                raise TestFailure(f"bad --endpoints: exit {r.returncode}, stderr {r.stderr!r}")
            dead = f"127.0.0.1:{free_ports(1)[0]}"
            r, took = run_example(args, ["--endpoints", dead, "--timeout", "2"])
            if r.returncode != 1 or not re.search(r"quorumkv_client: UNAVAILABLE: .*gave up after \d+ attempts",
                                                  r.stderr):
                raise TestFailure(f"dead endpoint: exit {r.returncode}, stderr {r.stderr!r}")
            if took > 15:
                raise TestFailure(f"dead endpoint: the example took {took:.1f} s with --timeout 2")
            print(f"errors ok: usage error exit 2; dead endpoint exit 1 in {took:.1f} s")

            statuses = group.stop_all()
        bad = {n: s for n, s in statuses.items() if s != 0}
        if bad:
            raise TestFailure(f"servers did not exit cleanly on SIGTERM: {bad}\n{group.all_logs()}")
        print("ok")
        return 0
    except (TestFailure, OSError) as e:
        print(f"FAIL: {e}")
        print(group.all_logs())
        return 1
    finally:
        group.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
