"""Reads docker/docker-compose.yml, docker/prometheus.yml and docker/Dockerfile
into plain Python values, for the checks in this folder (no Docker needed).

Errors in the files are reported as ModelError with a message naming the
service and the field, never as a traceback.
"""

import os
import re
import shlex

import yaml


class ModelError(Exception):
    """A file does not have the shape the checks understand."""


KVSERVER_DOCKERFILE = "docker/Dockerfile"


def load_yaml(path):
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise ModelError(f"cannot read {path}: {e}") from e
    except yaml.YAMLError as e:
        raise ModelError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(doc, dict):
        raise ModelError(f"{path}: the top level is not a mapping")
    return doc


def normalize_flag(name):
    """kvserver accepts --data-dir and --data_dir alike; abseil's spelling is
    with underscores."""
    return name.replace("-", "_")


def parse_command(command, where, keep_spelling=False):
    """A kvserver command line (list or string) as [(flag, value)], flag names
    normalized, in order. Accepts --flag=value and --flag value. With
    keep_spelling, [(flag, value, flag as written)]."""
    if isinstance(command, str):
        args = shlex.split(command)
    elif isinstance(command, list) and all(isinstance(a, (str, int)) for a in command):
        args = [str(a) for a in command]
    else:
        raise ModelError(f"{where}: command must be a list of strings or one string")
    flags = []
    seen = set()
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--") or len(a) == 2:
            raise ModelError(f"{where}: \"{a}\" is not a --flag (kvserver takes no positional arguments)")
        if "=" in a:
            name, value = a[2:].split("=", 1)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            name, value = a[2:], args[i + 1]
            i += 2
        else:
            raise ModelError(f"{where}: flag {a} has no value")
        written, name = name, normalize_flag(name)
        if name in seen:
            raise ModelError(f"{where}: flag --{name} is given twice")
        seen.add(name)
        flags.append((name, value, written) if keep_spelling else (name, value))
    return flags


def parse_host_port(text, where):
    """"host:port" -> (host, port). The port must be 1..65535."""
    m = re.fullmatch(r"([A-Za-z0-9_.\-]+):(\d+)", text or "")
    if not m:
        raise ModelError(f"{where}: \"{text}\" is not host:port")
    port = int(m.group(2))
    if not 1 <= port <= 65535:
        raise ModelError(f"{where}: port {port} is not in 1..65535")
    return m.group(1), port


def parse_members(spec, where):
    """--initial-cluster "id=peer[@client],..." -> {id: (peer, client or None)}."""
    members = {}
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        m = re.fullmatch(r"(\d+)=([^@]+)(?:@(.+))?", part)
        if not m or int(m.group(1)) == 0:
            raise ModelError(f"{where}: \"{part}\" is not id=peer_host:port[@client_host:port] (id > 0)")
        node_id = int(m.group(1))
        if node_id in members:
            raise ModelError(f"{where}: node {node_id} is listed twice")
        peer = parse_host_port(m.group(2), f"{where}, node {node_id} peer address")
        client = parse_host_port(m.group(3), f"{where}, node {node_id} client address") if m.group(3) else None
        members[node_id] = (peer, client)
    if not members:
        raise ModelError(f"{where}: no members")
    return members


def parse_port_mapping(entry, where):
    """One `ports:` entry -> dict(host_ip, published, target, protocol).

    Short syntax "[ip:]published:target[/proto]" must be a quoted string:
    YAML 1.1 reads an unquoted 22379:2379 as a base-60 integer.
    """
    if isinstance(entry, dict):
        try:
            return {
                "host_ip": str(entry.get("host_ip", "")),
                "published": int(entry["published"]) if "published" in entry else None,
                "target": int(entry["target"]),
                "protocol": str(entry.get("protocol", "tcp")),
            }
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{where}: long-syntax port mapping {entry!r} needs numeric target/published") from e
    if not isinstance(entry, str):
        raise ModelError(f"{where}: port mapping {entry!r} is not a string; quote it (YAML 1.1 reads "
                         "unquoted a:b as a base-60 number)")
    text, protocol = (entry.split("/", 1) + ["tcp"])[:2]
    parts = text.split(":")
    if len(parts) == 1:
        host_ip, published, target = "", None, parts[0]
    elif len(parts) == 2:
        host_ip, published, target = "", parts[0], parts[1]
    elif len(parts) == 3:
        host_ip, published, target = parts
    else:
        raise ModelError(f"{where}: cannot read port mapping \"{entry}\"")
    try:
        return {"host_ip": host_ip, "published": int(published) if published else None,
                "target": int(target), "protocol": protocol}
    except ValueError as e:
        raise ModelError(f"{where}: port mapping \"{entry}\" is not [ip:]published:target (port ranges are "
                         "not used here)") from e


def parse_volume_mount(entry, where):
    """One service `volumes:` entry -> (source, target, is_named_volume)."""
    if isinstance(entry, dict):
        source, target = entry.get("source"), entry.get("target")
        kind = entry.get("type", "volume")
        if not target:
            raise ModelError(f"{where}: volume {entry!r} has no target")
        return source, target, kind == "volume" and bool(source)
    if not isinstance(entry, str):
        raise ModelError(f"{where}: volume {entry!r} is neither a string nor a mapping")
    parts = entry.split(":")
    if len(parts) == 1:
        return None, parts[0], False  # anonymous volume
    source, target = parts[0], parts[1]
    named = not (source.startswith(".") or source.startswith("/") or source.startswith("~"))
    return source, target, named


def build_dockerfile(service, compose_dir):
    """The Dockerfile a service builds, as a path relative to the build
    context and the context's absolute path; (None, None) without build."""
    build = service.get("build")
    if build is None:
        return None, None
    if isinstance(build, str):
        context, dockerfile = build, "Dockerfile"
    elif isinstance(build, dict):
        context, dockerfile = build.get("context", "."), build.get("dockerfile", "Dockerfile")
    else:
        return None, None
    return dockerfile, os.path.normpath(os.path.join(compose_dir, context))


def node_service_names(compose, compose_dir, repo_root):
    """The services that build kvserver's image (docker/Dockerfile of the
    repository), in name order."""
    names = []
    for name, service in sorted((compose.get("services") or {}).items()):
        if not isinstance(service, dict):
            continue
        dockerfile, context = build_dockerfile(service, compose_dir)
        if dockerfile is not None and os.path.normpath(os.path.join(context, dockerfile)) == \
                os.path.normpath(os.path.join(repo_root, KVSERVER_DOCKERFILE)):
            names.append(name)
    return names


def parse_dockerfile(path):
    """The Dockerfile as stages: [[(INSTRUCTION, arguments), ...], ...].
    Comments dropped, continuation lines joined."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ModelError(f"cannot read {path}: {e}") from e
    instructions = []
    current = ""
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#") and not current:
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not stripped and not current:
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current:
            word, _, rest = current.partition(" ")
            instructions.append((word.upper(), rest.strip()))
        current = ""
    if current.strip():
        raise ModelError(f"{path}: the last instruction ends with a line continuation")
    stages = []
    for inst in instructions:
        if inst[0] == "FROM":
            stages.append([])
        if not stages:
            if inst[0] in ("ARG",):
                continue
            raise ModelError(f"{path}: {inst[0]} before the first FROM")
        stages[-1].append(inst)
    if not stages:
        raise ModelError(f"{path}: no FROM")
    return stages
