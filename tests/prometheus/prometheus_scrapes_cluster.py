#!/usr/bin/python3
"""A real Prometheus server scrapes a three-node quorumkv cluster.

Starts three kvserver processes with --metrics-addr and Debian's `prometheus`
(its own port, config and TSDB directory, all in a temp dir; it never uses
the packaged system service or port 9090), validates the generated config
with `promtool check config`, waits until all three targets are up, writes
keys with kvctl and checks through Prometheus's HTTP API that:

  - exactly one node reports quorumkv_raft_is_leader == 1, out of 3 series,
    and it is the leader kvctl status names;
  - every node's quorumkv_raft_commit_index and applied_index advance by at
    least the number of writes (one Raft entry per Put), and never go back;
  - quorumkv_request_duration_seconds has at least one OK Put sample per
    write, a +Inf bucket equal to its count, and a plausible median.

Every wait is bounded; a failed check prints the query and Prometheus's
answer, then the tail of every process log. Everything started is stopped
and the temp dir removed, whatever happens (QUORUMKV_KEEP_TEST_DIRS=1 keeps
the dir for a post-mortem). Exit status: 0 pass, 1 fail.

  /usr/bin/python3 prometheus_scrapes_cluster.py --kvserver BIN --kvctl BIN
"""

import argparse
import concurrent.futures
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

# No __pycache__ written into the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import local_cluster  # noqa: E402  (tests/python: process group, free ports, kvctl)
from local_cluster import TestFailure  # noqa: E402

JOB = "quorumkv"
WAIT_S = 60           # bound of every wait on the cluster or on Prometheus
WRITES = 300          # keys written between the two commit-index readings
WRITE_WORKERS = 4     # concurrent kvctl processes while writing
PUT_ATTEMPTS = 5      # a put refused with FAILED_PRECONDITION is sent again
# Elections are not what this test is about, and the default 100-200 ms
# election timeout makes leadership churn on a loaded 2-core CI machine
# (a synced LevelDB write can stall a leader that long): 0.5-1 s instead.
ELECTION_TICKS = 50

# Loopback only: a proxy from the environment must not see (or break) the
# test's HTTP and gRPC traffic. Children (kvctl) inherit the cleaned env.
for _var in ("http_proxy", "https_proxy", "all_proxy", "grpc_proxy",
             "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "GRPC_PROXY"):
    os.environ.pop(_var, None)
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def check_prometheus_package(prometheus_bin, promtool_bin):
    """Debian's `prometheus` package must be installed: fail, never skip."""
    r = local_cluster.run(["dpkg-query", "-W", "-f=${Status} ${Version}", "prometheus"], 10)
    if r.returncode != 0 or not r.stdout.startswith("install ok installed"):
        raise TestFailure("Debian's prometheus package is not installed (bash scripts/install-deps.sh, "
                          f"or apt-get install -y prometheus); dpkg-query said: {r.stdout}{r.stderr}".strip())
    for path in (prometheus_bin, promtool_bin):
        if not os.access(path, os.X_OK):
            raise TestFailure(f"{path} is missing or not executable although the prometheus package is installed")
    log(f"prometheus package {r.stdout.split()[-1]}")


def write_config(path, metrics_endpoints):
    """A scrape config for the three metrics endpoints, 1 s interval, each
    target labelled with its node id. JSON is valid YAML, so no YAML
    library is needed to write it."""
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": JOB,
            "metrics_path": "/metrics",
            "static_configs": [{"targets": [endpoint], "labels": {"node": str(node_id)}}
                               for node_id, endpoint in sorted(metrics_endpoints.items())],
        }],
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")


def promtool_check(promtool_bin, config_path):
    r = local_cluster.run([promtool_bin, "check", "config", config_path], 30)
    out = (r.stdout + r.stderr).strip()
    if r.returncode != 0 or "SUCCESS" not in out:
        raise TestFailure(f"promtool check config {config_path} failed (exit {r.returncode}):\n{out}")
    log(f"promtool check config: {out.splitlines()[-1].strip()}")


class Prometheus:
    """The HTTP API of the test's own Prometheus server."""

    def __init__(self, address):
        self.base = f"http://{address}"

    def get(self, path, params=None):
        """(HTTP status, body text); (None, error) when nothing answered."""
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with _HTTP.open(url, timeout=5) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError) as e:
            return None, str(e)

    def get_json(self, path, params=None):
        status, body = self.get(path, params)
        if status != 200:
            raise TestFailure(f"GET {path} {params or ''} answered {status}: {body}")
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise TestFailure(f"GET {path} {params or ''} did not answer JSON: {body[:2000]}") from e
        if doc.get("status") != "success":
            raise TestFailure(f"GET {path} {params or ''} failed: {body[:2000]}")
        return doc["data"]

    def query(self, promql):
        """An instant vector query: ([(labels, float value)], raw answer)."""
        data = self.get_json("/api/v1/query", {"query": promql})
        if data.get("resultType") != "vector":
            raise TestFailure(f"query {promql!r} returned a {data.get('resultType')}, not a vector: {data}")
        samples = [(item["metric"], float(item["value"][1])) for item in data["result"]]
        return samples, json.dumps(data["result"])

    def scalar(self, promql):
        """A query that must answer exactly one sample: (value, raw answer)."""
        samples, raw = self.query(promql)
        if len(samples) != 1:
            raise TestFailure(f"query {promql!r} answered {len(samples)} samples, expected 1: {raw}")
        return samples[0][1], raw

    def by_node(self, promql):
        """{node id: value} of a query whose series carry the `node` label."""
        samples, raw = self.query(promql)
        out = {}
        for labels, value in samples:
            if "node" not in labels:
                raise TestFailure(f"query {promql!r} returned a series without a node label: {raw}")
            out[int(labels["node"])] = value
        return out, raw


def wait_until(what, probe, group, timeout_s=WAIT_S, interval_s=0.5):
    """Calls probe() -> (done, detail) until done, within timeout_s; fails
    with the last detail (the Prometheus answer) otherwise."""
    deadline = time.monotonic() + timeout_s
    detail = "(never probed)"
    while True:
        group.check_running()
        try:
            done, detail = probe()
        except TestFailure as e:
            done, detail = False, str(e)
        if done:
            return detail
        if time.monotonic() >= deadline:
            raise TestFailure(f"timed out after {timeout_s} s waiting until {what}; last answer:\n{detail}")
        time.sleep(interval_s)


def wait_prometheus_ready(prom, group):
    def probe():
        status, body = prom.get("/-/ready")
        return status == 200, f"GET /-/ready: {status} {body.strip()}"
    wait_until("Prometheus is ready", probe, group)


def wait_targets_up(prom, group, metrics_endpoints):
    wanted = set(metrics_endpoints.values())

    def probe():
        data = prom.get_json("/api/v1/targets", {"state": "active"})
        targets = [t for t in data.get("activeTargets", []) if t.get("labels", {}).get("job") == JOB]
        health = {t["labels"].get("instance"): (t.get("health"), t.get("lastError", "")) for t in targets}
        up = {inst for inst, (h, _) in health.items() if h == "up"}
        return up == wanted and len(targets) == len(wanted), json.dumps(health, indent=1)
    wait_until(f"Prometheus reports all {len(wanted)} targets up (/api/v1/targets)", probe, group)

    # The same, as the `up` series a dashboard would use.
    def up_probe():
        values, raw = prom.by_node(f'up{{job="{JOB}"}}')
        return sorted(values) == sorted(metrics_endpoints) and all(v == 1 for v in values.values()), raw
    wait_until(f'up{{job="{JOB}"}} is 1 for every node', up_probe, group)


def kvctl_leader(args, endpoints):
    """The leader id every endpoint agrees on in `kvctl status`, else None."""
    r = local_cluster.kvctl(args.kvctl, endpoints, "--output", "json", "status", timeout_s=2)
    if r.returncode != 0:
        return None, f"kvctl status exit {r.returncode}: {r.stdout}{r.stderr}"
    try:
        rows = json.loads(r.stdout)["endpoints"]
    except (ValueError, KeyError) as e:
        raise TestFailure(f"kvctl status --output json printed something else ({e}): {r.stdout}") from e
    leaders = {row.get("leader_id", 0) for row in rows}
    if len(rows) == len(endpoints) and len(leaders) == 1 and 0 not in leaders:
        return leaders.pop(), r.stdout
    return None, r.stdout


def check_one_leader(prom, group, args, endpoints):
    """sum(is_leader) == 1 over exactly 3 series, and the node Prometheus
    names is the leader kvctl status names. Scrapes of the three nodes are
    not simultaneous, so a leader change between them can show 0 or 2
    leaders for a scrape interval: the check waits for a stable view."""
    def probe():
        total, raw_sum = prom.scalar(f'sum(quorumkv_raft_is_leader{{job="{JOB}"}})')
        count, raw_count = prom.scalar(f'count(quorumkv_raft_is_leader{{job="{JOB}"}})')
        per_node, raw = prom.by_node(f'quorumkv_raft_is_leader{{job="{JOB}"}}')
        detail = (f"sum(quorumkv_raft_is_leader) = {raw_sum}\ncount(quorumkv_raft_is_leader) = {raw_count}\n"
                  f"quorumkv_raft_is_leader = {raw}")
        if total != 1 or count != 3 or any(v not in (0, 1) for v in per_node.values()):
            return False, detail
        prom_leader = next(n for n, v in per_node.items() if v == 1)
        leader, status = kvctl_leader(args, endpoints)
        detail += f"\nkvctl status: {status.strip()}"
        return leader == prom_leader, detail
    wait_until("exactly one of 3 nodes reports quorumkv_raft_is_leader == 1 "
               "and it is the leader kvctl status names", probe, group)
    per_node, _ = prom.by_node(f'quorumkv_raft_is_leader{{job="{JOB}"}}')
    log(f"quorumkv_raft_is_leader by node: {dict(sorted(per_node.items()))} (kvctl status agrees)")


def write_keys(args, endpoints, prefix, count):
    """`count` kvctl puts, a few at a time; every one must succeed.

    kvctl retries UNAVAILABLE and timeouts itself but returns
    FAILED_PRECONDITION at once (client/kv_client.cc, RetryPolicyFor). A
    leader that has briefly lost its quorum refuses a write that way
    without proposing it, so resending is safe; the test does, a bounded
    number of times, and says how often it had to."""
    def put(i):
        key = f"{prefix}-{i:05d}"
        refusals = []
        for _ in range(PUT_ATTEMPTS):
            r = local_cluster.kvctl(args.kvctl, endpoints, "put", key, f"value-{i}", timeout_s=10)
            if r.returncode == 0:
                return len(refusals)
            if "FAILED_PRECONDITION" not in r.stderr:
                break
            refusals.append(r.stderr.strip())
            time.sleep(0.2)
        raise TestFailure(f"kvctl put {key} failed (exit {r.returncode}): {r.stdout}{r.stderr}"
                          + (f"\nafter {len(refusals)} refusals: {refusals}" if refusals else ""))
    start = time.monotonic()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=WRITE_WORKERS)
    try:
        retried = sum(pool.map(put, range(count)))
    finally:
        # A failed put (or SIGTERM) ends the test now, not after the
        # queued puts: only the ones already running are waited for.
        pool.shutdown(wait=True, cancel_futures=True)
    log(f"wrote {count} keys with kvctl in {time.monotonic() - start:.1f} s "
        f"({retried} puts resent after FAILED_PRECONDITION)")


def check_index_advances(prom, group, metric, before, writes):
    want = {n: v + writes for n, v in before.items()}

    def probe():
        now, raw = prom.by_node(f'{metric}{{job="{JOB}"}}')
        ok = sorted(now) == sorted(want) and all(now[n] >= want[n] for n in want)
        return ok, f"{metric} before the writes: {before}\nwanted at least: {want}\nPrometheus now: {raw}"
    wait_until(f"{metric} advances by at least {writes} on every node", probe, group)
    now, _ = prom.by_node(f'{metric}{{job="{JOB}"}}')
    log(f"{metric} by node: {dict(sorted(before.items()))} -> {dict(sorted(now.items()))}")

    # A commit or applied index never goes back on a running node.
    resets, raw = prom.by_node(f'resets({metric}{{job="{JOB}"}}[5m])')
    if sorted(resets) != sorted(before) or any(v != 0 for v in resets.values()):
        raise TestFailure(f"resets({metric}[5m]) should be 0 on every node: {raw}")


def check_latency_histogram(prom, group, writes):
    def probe():
        ok_count, raw = prom.scalar(
            f'sum(quorumkv_request_duration_seconds_count{{job="{JOB}",method="Put",code="OK"}})')
        return ok_count >= writes, f"sum(quorumkv_request_duration_seconds_count{{method=\"Put\",code=\"OK\"}}) = {raw}"
    wait_until(f"the Put latency histogram holds at least {writes} OK samples", probe, group)

    count, raw_count = prom.scalar(f'sum(quorumkv_request_duration_seconds_count{{job="{JOB}",method="Put"}})')
    inf, raw_inf = prom.scalar(f'sum(quorumkv_request_duration_seconds_bucket{{job="{JOB}",method="Put",le="+Inf"}})')
    if count <= 0 or inf != count:
        raise TestFailure(f"Put histogram: the +Inf bucket ({raw_inf}) should equal the count ({raw_count}), > 0")
    total, raw_sum = prom.scalar(f'sum(quorumkv_request_duration_seconds_sum{{job="{JOB}",method="Put"}})')
    median, raw_median = prom.scalar(
        f'histogram_quantile(0.5, sum by (le) (quorumkv_request_duration_seconds_bucket{{job="{JOB}",method="Put"}}))')
    if not (total > 0 and math.isfinite(median) and 0 < median < 30):
        raise TestFailure(f"Put latency looks wrong: sum of seconds {raw_sum}, median {raw_median}")
    log(f"Put latency: {count:.0f} requests, mean {1000 * total / count:.2f} ms, median ~{1000 * median:.2f} ms")


def save_metrics_samples(metrics_endpoints, out_dir):
    """Keeps each node's raw /metrics text, as nodeN.metrics in out_dir
    (for the README sample, or to look at after a run)."""
    os.makedirs(out_dir, exist_ok=True)
    for node_id, endpoint in sorted(metrics_endpoints.items()):
        with _HTTP.open(f"http://{endpoint}/metrics", timeout=5) as resp:
            text = resp.read().decode("utf-8", "replace")
        with open(os.path.join(out_dir, f"node{node_id}.metrics"), "w", encoding="utf-8") as f:
            f.write(text)
    log(f"saved the /metrics text of every node in {out_dir}")


def run_test(args, tmp, group):
    check_prometheus_package(args.prometheus, args.promtool)
    for path in (args.kvserver, args.kvctl):
        if not os.access(path, os.X_OK):
            raise TestFailure(f"{path} is missing or not executable (build it: ninja -C build kvserver kvctl)")

    ports = local_cluster.free_ports(10)
    node_ids = (1, 2, 3)
    client = {n: f"127.0.0.1:{ports[n - 1]}" for n in node_ids}
    peer = {n: f"127.0.0.1:{ports[2 + n]}" for n in node_ids}
    metrics = {n: f"127.0.0.1:{ports[5 + n]}" for n in node_ids}
    prom_address = f"127.0.0.1:{ports[9]}"
    initial_cluster = ",".join(f"{n}={peer[n]}@{client[n]}" for n in node_ids)
    endpoints = [client[n] for n in node_ids]

    config_path = os.path.join(tmp, "prometheus.yml")
    write_config(config_path, metrics)
    promtool_check(args.promtool, config_path)

    for n in node_ids:
        group.start(f"kvserver{n}", [
            args.kvserver, f"--id={n}", f"--data-dir={os.path.join(tmp, f'node{n}')}",
            f"--client-addr={client[n]}", f"--peer-addr={peer[n]}", f"--metrics-addr={metrics[n]}",
            f"--initial-cluster={initial_cluster}", f"--election-ticks={ELECTION_TICKS}"])
    leader = local_cluster.wait_for_leader(args.kvctl, endpoints, group, timeout_s=WAIT_S)
    log(f"cluster up, leader {leader}; client {endpoints}, metrics {list(metrics.values())}")

    group.start("prometheus", [
        args.prometheus, f"--config.file={config_path}", f"--storage.tsdb.path={os.path.join(tmp, 'tsdb')}",
        f"--web.listen-address={prom_address}", "--storage.tsdb.retention.time=1h", "--log.level=info"])
    prom = Prometheus(prom_address)
    wait_prometheus_ready(prom, group)
    wait_targets_up(prom, group, metrics)
    log(f"Prometheus on {prom_address} reports all 3 targets up")

    check_one_leader(prom, group, args, endpoints)

    # Prometheus's latest samples may lag the nodes by a scrape interval,
    # which only makes these readings lower: the checks below stay sound.
    commit_before, _ = prom.by_node(f'quorumkv_raft_commit_index{{job="{JOB}"}}')
    applied_before, _ = prom.by_node(f'quorumkv_raft_applied_index{{job="{JOB}"}}')
    if sorted(commit_before) != list(node_ids) or sorted(applied_before) != list(node_ids):
        raise TestFailure(f"commit/applied index not reported by every node: {commit_before} {applied_before}")
    log(f"before the writes: commit index {dict(sorted(commit_before.items()))}, "
        f"applied index {dict(sorted(applied_before.items()))}")

    write_keys(args, endpoints, "prom", WRITES)
    check_index_advances(prom, group, "quorumkv_raft_commit_index", commit_before, WRITES)
    check_index_advances(prom, group, "quorumkv_raft_applied_index", applied_before, WRITES)
    check_latency_histogram(prom, group, WRITES)
    # Leadership is still unique after the load.
    check_one_leader(prom, group, args, endpoints)

    if args.save_metrics:
        save_metrics_samples(metrics, args.save_metrics)

    # Every target is still up after the load.
    wait_targets_up(prom, group, metrics)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kvserver", required=True)
    parser.add_argument("--kvctl", required=True)
    parser.add_argument("--prometheus", default="/usr/bin/prometheus")
    parser.add_argument("--promtool", default="/usr/bin/promtool")
    parser.add_argument("--save-metrics", metavar="DIR",
                        help="after the checks, write each node's raw /metrics text to DIR/nodeN.metrics")
    args = parser.parse_args()

    # ctest (or a user) stopping the test with SIGTERM still gets every
    # process stopped and the temp dir removed: SystemExit unwinds main().
    def on_sigterm(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the clean-up finish
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, on_sigterm)
    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="quorumkv-prometheus-")
    keep = os.environ.get("QUORUMKV_KEEP_TEST_DIRS") == "1"
    failed = False
    group = local_cluster.ProcessGroup(tmp)
    try:
        with group:
            try:
                run_test(args, tmp, group)
            except TestFailure as e:
                failed = True
                print(f"FAIL: {e}\n\n{group.all_logs(40)}", file=sys.stderr, flush=True)
        statuses = group.stop_all()
        log(f"stopped {statuses}")
    finally:
        if keep:
            print(f"test dir kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        return 1
    log(f"PASS in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
