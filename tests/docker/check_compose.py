#!/usr/bin/env python3
"""ctest docker_compose_config: checks docker/ without a Docker engine.

  /usr/bin/python3 tests/docker/check_compose.py --repo . --kvctl build/bin/kvctl

What must agree, and why each matters on a real `docker compose up`:
  - three kvserver services (built from docker/Dockerfile) and a prometheus
    service, nothing else;
  - each node's --id is its service number and unique; it listens on
    0.0.0.0 (a container's loopback is unreachable from the others);
    it advertises its own service name (the compose network's DNS name)
    with the ports it listens on;
  - --initial-cluster is the same on every node and lists every node with
    exactly the addresses that node advertises (a mismatch means peers dial
    a wrong address, or a node is founded into a different cluster);
  - --data-dir is the mount point of a named volume of its own, declared at
    the top level (else the data lives in the container and dies with it);
  - the published client ports are kvctl's default endpoints, one per node;
  - prometheus.yml scrapes exactly node:metrics-port of every node, every
    5 s; the prometheus service mounts that file where --config.file says;
  - the Dockerfile's final stage runs kvserver, exposes exactly the ports
    the nodes use, declares the data dir a volume and runs as non-root;
  - .dockerignore keeps build trees and cluster data out of the context.

If `docker compose` works here, `docker compose config -q` runs too (it
does not on the CI machine: no compose plugin), as an extra; so does
`promtool check config` on prometheus.yml when promtool is installed.

Exit status 0 when everything agrees; 1 with one line per problem.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

# No __pycache__ in the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compose_model as cm  # noqa: E402

# The nodes' ports inside the compose network must be the image's EXPOSEd
# ports; these are the flags that carry them.
LISTEN_FLAGS = ("client_addr", "peer_addr", "metrics_addr")
REQUIRED_FLAGS = ("id", "data_dir", "client_addr", "peer_addr", "metrics_addr", "advertise_client_addr",
                  "advertise_peer_addr", "initial_cluster")
PROMETHEUS_DEFAULT_CONFIG = "/etc/prometheus/prometheus.yml"
SCRAPE_INTERVAL = "5s"
RESTART_POLICIES = ("always", "unless-stopped", "on-failure")


class Inputs:
    """Everything the check reads, loaded once (the mutation tests edit
    copies of these values)."""

    def __init__(self, repo_root, default_endpoints):
        self.repo_root = os.path.abspath(repo_root)
        self.compose_dir = os.path.join(self.repo_root, "docker")
        self.compose_path = os.path.join(self.compose_dir, "docker-compose.yml")
        self.compose = cm.load_yaml(self.compose_path)
        self.prometheus_path = os.path.join(self.compose_dir, "prometheus.yml")
        self.prometheus = cm.load_yaml(self.prometheus_path)
        self.dockerfile_path = os.path.join(self.repo_root, cm.KVSERVER_DOCKERFILE)
        self.dockerfile = cm.parse_dockerfile(self.dockerfile_path)
        ignore_path = os.path.join(self.repo_root, ".dockerignore")
        try:
            with open(ignore_path, encoding="utf-8") as f:
                self.dockerignore = [l.strip() for l in f if l.strip() and not l.strip().startswith("#")]
        except OSError:
            self.dockerignore = None
        self.default_endpoints = default_endpoints


def default_endpoints_of(kvctl):
    """kvctl's built-in endpoints, read from its --help."""
    r = subprocess.run([kvctl, "--help"], capture_output=True, text=True, timeout=30)
    m = re.search(r"\b(127\.0\.0\.1:\d+(?:,127\.0\.0\.1:\d+)+)", r.stdout + r.stderr)
    if not m:
        raise cm.ModelError(f"{kvctl} --help names no default endpoints (127.0.0.1:P,...)")
    return [cm.parse_host_port(e, "kvctl default endpoint") for e in m.group(1).split(",")]


def dns_names(name, service):
    """The names other containers of the compose network resolve to this
    service: its service name, container_name and network aliases."""
    names = {name}
    if isinstance(service.get("container_name"), str):
        names.add(service["container_name"])
    networks = service.get("networks")
    if isinstance(networks, dict):
        for net in networks.values():
            if isinstance(net, dict):
                names.update(a for a in net.get("aliases") or [] if isinstance(a, str))
    return names


def check_nodes(inp, errors):
    """Checks the kvserver services; returns {service: info} for the rest."""
    services = inp.compose.get("services")
    if not isinstance(services, dict) or not services:
        errors.append("docker-compose.yml: no services")
        return {}
    names = cm.node_service_names(inp.compose, inp.compose_dir, inp.repo_root)
    if len(names) != 3:
        errors.append(f"docker-compose.yml: expected 3 services built from {cm.KVSERVER_DOCKERFILE}, found "
                      f"{len(names)} ({', '.join(names) or 'none'})")
    others = sorted(set(services) - set(names))
    if others != ["prometheus"]:
        errors.append(f"docker-compose.yml: expected one other service, prometheus; found {others}")
    declared_volumes = inp.compose.get("volumes") or {}
    if not isinstance(declared_volumes, dict):
        errors.append("docker-compose.yml: top-level volumes is not a mapping")
        declared_volumes = {}

    nodes = {}
    for name in names:
        service = services[name]
        where = f"docker-compose.yml: {name}"
        try:
            flags = dict(cm.parse_command(service.get("command"), where))
        except cm.ModelError as e:
            errors.append(str(e))
            continue
        missing = [f for f in REQUIRED_FLAGS if f not in flags]
        if missing:
            errors.append(f"{where}: missing flags {', '.join('--' + m.replace('_', '-') for m in missing)}")
            continue
        info = {"flags": flags}
        m = re.fullmatch(r"node(\d+)", name)
        if not m:
            errors.append(f"{where}: name the kvserver services nodeN (N = --id)")
        if not flags["id"].isdigit() or int(flags["id"]) == 0:
            errors.append(f"{where}: --id \"{flags['id']}\" is not a number > 0")
            continue
        info["id"] = int(flags["id"])
        if m and int(m.group(1)) != info["id"]:
            errors.append(f"{where}: --id {info['id']} does not match the service name {name}")
        try:
            for f in LISTEN_FLAGS:
                info[f] = cm.parse_host_port(flags[f], f"{where} --{f.replace('_', '-')}")
            for f in ("advertise_client_addr", "advertise_peer_addr"):
                info[f] = cm.parse_host_port(flags[f], f"{where} --{f.replace('_', '-')}")
            info["members"] = cm.parse_members(flags["initial_cluster"], f"{where} --initial-cluster")
        except cm.ModelError as e:
            errors.append(str(e))
            continue
        for f in LISTEN_FLAGS:
            if info[f][0] != "0.0.0.0":
                errors.append(f"{where}: --{f.replace('_', '-')} listens on {info[f][0]}; use 0.0.0.0 so the "
                              "other containers and the published port reach it")
        ports = [info[f][1] for f in LISTEN_FLAGS]
        if len(set(ports)) != len(ports):
            errors.append(f"{where}: client, peer and metrics ports must differ, got {ports}")
        names_here = dns_names(name, service)
        for adv, listen in (("advertise_client_addr", "client_addr"), ("advertise_peer_addr", "peer_addr")):
            host, port = info[adv]
            if host not in names_here:
                errors.append(f"{where}: --{adv.replace('_', '-')} host \"{host}\" is not this service's network "
                              f"name ({', '.join(sorted(names_here))})")
            if port != info[listen][1]:
                errors.append(f"{where}: --{adv.replace('_', '-')} port {port} differs from --"
                              f"{listen.replace('_', '-')} port {info[listen][1]}")

        # The data dir must be a named volume of its own.
        mounts = []
        for entry in service.get("volumes") or []:
            try:
                mounts.append(cm.parse_volume_mount(entry, where))
            except cm.ModelError as e:
                errors.append(str(e))
        data_mounts = [mnt for mnt in mounts if mnt[1] == flags["data_dir"]]
        if not data_mounts:
            errors.append(f"{where}: --data-dir {flags['data_dir']} is not a volume mount point; the data would "
                          "die with the container")
        elif not data_mounts[0][2]:
            errors.append(f"{where}: --data-dir {flags['data_dir']} is mounted from {data_mounts[0][0]!r}, not "
                          "a named volume")
        else:
            info["volume"] = data_mounts[0][0]
            if info["volume"] not in declared_volumes:
                errors.append(f"{where}: volume {info['volume']} is not declared under the top-level volumes")

        # Published ports.
        info["published"] = []
        for entry in service.get("ports") or []:
            try:
                info["published"].append(cm.parse_port_mapping(entry, where))
            except cm.ModelError as e:
                errors.append(str(e))

        restart = service.get("restart")
        if not isinstance(restart, str) or restart.split(":")[0] not in RESTART_POLICIES:
            errors.append(f"{where}: restart policy {restart!r}; use one of {', '.join(RESTART_POLICIES)}")

        health = service.get("healthcheck")
        if health is not None:
            test = health.get("test") if isinstance(health, dict) else None
            text = " ".join(test) if isinstance(test, list) else str(test)
            if not re.search(rf"(127\.0\.0\.1|localhost):{info['client_addr'][1]}\b", text):
                errors.append(f"{where}: the healthcheck does not ask this node's client port "
                              f"{info['client_addr'][1]}: {text}")
        nodes[name] = info
    return nodes


def check_cluster(inp, nodes, errors):
    """What must agree across the nodes."""
    ids = [info["id"] for info in nodes.values()]
    if len(set(ids)) != len(ids):
        errors.append(f"docker-compose.yml: node ids are not unique: {sorted(ids)}")
    volumes = [info.get("volume") for info in nodes.values() if info.get("volume")]
    if len(set(volumes)) != len(volumes):
        errors.append(f"docker-compose.yml: nodes share a data volume: {sorted(volumes)}")

    specs = {name: info["members"] for name, info in nodes.items()}
    if len({repr(sorted(m.items())) for m in specs.values()}) > 1:
        errors.append("docker-compose.yml: --initial-cluster differs between nodes: " +
                      "; ".join(f"{n}: {nodes[n]['flags']['initial_cluster']}" for n in sorted(nodes)))
    for name, info in sorted(nodes.items()):
        members = info["members"]
        if sorted(members) != sorted(ids):
            errors.append(f"docker-compose.yml: {name} --initial-cluster lists ids {sorted(members)}, the nodes "
                          f"are {sorted(ids)}")
        for other_name, other in sorted(nodes.items()):
            entry = members.get(other["id"])
            if entry is None:
                continue
            peer, client = entry
            if peer != other["advertise_peer_addr"]:
                errors.append(f"docker-compose.yml: {name} --initial-cluster gives node {other['id']} peer "
                              f"{peer[0]}:{peer[1]}, {other_name} advertises "
                              f"{other['advertise_peer_addr'][0]}:{other['advertise_peer_addr'][1]}")
            if client != other["advertise_client_addr"]:
                shown = f"{client[0]}:{client[1]}" if client else "no client address"
                errors.append(f"docker-compose.yml: {name} --initial-cluster gives node {other['id']} {shown}, "
                              f"{other_name} advertises {other['advertise_client_addr'][0]}:"
                              f"{other['advertise_client_addr'][1]}")

    # The published client ports are kvctl's default endpoints, in id order.
    by_id = sorted(nodes.values(), key=lambda i: i["id"])
    expected = inp.default_endpoints
    if len(expected) != len(by_id):
        errors.append(f"kvctl has {len(expected)} default endpoints, the compose file {len(by_id)} nodes")
    for info, (_, want_port) in zip(by_id, expected):
        client_port = info["client_addr"][1]
        mappings = [p for p in info["published"] if p["target"] == client_port and p["protocol"] == "tcp"]
        if len(mappings) != 1:
            errors.append(f"docker-compose.yml: node {info['id']} publishes its client port {client_port} "
                          f"{len(mappings)} times; expected once, on host port {want_port}")
            continue
        p = mappings[0]
        if p["published"] != want_port:
            errors.append(f"docker-compose.yml: node {info['id']} publishes client port {client_port} on host "
                          f"port {p['published']}; kvctl's default endpoint for it is 127.0.0.1:{want_port}")
        if p["host_ip"] not in ("", "0.0.0.0", "127.0.0.1"):
            errors.append(f"docker-compose.yml: node {info['id']} publishes on {p['host_ip']}, which kvctl's "
                          "default 127.0.0.1 endpoints do not reach")
    published = [p["published"] for info in nodes.values() for p in info["published"] if p["published"]]
    prom = (inp.compose.get("services") or {}).get("prometheus")
    if isinstance(prom, dict):
        for entry in prom.get("ports") or []:
            try:
                published.append(cm.parse_port_mapping(entry, "prometheus")["published"])
            except cm.ModelError:
                pass  # reported by check_prometheus
    if len(set(published)) != len(published):
        errors.append(f"docker-compose.yml: a host port is published twice: {sorted(published)}")


def check_dockerfile(inp, nodes, errors):
    where = cm.KVSERVER_DOCKERFILE
    for stage in inp.dockerfile:
        base = stage[0][1].split()[0]
        if not re.fullmatch(r"debian:(bookworm|12)(-slim|\.\d+(-slim)?)?", base):
            errors.append(f"{where}: stage FROM {base}; the stages must be Debian 12 (debian:bookworm-slim)")
    if len(inp.dockerfile) < 2:
        errors.append(f"{where}: expected a build stage and a run stage")
    else:
        build_text = " ".join(a for _, a in inp.dockerfile[0])
        for needed in ("scripts/install-deps.sh", "ninja -C build kvserver kvctl"):
            if needed not in build_text:
                errors.append(f"{where}: the build stage does not run \"{needed}\"")
    final = inp.dockerfile[-1]
    entrypoints = [a for i, a in final if i == "ENTRYPOINT"]
    if not entrypoints:
        errors.append(f"{where}: the final stage has no ENTRYPOINT")
    else:
        try:
            ep = json.loads(entrypoints[-1])
        except ValueError:
            ep = None
        if not (isinstance(ep, list) and ep and os.path.basename(ep[0]) == "kvserver"):
            errors.append(f"{where}: ENTRYPOINT {entrypoints[-1]} is not the exec form [\"kvserver\", ...]; the "
                          "compose commands are kvserver flags")
    exposed = set()
    for i, a in final:
        if i == "EXPOSE":
            for tok in a.split():
                port = tok.split("/")[0]
                if not port.isdigit():
                    errors.append(f"{where}: EXPOSE {tok} is not a port number")
                else:
                    exposed.add(int(port))
    used = {info[f][1] for info in nodes.values() for f in LISTEN_FLAGS}
    if exposed != used:
        errors.append(f"{where}: EXPOSE {sorted(exposed)} differs from the ports the nodes listen on {sorted(used)}")
    volumes = set()
    for i, a in final:
        if i == "VOLUME":
            try:
                v = json.loads(a)
                volumes.update(v if isinstance(v, list) else [v])
            except ValueError:
                volumes.update(a.split())
    for name, info in sorted(nodes.items()):
        if info["flags"]["data_dir"] not in volumes:
            errors.append(f"{where}: {name}'s --data-dir {info['flags']['data_dir']} is not a VOLUME of the image")
    users = [a.split(":")[0] for i, a in final if i == "USER"]
    if not users or users[-1] in ("root", "0"):
        errors.append(f"{where}: the final stage must switch to a non-root USER")
    if inp.dockerignore is None:
        errors.append(".dockerignore: missing at the repository root (the build context)")
    else:
        # "build*" covers both build trees; else each is listed.
        for needed, alternative in (("build", "build*"), ("build-*", "build*"), ("cluster-data", None)):
            if needed not in inp.dockerignore and alternative not in inp.dockerignore:
                errors.append(f".dockerignore: does not exclude {needed}")


def check_prometheus(inp, nodes, errors):
    where = "docker-compose.yml: prometheus"
    prom = (inp.compose.get("services") or {}).get("prometheus")
    if not isinstance(prom, dict):
        errors.append(f"{where}: no prometheus service")
        return
    if not str(prom.get("image", "")).startswith("prom/prometheus"):
        errors.append(f"{where}: image {prom.get('image')!r} is not prom/prometheus")
    config_path = PROMETHEUS_DEFAULT_CONFIG
    command = prom.get("command")
    if command is not None:
        args = command if isinstance(command, list) else command.split()
        for a in args:
            if str(a).startswith("--config.file="):
                config_path = str(a).split("=", 1)[1]
    mounted = False
    for entry in prom.get("volumes") or []:
        try:
            source, target, named = cm.parse_volume_mount(entry, where)
        except cm.ModelError as e:
            errors.append(str(e))
            continue
        if not named and source and target == config_path:
            mounted = os.path.normpath(os.path.join(inp.compose_dir, source)) == \
                os.path.normpath(inp.prometheus_path)
    if not mounted:
        errors.append(f"{where}: docker/prometheus.yml is not mounted at {config_path} (--config.file)")
    ports = []
    for entry in prom.get("ports") or []:
        try:
            ports.append(cm.parse_port_mapping(entry, where))
        except cm.ModelError as e:
            errors.append(str(e))
    if not any(p["target"] == 9090 and p["published"] == 9090 for p in ports):
        errors.append(f"{where}: port 9090 is not published as 9090")

    cfg = inp.prometheus
    global_interval = (cfg.get("global") or {}).get("scrape_interval", "1m")
    targets = []
    jobs = cfg.get("scrape_configs")
    if not isinstance(jobs, list) or not jobs:
        errors.append("prometheus.yml: no scrape_configs")
        jobs = []
    for job in jobs:
        name = job.get("job_name", "?")
        interval = job.get("scrape_interval", global_interval)
        if interval != SCRAPE_INTERVAL:
            errors.append(f"prometheus.yml: job {name} scrapes every {interval}, expected {SCRAPE_INTERVAL}")
        if job.get("metrics_path", "/metrics") != "/metrics" or job.get("scheme", "http") != "http":
            errors.append(f"prometheus.yml: job {name} must scrape http://.../metrics")
        for sc in job.get("static_configs") or []:
            targets.extend(str(t) for t in sc.get("targets") or [])
    expected = sorted(f"{name}:{info['metrics_addr'][1]}" for name, info in nodes.items())
    if sorted(targets) != expected:
        errors.append(f"prometheus.yml: scrapes {sorted(targets)}; expected exactly the nodes' metrics "
                      f"addresses {expected}")


def check(inp):
    """All the checks; returns the problems found, one string each."""
    errors = []
    nodes = check_nodes(inp, errors)
    if nodes:
        check_cluster(inp, nodes, errors)
    check_dockerfile(inp, nodes, errors)
    check_prometheus(inp, nodes, errors)
    return errors


def docker_compose_config(inp):
    """`docker compose config -q` if the compose plugin is installed; None
    when it is not (the check does not depend on it)."""
    try:
        v = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if v.returncode != 0:
        return None
    r = subprocess.run(["docker", "compose", "-f", inp.compose_path, "config", "-q"], capture_output=True,
                       text=True, timeout=60)
    return (r.returncode, r.stdout + r.stderr)


def promtool_check(inp):
    """`promtool check config` on prometheus.yml (Debian's prometheus
    package, in scripts/install-deps.sh); None when promtool is absent."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return None
    r = subprocess.run([promtool, "check", "config", inp.prometheus_path], capture_output=True, text=True,
                       timeout=60)
    return (r.returncode, (r.stdout + r.stderr).strip())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", required=True, help="the repository root")
    parser.add_argument("--kvctl", required=True, help="path of the built kvctl (for its default endpoints)")
    args = parser.parse_args()
    try:
        inp = Inputs(args.repo, default_endpoints_of(args.kvctl))
        errors = check(inp)
    except cm.ModelError as e:
        print(f"FAIL: {e}")
        return 1
    compose = docker_compose_config(inp)
    if compose is None:
        print("note: `docker compose` is not available here; the checks below do not need it")
    elif compose[0] != 0:
        errors.append(f"docker compose config: {compose[1].strip()}")
    else:
        print("docker compose config: ok")
    promtool = promtool_check(inp)
    if promtool is None:
        print("note: promtool is not installed (Debian package prometheus): prometheus.yml's syntax unchecked")
    elif promtool[0] != 0:
        errors.append(f"promtool check config {inp.prometheus_path}: {promtool[1]}")
    else:
        print("promtool check config: ok")
    if errors:
        for e in errors:
            print(f"FAIL: {e}")
        return 1
    nodes = cm.node_service_names(inp.compose, inp.compose_dir, inp.repo_root)
    print(f"ok: {', '.join(nodes)} and prometheus agree with each other, prometheus.yml, the Dockerfile, "
          f".dockerignore and kvctl's default endpoints "
          f"({', '.join(f'{h}:{p}' for h, p in inp.default_endpoints)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
