#!/usr/bin/env python3
"""ctest docker_compose_config_mutations: each mistake the compose check is
meant to catch, made on a copy of the real files, must be reported (and the
unchanged files must pass). Guards the check itself against passing
everything.

  /usr/bin/python3 tests/docker/check_compose_test.py --repo . --kvctl build/bin/kvctl
"""

import argparse
import copy
import os
import sys
import unittest

# No __pycache__ in the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_compose  # noqa: E402
import compose_model as cm  # noqa: E402

ARGS = None
CLUSTER = "1=node1:2380@node1:2379,2=node2:2380@node2:2379,3=node3:2380@node3:2379"


def set_flag(service, name, value):
    """Replaces --name's value in a service's command (list form, --f=v)."""
    out, found = [], False
    for a in service["command"]:
        flag = a.split("=", 1)[0]
        if cm.normalize_flag(flag[2:]) == cm.normalize_flag(name):
            out.append(f"--{name}={value}")
            found = True
        else:
            out.append(a)
    assert found, f"no --{name} in {service['command']}"
    service["command"] = out


class CheckComposeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.base = check_compose.Inputs(ARGS.repo, check_compose.default_endpoints_of(ARGS.kvctl))

    def setUp(self):
        # Deep copies: the YAML merge key shares nested values between the
        # three services, so a mutation must replace whole values.
        self.inp = copy.copy(self.base)
        self.inp.compose = copy.deepcopy(self.base.compose)
        self.inp.prometheus = copy.deepcopy(self.base.prometheus)
        self.inp.dockerfile = copy.deepcopy(self.base.dockerfile)
        self.inp.dockerignore = list(self.base.dockerignore or [])

    def svc(self, name):
        return self.inp.compose["services"][name]

    def assertReports(self, *fragments):
        errors = check_compose.check(self.inp)
        text = "\n".join(errors)
        self.assertTrue(errors, "the check reported nothing")
        for f in fragments:
            self.assertIn(f, text)

    def test_unchanged_files_pass(self):
        self.assertEqual(check_compose.check(self.inp), [])

    def test_id_not_matching_service_name(self):
        set_flag(self.svc("node2"), "id", "5")
        self.assertReports("node2: --id 5 does not match the service name node2", "lists ids [1, 2, 3]")

    def test_duplicate_ids(self):
        set_flag(self.svc("node3"), "id", "1")
        self.assertReports("node ids are not unique: [1, 1, 2]")

    def test_advertises_another_nodes_name(self):
        set_flag(self.svc("node1"), "advertise-client-addr", "node2:2379")
        self.assertReports("node1: --advertise-client-addr host \"node2\" is not this service's network name")

    def test_advertised_port_differs_from_listening_port(self):
        set_flag(self.svc("node3"), "advertise-peer-addr", "node3:2390")
        self.assertReports("--advertise-peer-addr port 2390 differs from --peer-addr port 2380",
                           "gives node 3 peer node3:2380, node3 advertises node3:2390")

    def test_initial_cluster_differs_between_nodes(self):
        set_flag(self.svc("node3"), "initial-cluster", CLUSTER.replace("2=node2:2380", "2=node2:2480"))
        self.assertReports("--initial-cluster differs between nodes",
                           "node3 --initial-cluster gives node 2 peer node2:2480, node2 advertises node2:2380")

    def test_initial_cluster_without_client_address(self):
        for n in ("node1", "node2", "node3"):
            set_flag(self.svc(n), "initial-cluster", CLUSTER.replace("@node1:2379", ""))
        self.assertReports("gives node 1 no client address, node1 advertises node1:2379")

    def test_initial_cluster_missing_a_node(self):
        for n in ("node1", "node2", "node3"):
            set_flag(self.svc(n), "initial-cluster", CLUSTER.rsplit(",", 1)[0])
        self.assertReports("--initial-cluster lists ids [1, 2], the nodes are [1, 2, 3]")

    def test_listening_on_container_loopback(self):
        set_flag(self.svc("node2"), "client-addr", "127.0.0.1:2379")
        self.assertReports("node2: --client-addr listens on 127.0.0.1; use 0.0.0.0")

    def test_missing_flag(self):
        self.svc("node1")["command"] = [a for a in self.svc("node1")["command"] if "metrics" not in a]
        self.assertReports("node1: missing flags --metrics-addr")

    def test_volume_not_declared(self):
        del self.inp.compose["volumes"]["node2-data"]
        self.assertReports("node2: volume node2-data is not declared under the top-level volumes")

    def test_shared_volume(self):
        self.svc("node3")["volumes"] = ["node1-data:/data"]
        self.assertReports("nodes share a data volume")

    def test_data_dir_not_a_mount_point(self):
        set_flag(self.svc("node1"), "data-dir", "/var/lib/quorumkv")
        self.assertReports("node1: --data-dir /var/lib/quorumkv is not a volume mount point",
                           "node1's --data-dir /var/lib/quorumkv is not a VOLUME of the image")

    def test_data_dir_bind_mounted(self):
        self.svc("node1")["volumes"] = ["./data1:/data"]
        self.assertReports("node1: --data-dir /data is mounted from './data1', not a named volume")

    def test_published_port_not_kvctl_default(self):
        self.svc("node2")["ports"] = ["127.0.0.1:22380:2379"]
        self.assertReports("node 2 publishes client port 2379 on host port 22380; kvctl's default endpoint for "
                           "it is 127.0.0.1:22379")

    def test_client_port_not_published(self):
        self.svc("node3")["ports"] = []
        self.assertReports("node 3 publishes its client port 2379 0 times")

    def test_unquoted_port_mapping(self):
        self.svc("node2")["ports"] = [22379 * 60 + 2379]  # what YAML 1.1 makes of 22379:2379
        self.assertReports("is not a string; quote it")

    def test_restart_policy_missing(self):
        del self.svc("node1")["restart"]
        self.assertReports("node1: restart policy None")

    def test_healthcheck_on_another_port(self):
        self.svc("node2")["healthcheck"] = {"test": ["CMD", "kvctl", "--endpoints", "127.0.0.1:22379",
                                                     "endpoint", "health"]}
        self.assertReports("node2: the healthcheck does not ask this node's client port 2379")

    def test_extra_service(self):
        self.inp.compose["services"]["grafana"] = {"image": "grafana/grafana"}
        self.assertReports("expected one other service, prometheus; found ['grafana', 'prometheus']")

    def test_two_nodes_only(self):
        del self.inp.compose["services"]["node3"]
        self.assertReports("expected 3 services built from docker/Dockerfile, found 2")

    def test_prometheus_missing_a_target(self):
        self.inp.prometheus["scrape_configs"][0]["static_configs"][0]["targets"] = ["node1:2381", "node2:2381"]
        self.assertReports("prometheus.yml: scrapes ['node1:2381', 'node2:2381']; expected exactly")

    def test_prometheus_wrong_port(self):
        self.inp.prometheus["scrape_configs"][0]["static_configs"][0]["targets"] = \
            ["node1:2379", "node2:2381", "node3:2381"]
        self.assertReports("expected exactly the nodes' metrics addresses ['node1:2381', 'node2:2381', "
                           "'node3:2381']")

    def test_prometheus_interval(self):
        self.inp.prometheus["scrape_configs"][0]["scrape_interval"] = "15s"
        self.assertReports("job quorumkv scrapes every 15s, expected 5s")

    def test_metrics_port_changed_on_nodes_only(self):
        for n in ("node1", "node2", "node3"):
            set_flag(self.svc(n), "metrics-addr", "0.0.0.0:9100")
        self.assertReports("EXPOSE [2379, 2380, 2381] differs from the ports the nodes listen on "
                           "[2379, 2380, 9100]", "expected exactly the nodes' metrics addresses ['node1:9100'")

    def test_prometheus_config_not_mounted(self):
        self.svc("prometheus")["volumes"] = ["prometheus-data:/prometheus"]
        self.assertReports("docker/prometheus.yml is not mounted at /etc/prometheus/prometheus.yml")

    def test_prometheus_service_missing(self):
        del self.inp.compose["services"]["prometheus"]
        self.assertReports("no prometheus service")

    def test_dockerfile_expose_missing_metrics_port(self):
        final = self.inp.dockerfile[-1]
        self.inp.dockerfile[-1] = [(i, "2379 2380") if i == "EXPOSE" else (i, a) for i, a in final]
        self.assertReports("EXPOSE [2379, 2380] differs from the ports the nodes listen on [2379, 2380, 2381]")

    def test_dockerfile_entrypoint(self):
        final = self.inp.dockerfile[-1]
        self.inp.dockerfile[-1] = [(i, '["kvctl"]') if i == "ENTRYPOINT" else (i, a) for i, a in final]
        self.assertReports("ENTRYPOINT [\"kvctl\"] is not the exec form [\"kvserver\", ...]")

    def test_dockerfile_runs_as_root(self):
        self.inp.dockerfile[-1] = [(i, a) for i, a in self.inp.dockerfile[-1] if i != "USER"]
        self.assertReports("the final stage must switch to a non-root USER")

    def test_dockerfile_not_debian_12(self):
        self.inp.dockerfile[-1][0] = ("FROM", "ubuntu:24.04")
        self.assertReports("stage FROM ubuntu:24.04; the stages must be Debian 12")

    def test_dockerignore_keeps_build_trees(self):
        self.inp.dockerignore = [l for l in self.inp.dockerignore if not l.startswith("build")]
        self.assertReports(".dockerignore: does not exclude build", ".dockerignore: does not exclude build-*")

    def test_command_parsing_errors(self):
        self.svc("node1")["command"] = ["--id=1", "extra"]
        self.assertReports("node1: \"extra\" is not a --flag")


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", required=True)
    parser.add_argument("--kvctl", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0], "-v"] + rest)


if __name__ == "__main__":
    main()
