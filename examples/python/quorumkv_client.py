#!/usr/bin/env python3
"""A quorumkv client in Python, over the gRPC API of proto/kv.proto.

It writes a key, reads it back from every node at every consistency level,
deletes it, and prints the status of every node:

  /usr/bin/python3 examples/python/quorumkv_client.py \
      --endpoints 127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379

Needs, on Debian 12: python3-grpcio and python3-protobuf (for /usr/bin/python3),
and protoc with gRPC's Python plugin (protobuf-compiler, protobuf-compiler-grpc)
to generate the stubs. The example generates them into a temporary directory
each time it starts; to generate them once instead:

  protoc -I proto --python_out=DIR --grpc_out=DIR \
      --plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin proto/kv.proto

and pass --stubs-dir DIR.

What any quorumkv client has to get right, and where it is done below:
  - Any node serves any call: followers forward writes to the leader and
    serve linearizable reads themselves. Sending writes to the leader saves
    a hop, nothing more. (Client._endpoint_for)
  - Retry UNAVAILABLE (no leader yet, node starting or stopping, connection
    refused), RESOURCE_EXHAUSTED (back-pressure) and an attempt's
    DEADLINE_EXCEEDED, with exponential back-off, preferably on another
    node. Every other code is an answer: return it. (RETRYABLE, Client._call)
  - A write carries (client_id, sequence), and a retry resends the very same
    pair: the cluster applies it once even if the first attempt took effect
    before its answer was lost (Raft thesis §6.3). One write at a time per
    client_id, sequences increasing. (Client.put, Client.delete)
  - A refusal may say where the leader is: trailers "quorumkv-leader-id"
    (node id) and "quorumkv-leader-address" (its advertised client address).
    (Client._leader_hint)
  - A write that fails after its retries may still take effect (once),
    unless every attempt was refused with the trailer "quorumkv-not-proposed"
    (refused before Raft saw it). The error says which. (Client._call)
  - SERIALIZABLE reads are served from one node's applied state and may be
    stale; LINEARIZABLE (the default) and LEASE are not. (main)
"""

import argparse
import importlib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

import grpc

LEADER_ID_TRAILER = "quorumkv-leader-id"
LEADER_ADDRESS_TRAILER = "quorumkv-leader-address"
# On a refusal: the node refused the request before proposing it to Raft, so
# this attempt surely did not take effect.
NOT_PROPOSED_TRAILER = "quorumkv-not-proposed"

# Codes that mean "not now, maybe elsewhere": safe to retry for reads (no
# side effect) and for writes (same client_id and sequence: applied once).
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED)

# gRPC reconnects to a node that was down after a back-off that starts at 1 s
# and grows to 2 minutes by default; a cluster client wants a restarted node
# back within a couple of seconds.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
]

REPO_ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


class QuorumKvError(Exception):
    """A call failed: with a code that is an answer, or after its retries."""

    def __init__(self, code, message):
        super().__init__(f"{code.name}: {message}")
        self.code = code


def generate_stubs(proto_file, out_dir):
    """Runs protoc with gRPC's Python plugin: writes kv_pb2.py (messages) and
    kv_pb2_grpc.py (service stubs) into out_dir."""
    protoc = shutil.which("protoc")
    plugin = shutil.which("grpc_python_plugin") or "/usr/bin/grpc_python_plugin"
    if protoc is None or not os.path.exists(plugin):
        raise SystemExit("quorumkv_client: protoc and grpc_python_plugin are needed to generate the stubs "
                         "(Debian: apt-get install protobuf-compiler protobuf-compiler-grpc), or pass --stubs-dir")
    r = subprocess.run([protoc, f"-I{os.path.dirname(proto_file)}", f"--python_out={out_dir}",
                        f"--grpc_out={out_dir}", f"--plugin=protoc-gen-grpc={plugin}", proto_file],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise SystemExit(f"quorumkv_client: protoc failed on {proto_file}: {r.stderr.strip()}")


def import_stubs(stubs_dir):
    """Imports kv_pb2 and kv_pb2_grpc from stubs_dir."""
    if not os.path.exists(os.path.join(stubs_dir, "kv_pb2_grpc.py")):
        raise SystemExit(f"quorumkv_client: no kv_pb2_grpc.py in {stubs_dir}")
    sys.path.insert(0, stubs_dir)
    try:
        return importlib.import_module("kv_pb2"), importlib.import_module("kv_pb2_grpc")
    finally:
        sys.path.remove(stubs_dir)


class Client:
    """Talks to the nodes at `endpoints` (host:port each) of one cluster.

    pb, pb_grpc: the generated modules kv_pb2 and kv_pb2_grpc.
    Not thread-safe: one call at a time (a client_id has one write
    outstanding at a time).
    """

    def __init__(self, endpoints, pb, pb_grpc, attempt_timeout_s=2.0, total_timeout_s=15.0, client_id=None,
                 log=None):
        self.endpoints = list(endpoints)
        self.pb = pb
        self._attempt_timeout_s = attempt_timeout_s
        self._total_timeout_s = total_timeout_s
        self._channels = [grpc.insecure_channel(e, options=CHANNEL_OPTIONS) for e in self.endpoints]
        self._kv = [pb_grpc.KVStub(c) for c in self._channels]
        self._cluster = [pb_grpc.ClusterStub(c) for c in self._channels]
        self._log = log or (lambda text: print(text, file=sys.stderr))
        self._random = random.Random()
        # Which node answers at which endpoint, learned from the header of
        # every response (node id -> endpoint index).
        self._index_of_node = {}
        self._leader = None  # endpoint index of the leader, if known
        self._last_good = 0  # endpoint index that answered last
        # The write session: any random non-zero 64-bit id, and the number
        # of the last write sent.
        self.client_id = client_id or self._random.randrange(1, 2**64)
        self.sequence = 0

    def close(self):
        for c in self._channels:
            c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # --- the API -----------------------------------------------------------

    def put(self, key, value):
        """Writes key = value; returns the PutResponse."""
        self.sequence += 1
        request = self.pb.PutRequest(key=key.encode(), value=value.encode(), client_id=self.client_id,
                                     sequence=self.sequence)
        return self._call(self._kv, "Put", request, write=True)

    def delete(self, key):
        """Deletes key; returns the DeleteResponse (deleted: the key existed)."""
        self.sequence += 1
        request = self.pb.DeleteRequest(key=key.encode(), client_id=self.client_id, sequence=self.sequence)
        return self._call(self._kv, "Delete", request, write=True)

    def get(self, key, consistency, endpoint=None):
        """Reads key at `consistency` (pb.LINEARIZABLE, LEASE, SERIALIZABLE);
        from the given endpoint only (retrying there) when one is named,
        else from any. Returns the GetResponse (found, value, header)."""
        request = self.pb.GetRequest(key=key.encode(), consistency=consistency)
        pinned = None if endpoint is None else self.endpoints.index(endpoint)
        return self._call(self._kv, "Get", request, pinned=pinned)

    def status(self, endpoint):
        """Cluster.Status of one node, one attempt: a status table should
        show a node that does not answer, not wait for it."""
        index = self.endpoints.index(endpoint)
        try:
            response = self._cluster[index].Status(self.pb.StatusRequest(), timeout=self._attempt_timeout_s)
        except grpc.RpcError as e:
            raise QuorumKvError(e.code(), f"{endpoint}: {e.details()}") from None
        self._learn(index, response.header.node_id)
        if response.leader_id in self._index_of_node:
            self._leader = self._index_of_node[response.leader_id]
        return response

    # --- retries and leader discovery ----------------------------------------

    def _call(self, stubs, method, request, write=False, pinned=None):
        """Sends `request` until it gets an answer, a non-retryable error,
        or the total timeout passes. The request object is the same on every
        attempt, so a write keeps its (client_id, sequence)."""
        deadline = time.monotonic() + self._total_timeout_s
        index = pinned if pinned is not None else self._endpoint_for(write)
        attempt = 0
        may_have_taken_effect = False  # some failed attempt of this write may have been applied
        while True:
            attempt += 1
            timeout = max(0.01, min(self._attempt_timeout_s, deadline - time.monotonic()))
            try:
                response = getattr(stubs[index], method)(request, timeout=timeout)
            except grpc.RpcError as e:
                code, details = e.code(), e.details()
                retryable = code in RETRYABLE and not (
                    # gRPC's own refusal of an oversized message has this code too,
                    # and it is permanent.
                    code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in (details or ""))
                if not retryable:
                    raise QuorumKvError(code, f"{self.endpoints[index]}: {details}") from None
                trailers = dict(e.trailing_metadata() or ())
                if NOT_PROPOSED_TRAILER not in trailers:
                    may_have_taken_effect = True
                hint = self._leader_hint(trailers)
                if pinned is None and hint is not None and hint != index:
                    # Told where the leader is: go there now, no back-off.
                    delay, next_index = 0.0, hint
                else:
                    delay = min(0.5, 0.02 * 2 ** (attempt - 1)) * self._random.uniform(0.5, 1.0)
                    next_index = index if pinned is not None else (index + 1) % len(self.endpoints)
                if time.monotonic() + delay >= deadline:
                    outcome = ""
                    if write:
                        outcome = ("; the write may still take effect, once" if may_have_taken_effect
                                   else "; the write did not take effect")
                    raise QuorumKvError(code, f"{self.endpoints[index]}: {details} (gave up after {attempt} "
                                              f"attempts in {self._total_timeout_s:g} s{outcome})") from None
                sequence = f" (client_id {request.client_id}, sequence {request.sequence})" if write else ""
                self._log(f"retry: {method}{sequence} on {self.endpoints[index]} failed with {code.name} "
                          f"({details}); next attempt on {self.endpoints[next_index]} in {delay * 1000:.0f} ms")
                time.sleep(delay)
                index = next_index
                continue
            self._learn(index, response.header.node_id)
            self._last_good = index
            return response

    def _endpoint_for(self, write):
        """Writes go to the leader if known (a follower would forward them);
        reads and the rest to the endpoint that answered last."""
        if write and self._leader is not None:
            return self._leader
        return self._last_good

    def _learn(self, index, node_id):
        if node_id:
            self._index_of_node[node_id] = index

    def _leader_hint(self, trailers):
        """The endpoint index of the leader named by an error's trailers, if
        it is one of ours. The leader's id is mapped through what the
        headers taught us; its advertised address is used only if it is one
        of our endpoints, because it may be a name only the cluster's own
        network resolves (node2:2379 in docker compose)."""
        leader_id = trailers.get(LEADER_ID_TRAILER, "")
        if not str(leader_id).isdigit() or int(leader_id) == 0:
            return None
        leader_id = int(leader_id)
        index = self._index_of_node.get(leader_id)
        address = trailers.get(LEADER_ADDRESS_TRAILER)
        if index is None and address in self.endpoints:
            index = self.endpoints.index(address)
            self._learn(index, leader_id)
        if index is not None:
            self._leader = index
        return index


# --- the example ---------------------------------------------------------------


def parse_endpoints(text):
    endpoints = [e.strip() for e in text.split(",") if e.strip()]
    if not endpoints:
        raise ValueError("no endpoints")
    for e in endpoints:
        m = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):(\d+)", e)
        if not m or not 1 <= int(m.group(2)) <= 65535:
            raise ValueError(f"\"{e}\" is not host:port (port 1..65535)")
    if len(set(endpoints)) != len(endpoints):
        raise ValueError("an endpoint is listed twice")
    return endpoints


def print_table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


def run_example(client, key, value):
    """The walk-through; returns the exit status (0: every answer as
    expected)."""
    pb = client.pb
    ok = True
    names = {pb.LINEARIZABLE: "LINEARIZABLE", pb.LEASE: "LEASE", pb.SERIALIZABLE: "SERIALIZABLE"}
    print(f"client_id {client.client_id}; endpoints {', '.join(client.endpoints)}")

    r = client.put(key, value)
    print(f"put {key!r} = {value!r}: ok (sequence {client.sequence}; node {r.header.node_id} applied it, "
          f"applied index {r.header.applied_index})")

    # From every node, LINEARIZABLE first: once it returns, that node has
    # applied the write, so the LEASE and SERIALIZABLE reads that follow on
    # the same node see it too. A SERIALIZABLE read alone, on a follower,
    # could be served before the write reaches it: it may be stale.
    rows = []
    for endpoint in client.endpoints:
        for consistency in (pb.LINEARIZABLE, pb.LEASE, pb.SERIALIZABLE):
            g = client.get(key, consistency, endpoint=endpoint)
            got = g.value.decode() if g.found else None
            if got != value:
                ok = False
            rows.append([endpoint, g.header.node_id, names[consistency],
                         got if got is not None else "(not found)", "" if got == value else "UNEXPECTED"])
    print(f"reads of {key!r}:")
    print_table(["ENDPOINT", "NODE", "CONSISTENCY", "VALUE", ""], rows)

    d = client.delete(key)
    print(f"delete {key!r}: {'deleted' if d.deleted else 'was not there'} (sequence {client.sequence})")
    ok = ok and d.deleted
    still_there = [e for e in client.endpoints if client.get(key, pb.LINEARIZABLE, endpoint=e).found]
    if still_there:
        ok = False
        print(f"after the delete, {key!r} is still found on {', '.join(still_there)}: UNEXPECTED")
    else:
        print(f"after the delete, a linearizable read finds nothing on {', '.join(client.endpoints)}")

    rows = []
    for endpoint in client.endpoints:
        try:
            s = client.status(endpoint)
        except QuorumKvError as e:
            ok = False
            rows.append([endpoint, "-", "unreachable", "-", "-", "-", "-", "-", str(e)])
            continue
        members = ",".join(f"{m.id}{'' if m.role == pb.VOTER else '(learner)'}" for m in s.members)
        rows.append([endpoint, s.node_id, s.role, s.term, s.leader_id or "-", s.commit_index, s.applied_index,
                     members, ""])
    print("cluster status:")
    print_table(["ENDPOINT", "NODE", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "MEMBERS", "ERROR"], rows)
    return 0 if ok else 1


def main(argv=None):
    parser = argparse.ArgumentParser(description="A quorumkv client in Python: put, get at every consistency "
                                                 "level from every node, delete, status.")
    parser.add_argument("--endpoints", default="127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379",
                        help="host:port of the nodes, comma-separated (default: kvctl's)")
    parser.add_argument("--key", default="examples/python", help="the key to write, read and delete")
    parser.add_argument("--value", default="hello from Python", help="the value to write")
    parser.add_argument("--timeout", type=float, default=15.0,
                        help="seconds one call may take, retries included (default 15)")
    parser.add_argument("--stubs-dir", help="directory holding kv_pb2.py and kv_pb2_grpc.py (default: generate "
                                            "them from --proto into a temporary directory)")
    parser.add_argument("--proto", default=os.path.join(REPO_ROOT, "proto", "kv.proto"),
                        help="kv.proto to generate the stubs from (default: this repository's)")
    args = parser.parse_args(argv)
    try:
        endpoints = parse_endpoints(args.endpoints)
    except ValueError as e:
        parser.error(f"--endpoints: {e}")
    if not args.key:
        parser.error("--key must not be empty")
    if args.timeout <= 0:
        parser.error("--timeout must be > 0")

    with tempfile.TemporaryDirectory(prefix="quorumkv-stubs-") as tmp:
        stubs_dir = args.stubs_dir
        if stubs_dir is None:
            generate_stubs(os.path.abspath(args.proto), tmp)
            stubs_dir = tmp
        pb, pb_grpc = import_stubs(os.path.abspath(stubs_dir))
    with Client(endpoints, pb, pb_grpc, total_timeout_s=args.timeout) as client:
        try:
            return run_example(client, args.key, args.value)
        except QuorumKvError as e:
            print(f"quorumkv_client: {e}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
