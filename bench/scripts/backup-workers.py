#!/usr/bin/env python3
"""A/B of Strata's backup copy workers: two Strata daemons side by side in one run, one started with
-Dstrata.backup.workers=1 and one with 2 (the default), on the same disk and the same cases as
backup-vs-qemu.py (full, incremental 1% and 10%); prints the medians and every run.

    bench/scripts/backup-workers.py        # REPS=5 SIZE_MB=1024 WORK=/tmp/strata-backup-bench
"""
import importlib.util
import os
import statistics

os.environ.setdefault("SIZE_MB", "1024")
spec = importlib.util.spec_from_file_location(
    "backup_vs_qemu", os.path.join(os.path.dirname(os.path.abspath(__file__)), "backup-vs-qemu.py"))
b = importlib.util.module_from_spec(spec)
spec.loader.exec_module(b)


def main():
    b.prepare()
    sides = []
    for workers in (1, 2):
        os.environ["JAVA_TOOL_OPTIONS"] = "-Dstrata.backup.workers=%d" % workers
        sides.append(b.Side("workers%d" % workers, [b.STRATA, "daemon"]))
    os.environ.pop("JAVA_TOOL_OPTIONS")
    times = {}
    try:
        for rep in range(int(os.environ.get("REPS", "5"))):
            for s in sides:
                t = times.setdefault(s.name, {})
                full = os.path.join(b.WORK, s.name + "-full.qcow2")
                if os.path.exists(full):
                    os.remove(full)
                t.setdefault("full", []).append(s.backup(full, "full"))
                for pct in (1, 10):
                    bitmap = "b%d" % pct
                    s.qmp.cmd("block-dirty-bitmap-add", node="drive0", name=bitmap)
                    s.guest(b.dirty_writes(pct, rep * 100 + pct))
                    inc = os.path.join(b.WORK, "%s-inc%d.qcow2" % (s.name, pct))
                    if os.path.exists(inc):
                        os.remove(inc)
                    b.run("qemu-img", "create", "-f", "qcow2", "-b", full, "-F", "qcow2", inc)
                    t.setdefault("inc %d%%" % pct, []).append(
                        s.backup(inc, "incremental", bitmap=bitmap, mode="existing"))
                    s.qmp.cmd("block-dirty-bitmap-remove", node="drive0", name=bitmap)
    finally:
        for s in sides:
            s.stop()
    print("| case | 1 worker | 2 workers | runs (1 / 2) |")
    print("|---|---|---|---|")
    for case in ("full", "inc 1%", "inc 10%"):
        one = times["workers1"][case]
        two = times["workers2"][case]
        print("| %s | %.3f s | %.3f s | %s / %s |" % (
            case, statistics.median(one), statistics.median(two),
            " ".join("%.3f" % x for x in one), " ".join("%.3f" % x for x in two)))


if __name__ == "__main__":
    main()
