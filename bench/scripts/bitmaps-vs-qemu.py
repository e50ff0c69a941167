#!/usr/bin/env python3
"""Side by side in one run: storing and loading persistent bitmaps, Strata against
qemu-storage-daemon.

Each daemon has its own empty qcow2 disk of SIZE_GB GiB (sparse) as node drive0 with NBITMAPS
persistent bitmaps of 64 KiB granularity, all recording the same guest writes: 4 KiB at PCT% of
the 64 KiB clusters (random, the same on both sides, written with qemu-io over an NBD export that
is removed afterwards). Then, WARMUP uncounted times (the first is printed apart, as the cold
numbers of fresh daemons) and REPS counted times:

  store  blockdev-del drive0: the node closes and writes every bitmap to the image
  load   blockdev-add drive0: the node opens, reads every bitmap and marks them in use

The same two commands on a second disk of the same size without bitmaps ("store, no bitmaps",
"load, no bitmaps") give what opening and closing cost without them. Times are from the command
to its reply. Prints medians and the ratio Strata / QEMU (below 1:
Strata is faster), then checks that both daemons hold the same bits (x-debug-block-dirty-bitmap-
sha256 of every bitmap) and that qemu-img check finds both images clean.

    bench/scripts/bitmaps-vs-qemu.py  # REPS=7 WARMUP=30 SIZE_GB=64 NBITMAPS=8 PCT=1 WORK=/tmp/strata-bitmap-bench
"""
import importlib.util
import os
import random
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("backup_bench", os.path.join(HERE, "backup-vs-qemu.py"))
backup_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(backup_bench)
run = backup_bench.run

REPS = int(os.environ.get("REPS", "7"))
WARMUP = int(os.environ.get("WARMUP", "30"))
SIZE_GB = int(os.environ.get("SIZE_GB", "64"))
NBITMAPS = int(os.environ.get("NBITMAPS", "8"))
PCT = float(os.environ.get("PCT", "1"))
WORK = os.environ.get("WORK", "/tmp/strata-bitmap-bench")
CLUSTER = 64 << 10


class Side:
    def __init__(self, name, argv):
        self.name = name
        self.disk = os.path.join(WORK, name + ".qcow2")
        self.plain = os.path.join(WORK, name + "-plain.qcow2")
        for d in (self.disk, self.plain):
            if os.path.exists(d):
                os.remove(d)
            run("qemu-img", "create", "-f", "qcow2", d, "%dG" % SIZE_GB)
        self.nbd = os.path.join(WORK, name + ".nbd")
        self.proc, self.qmp, self.log = backup_bench.start_daemon(name, argv, self.nbd, [], WORK)

    def add_node(self, name="drive0", disk=None):
        t = time.monotonic()
        self.qmp.cmd("blockdev-add", **{"driver": "qcow2", "node-name": name,
                                        "file": {"driver": "file", "filename": disk or self.disk}})
        return time.monotonic() - t

    def del_node(self, name="drive0"):
        t = time.monotonic()
        self.qmp.cmd("blockdev-del", **{"node-name": name})
        return time.monotonic() - t

    def guest(self, commands):
        self.qmp.cmd("block-export-add", **{"type": "nbd", "id": "w", "node-name": "drive0", "name": "drive0",
                                            "writable": True})
        argv = ["qemu-io", "-f", "raw", "nbd+unix:///drive0?socket=" + self.nbd]
        for c in commands:
            argv += ["-c", c]
        run(*argv)
        self.qmp.cmd("block-export-del", id="w")
        # the export goes once its client has; wait for the event before the node may close
        while not any(e["event"] == "BLOCK_EXPORT_DELETED" for e in self.qmp.events):
            self.qmp.events.append(backup_bench.json.loads(self.qmp.f.readline()))
        self.qmp.events.clear()

    def shas(self):
        return [self.qmp.cmd("x-debug-block-dirty-bitmap-sha256", node="drive0", name="b%d" % i)["sha256"]
                for i in range(NBITMAPS)]

    def stop(self):
        try:
            self.qmp.cmd("quit")
        except Exception:
            pass
        self.proc.wait(timeout=60)


def main():
    os.makedirs(WORK, exist_ok=True)
    clusters = SIZE_GB * (1 << 30) // CLUSTER
    rnd = random.Random(7)
    dirty = sorted(rnd.sample(range(clusters), int(clusters * PCT / 100)))
    writes = ["write %d 4k" % (c * CLUSTER) for c in dirty]
    sides = [Side("qemu", ["qemu-storage-daemon"]), Side("strata", [backup_bench.STRATA, "daemon"])]
    cases = ("store", "load", "store, no bitmaps", "load, no bitmaps")
    cold = {}
    times = {(s.name, k): [] for s in sides for k in cases}
    try:
        for s in sides:
            s.add_node()
            for i in range(NBITMAPS):
                s.qmp.cmd("block-dirty-bitmap-add", node="drive0", name="b%d" % i, persistent=True)
            s.guest(writes)
            s.add_node("plain", s.plain)
        for rep in range(WARMUP + REPS):
            if rep == 1:
                cold = {k: v[0] for k, v in times.items()}
            if rep == WARMUP:
                # the rounds before are not counted: a daemon opens and closes nodes for days, and
                # a fresh JVM runs this code interpreted (then half compiled) for its first rounds
                for v in times.values():
                    v.clear()
            for s in sides:
                run("sync")
                times[(s.name, "store")].append(s.del_node())
                times[(s.name, "load")].append(s.add_node())
                run("sync")
                times[(s.name, "store, no bitmaps")].append(s.del_node("plain"))
                times[(s.name, "load, no bitmaps")].append(s.add_node("plain", s.plain))
        same = sides[0].shas() == sides[1].shas()
    finally:
        for s in sides:
            s.stop()
    clean = all(subprocess.run(["qemu-img", "check", d], capture_output=True).returncode == 0
                for s in sides for d in (s.disk, s.plain))
    print("%d GiB disk, %d persistent bitmaps (64 KiB), %s%% of clusters dirty (%d writes), medians of %d"
          " after %d uncounted rounds" % (SIZE_GB, NBITMAPS, PCT, len(writes), REPS, WARMUP))
    print()
    print("| case | QEMU ms | Strata ms | Strata / QEMU |")
    print("|---|---|---|---|")
    for k in cases:
        q = statistics.median(times[("qemu", k)]) * 1000
        m = statistics.median(times[("strata", k)]) * 1000
        print("| %s | %.1f | %.1f | %.2f |" % (k, q, m, m / q))
    print()
    print("Cold: the first round, in fresh daemons")
    print("| case | QEMU ms | Strata ms | Strata / QEMU |")
    print("|---|---|---|---|")
    for k in cases:
        q = cold[("qemu", k)] * 1000
        m = cold[("strata", k)] * 1000
        print("| %s | %.1f | %.1f | %.2f |" % (k, q, m, m / q))
    print()
    for key, v in times.items():
        print("%s %s: %s" % (key[0], key[1], " ".join("%.1f" % (x * 1000) for x in v)))
    print("same bits on both sides:", same, "| both images clean:", clean)
    if not same or not clean:
        sys.exit(1)


if __name__ == "__main__":
    main()
