#!/usr/bin/env python3
"""ctest python_client_retry: the retry rules of examples/python/quorumkv_client.py,
against fake nodes that answer what each test scripts (in-process gRPC
servers on 127.0.0.1, port 0).

  /usr/bin/python3 tests/python/python_client_retry_test.py --repo .

A real cluster rarely refuses a call on purpose, so python_client_example
cannot show these reliably: a write retried on the leader named by the
trailers with the same (client_id, sequence); the leader's address trailer
used only when it is one of the client's endpoints; UNAVAILABLE,
RESOURCE_EXHAUSTED and an attempt's DEADLINE_EXCEEDED retried; other codes
returned at once; reads pinned to a node retried on that node only; the
total timeout respected.
"""

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from concurrent import futures

import grpc

# No __pycache__ in the source tree.
sys.dont_write_bytecode = True
ARGS = None
pb = pb_grpc = example = None


def load_modules(repo, stubs_dir):
    global pb, pb_grpc, example
    proto_dir = os.path.join(repo, "proto")
    subprocess.run(["protoc", f"-I{proto_dir}", f"--python_out={stubs_dir}", f"--grpc_out={stubs_dir}",
                    "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin", os.path.join(proto_dir, "kv.proto")],
                   check=True, timeout=60)
    sys.path.insert(0, stubs_dir)
    import kv_pb2
    import kv_pb2_grpc
    pb, pb_grpc = kv_pb2, kv_pb2_grpc
    spec = importlib.util.spec_from_file_location(
        "quorumkv_client", os.path.join(repo, "examples", "python", "quorumkv_client.py"))
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)


def error(code, details="scripted", leader_id=None, leader_address=None, not_proposed=False):
    trailers = []
    if not_proposed:
        trailers.append(("quorumkv-not-proposed", "1"))
    if leader_id is not None:
        trailers.append(("quorumkv-leader-id", str(leader_id)))
    if leader_address is not None:
        trailers.append(("quorumkv-leader-address", leader_address))
    return ("error", code, details, tuple(trailers))


OK = ("ok",)


class FakeNode:
    """One fake quorumkv node: KV and Cluster services answering from a
    script (a list of actions, one per call, then OK), recording requests."""

    def __init__(self, node_id, leader_id=0):
        self.node_id = node_id
        self.leader_id = leader_id
        self.script = []
        self.requests = []  # (method, request)
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        node = self

        class Kv(pb_grpc.KVServicer):
            def Put(self, request, context):
                return node._answer("Put", request, context, pb.PutResponse())

            def Get(self, request, context):
                r = node._answer("Get", request, context, pb.GetResponse(found=True, value=b"v"))
                return r

            def Delete(self, request, context):
                return node._answer("Delete", request, context, pb.DeleteResponse(deleted=True))

        class Cluster(pb_grpc.ClusterServicer):
            def Status(self, request, context):
                r = node._answer("Status", request, context, pb.StatusResponse(node_id=node.node_id))
                r.leader_id = node.leader_id
                return r

        pb_grpc.add_KVServicer_to_server(Kv(), self.server)
        pb_grpc.add_ClusterServicer_to_server(Cluster(), self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"127.0.0.1:{port}"
        self.server.start()

    def _answer(self, method, request, context, response):
        with self._lock:
            self.requests.append((method, request))
            action = self.script.pop(0) if self.script else OK
        if action[0] == "sleep":
            time.sleep(action[1])
        elif action[0] == "error":
            _, code, details, trailers = action
            if trailers:
                context.set_trailing_metadata(trailers)
            context.set_code(code)
            context.set_details(details)
            return response
        response.header.node_id = self.node_id
        return response

    def calls(self, method):
        with self._lock:
            return [r for m, r in self.requests if m == method]

    def stop(self):
        self.server.stop(grace=None).wait(5)


class RetryTest(unittest.TestCase):
    def setUp(self):
        self.nodes = [FakeNode(1), FakeNode(2), FakeNode(3)]
        self.log = []
        self.client = example.Client([n.endpoint for n in self.nodes], pb, pb_grpc, attempt_timeout_s=0.5,
                                     total_timeout_s=5.0, log=self.log.append)

    def tearDown(self):
        self.client.close()
        for n in self.nodes:
            n.stop()

    def learn_all(self):
        """Status of every node, so the client maps node ids to endpoints."""
        for n in self.nodes:
            self.client.status(n.endpoint)
        for n in self.nodes:
            n.requests.clear()

    def test_write_goes_to_the_hinted_leader_with_the_same_identity(self):
        self.learn_all()
        self.nodes[0].script = [error(grpc.StatusCode.UNAVAILABLE, "not the leader", leader_id=3)]
        start = time.monotonic()
        r = self.client.put("k", "v")
        self.assertEqual(r.header.node_id, 3)
        first, = self.nodes[0].calls("Put")
        second, = self.nodes[2].calls("Put")
        self.assertEqual(self.nodes[1].calls("Put"), [])
        self.assertEqual((first.client_id, first.sequence), (second.client_id, second.sequence))
        self.assertEqual((second.client_id, second.sequence), (self.client.client_id, 1))
        self.assertNotEqual(second.client_id, 0)
        self.assertLess(time.monotonic() - start, 0.4, "a redirect to a known leader needs no back-off")
        self.assertIn(f"next attempt on {self.nodes[2].endpoint} in 0 ms", self.log[0])

    def test_next_write_uses_the_next_sequence_on_the_learned_leader(self):
        self.learn_all()
        self.nodes[0].script = [error(grpc.StatusCode.UNAVAILABLE, leader_id=2)]
        self.client.put("k", "v")
        self.client.delete("k")
        d, = self.nodes[1].calls("Delete")
        p = self.nodes[1].calls("Put")[0]
        self.assertEqual((d.client_id, d.sequence), (p.client_id, 2))
        self.assertEqual(self.nodes[0].calls("Delete"), [], "the leader is known: the delete goes there first")

    def test_leader_address_used_when_it_is_an_endpoint(self):
        # No Status first: the client does not know which node is id 3.
        self.nodes[0].script = [error(grpc.StatusCode.UNAVAILABLE, leader_id=3,
                                      leader_address=self.nodes[2].endpoint)]
        self.client.put("k", "v")
        self.assertEqual(len(self.nodes[2].calls("Put")), 1)
        self.assertEqual(self.nodes[1].calls("Put"), [])

    def test_unresolvable_leader_address_is_not_dialed(self):
        # As in docker compose: the advertised name is not reachable from
        # the client, so the client rotates to its next endpoint.
        self.nodes[0].script = [error(grpc.StatusCode.UNAVAILABLE, leader_id=3, leader_address="node3:2379")]
        self.client.put("k", "v")
        self.assertEqual(len(self.nodes[1].calls("Put")), 1)
        self.assertEqual(self.nodes[2].calls("Put"), [])

    def test_resource_exhausted_is_retried(self):
        self.nodes[0].script = [error(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many pending requests")]
        self.client.put("k", "v")
        a, = self.nodes[0].calls("Put")
        b, = self.nodes[1].calls("Put")
        self.assertEqual((a.client_id, a.sequence), (b.client_id, b.sequence))

    def test_attempt_deadline_is_retried_with_the_same_identity(self):
        self.nodes[0].script = [("sleep", 1.0)]  # > attempt_timeout_s: the attempt times out
        self.client.put("k", "v")
        a, = self.nodes[0].calls("Put")
        b, = self.nodes[1].calls("Put")
        self.assertEqual((a.client_id, a.sequence), (b.client_id, b.sequence))
        self.assertIn("DEADLINE_EXCEEDED", self.log[0])

    def test_answers_are_not_retried(self):
        for code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
                     grpc.StatusCode.DATA_LOSS, grpc.StatusCode.NOT_FOUND):
            with self.subTest(code=code):
                for n in self.nodes:
                    n.requests.clear()
                self.nodes[0].script = [error(code, "scripted answer", leader_id=2)]
                with self.assertRaises(example.QuorumKvError) as cm:
                    self.client.put("k", "v")
                self.assertEqual(cm.exception.code, code)
                self.assertIn("scripted answer", str(cm.exception))
                self.assertEqual(sum(len(n.calls("Put")) for n in self.nodes), 1)

    def test_pinned_read_stays_on_its_node(self):
        self.learn_all()
        self.nodes[1].script = [error(grpc.StatusCode.UNAVAILABLE, leader_id=1)] * 2
        r = self.client.get("k", pb.SERIALIZABLE, endpoint=self.nodes[1].endpoint)
        self.assertEqual(r.header.node_id, 2)
        self.assertEqual(len(self.nodes[1].calls("Get")), 3)
        self.assertEqual(self.nodes[0].calls("Get") + self.nodes[2].calls("Get"), [])
        self.assertEqual(self.nodes[1].calls("Get")[0].consistency, pb.SERIALIZABLE)

    def test_gives_up_at_the_total_timeout(self):
        self.client.close()
        self.client = example.Client([n.endpoint for n in self.nodes], pb, pb_grpc, attempt_timeout_s=0.5,
                                     total_timeout_s=1.0, log=self.log.append)
        for n in self.nodes:
            n.script = [error(grpc.StatusCode.UNAVAILABLE, "no leader")] * 1000
        start = time.monotonic()
        with self.assertRaises(example.QuorumKvError) as cm:
            self.client.put("k", "v")
        took = time.monotonic() - start
        self.assertEqual(cm.exception.code, grpc.StatusCode.UNAVAILABLE)
        self.assertRegex(str(cm.exception), r"no leader \(gave up after \d+ attempts in 1 s; the write may "
                                            r"still take effect, once\)")
        self.assertLess(took, 1.5)
        ids = {(r.client_id, r.sequence) for n in self.nodes for r in n.calls("Put")}
        self.assertEqual(len(ids), 1, "every attempt of one write carries the same identity")
        self.assertGreater(sum(len(n.calls("Put")) for n in self.nodes), 3)

    def test_write_refused_before_proposal_did_not_take_effect(self):
        self.client.close()
        # Generous attempt time: a loaded CI machine must not turn the scripted
        # refusals into client-side deadlines.
        self.client = example.Client([n.endpoint for n in self.nodes], pb, pb_grpc, attempt_timeout_s=2.0,
                                     total_timeout_s=1.0, log=self.log.append)
        for n in self.nodes:
            n.script = [error(grpc.StatusCode.UNAVAILABLE, "not the leader", not_proposed=True)] * 1000
        with self.assertRaises(example.QuorumKvError) as cm:
            self.client.delete("k")
        self.assertRegex(str(cm.exception), r"not the leader \(gave up after \d+ attempts in [0-9.]+ s; the write "
                                            r"did not take effect\)")

    def test_read_error_says_nothing_about_effects(self):
        self.client.close()
        self.client = example.Client([n.endpoint for n in self.nodes], pb, pb_grpc, attempt_timeout_s=0.5,
                                     total_timeout_s=0.5, log=self.log.append)
        for n in self.nodes:
            n.script = [error(grpc.StatusCode.UNAVAILABLE, "no leader")] * 1000
        with self.assertRaises(example.QuorumKvError) as cm:
            self.client.get("k", pb.LINEARIZABLE)
        self.assertRegex(str(cm.exception), r"no leader \(gave up after \d+ attempts in 0.5 s\)$")


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", required=True)
    ARGS, rest = parser.parse_known_args()
    stubs = tempfile.mkdtemp(prefix="quorumkv-stubs-")
    try:
        load_modules(os.path.abspath(ARGS.repo), stubs)
        program = unittest.main(argv=[sys.argv[0], "-v"] + rest, exit=False)
        return 0 if program.result.wasSuccessful() else 1
    finally:
        shutil.rmtree(stubs, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
