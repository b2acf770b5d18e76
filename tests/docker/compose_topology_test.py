#!/usr/bin/env python3
"""ctest docker_topology_as_processes: the cluster of docker/docker-compose.yml,
started as plain kvserver processes with the same flags.

  /usr/bin/python3 tests/docker/compose_topology_test.py --repo . \
      --kvserver build/bin/kvserver --kvctl build/bin/kvctl

Without a Docker engine, this is what can be run of the compose file: each
node service's `command` is given to build/bin/kvserver unchanged except for
what the container provides:
  - the service's network name (node1, node2, ...) and its 0.0.0.0 listen
    addresses become one loopback address per node (127.0.0.21, .22, ...),
    so the ports stay those of the compose file (2379, 2380, 2381);
  - the data dir, a named volume in the container, becomes a directory in a
    temporary directory;
  - --metrics-addr is passed only if this kvserver has the flag (`--help`
    lists metrics_addr); then every node's /metrics must answer.
A leader must be agreed within 30 s (kvctl status); then a write through
each node is read back through every node, linearizable and serializable,
and the members' client addresses must be the advertised ones. The nodes
get SIGTERM and must exit with status 0; the temporary directory goes.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.request

# No __pycache__ in the source tree.
sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import compose_model as cm  # noqa: E402
from local_cluster import ProcessGroup, TestFailure, kvctl, port_is_free, run, wait_for_leader  # noqa: E402

# Loopback blocks tried in turn: node i gets 127.0.0.(base + i). The first
# block whose ports are all free is used (another run may hold one).
LOOPBACK_BASES = (20, 30, 40, 50, 60)
LEADER_TIMEOUT_S = 30
ADDRESS_FLAGS = ("client_addr", "peer_addr", "metrics_addr", "advertise_client_addr", "advertise_peer_addr",
                 "initial_cluster")


def kvserver_has_flag(kvserver, flag):
    r = run([kvserver, "--help"], timeout_s=30)
    return re.search(rf"--{flag}\b", r.stdout + r.stderr) is not None


def translate(value, own_address, addresses):
    """Rewrites the hosts of every host:port in `value`: 0.0.0.0 -> this
    node's loopback address, a service name -> that service's."""
    def host(m):
        h = m.group(1)
        if h == "0.0.0.0":
            return own_address + ":"
        if h in addresses:
            return addresses[h] + ":"
        raise TestFailure(f"{value}: host {h} is neither 0.0.0.0 nor a node service of the compose file")
    return re.sub(r"([A-Za-z0-9_.\-]+):(?=\d+\b)", host, value)


def node_commands(compose, compose_dir, repo_root, kvserver, data_root, addresses, with_metrics):
    """{service: argv} for the node services, per the module docstring."""
    commands = {}
    for name in sorted(addresses):
        service = compose["services"][name]
        mounts = [cm.parse_volume_mount(v, name) for v in service.get("volumes") or []]
        argv = [kvserver]
        for flag, value, written in cm.parse_command(service.get("command"), name, keep_spelling=True):
            if flag == "metrics_addr" and not with_metrics:
                continue
            if flag in ADDRESS_FLAGS:
                value = translate(value, addresses[name], addresses)
            elif flag == "data_dir":
                for source, target, named in mounts:
                    if named and (value == target or value.startswith(target.rstrip("/") + "/")):
                        value = os.path.join(data_root, source) + value[len(target):]
                        break
                else:
                    raise TestFailure(f"{name}: --data-dir {value} is not on a named volume")
            argv.append(f"--{written}={value}")
        commands[name] = argv
    return commands


def listen_ports(compose, names):
    ports = set()
    for name in names:
        for flag, value in cm.parse_command(compose["services"][name].get("command"), name):
            if flag in ("client_addr", "peer_addr", "metrics_addr"):
                ports.add(cm.parse_host_port(value, name)[1])
    return ports


def pick_addresses(names, ports):
    for base in LOOPBACK_BASES:
        addresses = {name: f"127.0.0.{base + i + 1}" for i, name in enumerate(names)}
        if all(port_is_free(a, p) for a in addresses.values() for p in ports):
            return addresses
    raise TestFailure(f"ports {sorted(ports)} are taken on every loopback block tried "
                      f"({', '.join(f'127.0.0.{b + 1}..' for b in LOOPBACK_BASES)})")


def flag_value(argv, flag):
    for a in argv[1:]:
        name, _, value = a[2:].partition("=")
        if cm.normalize_flag(name) == flag:
            return value
    raise TestFailure(f"no --{flag} in {argv}")


def check_metrics(address, timeout_s=5):
    url = f"http://{address}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            body = r.read().decode("utf-8", "replace")
            status = r.status
    except OSError as e:
        raise TestFailure(f"GET {url}: {e}") from e
    if status != 200 or "# TYPE" not in body:
        raise TestFailure(f"GET {url}: status {status}, no Prometheus text format in:\n{body[:500]}")


def exercise(args, commands, group):
    clients = {name: flag_value(argv, "advertise_client_addr") for name, argv in commands.items()}
    endpoints = [clients[n] for n in sorted(clients)]
    leader = wait_for_leader(args.kvctl, endpoints, group, timeout_s=LEADER_TIMEOUT_S)
    print(f"leader: node {leader}")

    for name, endpoint in sorted(clients.items()):
        r = kvctl(args.kvctl, [endpoint], "put", f"topology/{name}", f"written via {name}")
        if r.returncode != 0:
            raise TestFailure(f"put through {name} ({endpoint}): exit {r.returncode}: {r.stderr.strip()}")
    for reader, endpoint in sorted(clients.items()):
        for consistency in ("linearizable", "serializable"):
            for writer in sorted(clients):
                r = kvctl(args.kvctl, [endpoint], "get", f"topology/{writer}", "--consistency", consistency)
                got = r.stdout.rstrip("\n")
                if r.returncode != 0 or got != f"written via {writer}":
                    raise TestFailure(f"{consistency} get of topology/{writer} through {reader} ({endpoint}): "
                                      f"exit {r.returncode}, value {got!r}, stderr {r.stderr.strip()!r}")
    print(f"a write through each of {', '.join(sorted(clients))} read back through every node")

    # The members' client addresses are the advertised ones, as kvctl and
    # the leader hints hand them to clients.
    r = kvctl(args.kvctl, endpoints, "member", "list", "--output", "json")
    if r.returncode != 0:
        raise TestFailure(f"member list: exit {r.returncode}: {r.stderr.strip()}")
    try:
        members = {int(m["id"]): (m.get("peer_address"), m.get("client_address"), m.get("role"))
                   for m in json.loads(r.stdout)["members"]}
    except (ValueError, KeyError, TypeError) as e:
        raise TestFailure(f"kvctl member list --output json printed something else ({e}):\n{r.stdout}") from e
    expected = {int(flag_value(argv, "id")): (flag_value(argv, "advertise_peer_addr"), clients[name], "voter")
                for name, argv in commands.items()}
    if members != expected:
        raise TestFailure(f"members {members}, expected the compose file's {expected}")

    if any("--metrics" in a for argv in commands.values() for a in argv):
        for name, argv in sorted(commands.items()):
            check_metrics(flag_value(argv, "metrics_addr"))
        print("every node serves /metrics")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--kvserver", required=True)
    parser.add_argument("--kvctl", required=True)
    args = parser.parse_args()
    repo = os.path.abspath(args.repo)
    compose_dir = os.path.join(repo, "docker")
    tmp = tempfile.mkdtemp(prefix="quorumkv-topology-")
    group = None
    try:
        compose = cm.load_yaml(os.path.join(compose_dir, "docker-compose.yml"))
        names = cm.node_service_names(compose, compose_dir, repo)
        if len(names) != 3:
            raise TestFailure(f"expected 3 node services in the compose file, found {names}")
        with_metrics = kvserver_has_flag(args.kvserver, "metrics_addr")
        if not with_metrics:
            print("note: this kvserver has no --metrics-addr yet; started without it")
        addresses = pick_addresses(names, listen_ports(compose, names))
        commands = node_commands(compose, compose_dir, repo, args.kvserver, os.path.join(tmp, "volumes"),
                                 addresses, with_metrics)
        group = ProcessGroup(tmp)
        start = time.monotonic()
        with group:
            for name in names:
                print(f"{name} ({addresses[name]}): {' '.join(commands[name][1:])}")
                group.start(name, commands[name])
            exercise(args, commands, group)
            statuses = group.stop_all()
        bad = {n: s for n, s in statuses.items() if s != 0}
        if bad:
            raise TestFailure(f"nodes did not exit cleanly on SIGTERM: {bad}\n{group.all_logs()}")
        print(f"ok: the compose topology ran as processes and stopped cleanly in {time.monotonic() - start:.1f} s")
        return 0
    except (TestFailure, cm.ModelError, OSError) as e:
        print(f"FAIL: {e}")
        if group is not None:
            print(group.all_logs())
        return 1
    finally:
        if group is not None:
            group.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
