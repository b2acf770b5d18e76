#!/usr/bin/env python3
"""ctest docker_runtime_libraries: the run stage of docker/Dockerfile installs
a Debian package for every shared library the built kvserver and kvctl load.

  /usr/bin/python3 tests/docker/check_runtime_libraries.py --dockerfile docker/Dockerfile \
      --binary build/bin/kvserver --binary build/bin/kvctl

`ldd` lists each binary's libraries (transitively), `dpkg -S` names the
package that owns each, and every such package must be in the run stage's
`apt-get install` list. The image build repeats the check with ldd inside
the image; this one fails in CI, before anyone builds an image, when a
change adds a library (say prometheus-cpp for /metrics) and the list is
not updated. Packages listed but not needed by today's binaries are
printed, not failed: the list may run ahead of a dependency being linked.
"""

import argparse
import os
import re
import subprocess
import sys

# No __pycache__ in the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compose_model as cm  # noqa: E402


def run_stage_packages(dockerfile):
    """The packages of the `apt-get install` in the Dockerfile's last stage."""
    stages = cm.parse_dockerfile(dockerfile)
    packages = []
    for inst, args in stages[-1]:
        if inst != "RUN":
            continue
        for command in re.split(r"&&|;", args):
            words = command.split()
            if len(words) >= 2 and words[0] == "apt-get" and "install" in words:
                after = words[words.index("install") + 1:]
                packages.extend(w for w in after if not w.startswith("-"))
    if not packages:
        raise cm.ModelError(f"{dockerfile}: the last stage has no apt-get install")
    return packages


def libraries_of(binary):
    """{soname: resolved path} of the shared libraries `binary` loads."""
    r = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise cm.ModelError(f"ldd {binary} failed: {r.stderr.strip() or r.stdout.strip()}")
    libs = {}
    for line in r.stdout.splitlines():
        m = re.match(r"\s*(\S+) => (\S+)", line)
        if not m:
            continue  # linux-vdso and the dynamic loader itself
        if m.group(2) == "not":
            raise cm.ModelError(f"{binary}: {m.group(1)} is not found by ldd on this machine")
        libs[m.group(1)] = m.group(2)
    return libs


def owning_packages(paths):
    """{path: Debian package that installed it}, from one `dpkg -S` call
    (each call reads dpkg's whole file database: one per library would take
    a minute). Merged /usr aware: /lib/x.so may be recorded as /usr/lib/x.so,
    and a symlink under its target's name."""
    candidates = {}
    for path in paths:
        forms = [path, os.path.realpath(path)]
        forms += ["/usr" + f for f in forms if f.startswith("/lib")]
        candidates[path] = forms
    all_forms = sorted({f for forms in candidates.values() for f in forms})
    r = subprocess.run(["dpkg", "-S"] + all_forms, capture_output=True, text=True, timeout=120)
    owner = {}
    for line in r.stdout.splitlines():
        # "libfoo1:amd64: /usr/lib/x86_64-linux-gnu/libfoo.so.1"
        if line.startswith("diversion "):
            continue
        packages, _, path = line.partition(": ")
        if path:
            owner[path.strip()] = packages.split(",")[0].split(":")[0].strip()
    result = {}
    for path, forms in candidates.items():
        found = [owner[f] for f in forms if f in owner]
        if not found:
            raise cm.ModelError(f"dpkg -S finds no package owning {path}")
        result[path] = found[0]
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dockerfile", required=True)
    parser.add_argument("--binary", action="append", required=True)
    args = parser.parse_args()
    try:
        listed = run_stage_packages(args.dockerfile)
        libraries = {}  # path -> soname
        for binary in args.binary:
            for soname, path in libraries_of(binary).items():
                libraries[path] = soname
        needed = {}  # package -> {sonames}
        for path, package in owning_packages(libraries).items():
            needed.setdefault(package, set()).add(libraries[path])
    except (cm.ModelError, OSError, subprocess.TimeoutExpired) as e:
        print(f"FAIL: {e}")
        return 1
    missing = sorted(p for p in needed if p not in listed)
    for p in missing:
        print(f"FAIL: {args.dockerfile}: the run stage does not install {p}, which provides "
              f"{', '.join(sorted(needed[p]))}")
    for p in sorted(set(listed) - set(needed)):
        print(f"note: {p} is installed in the run stage but not loaded by the binaries checked")
    if missing:
        return 1
    print(f"ok: the run stage installs all {len(needed)} packages the binaries load: {', '.join(sorted(needed))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
