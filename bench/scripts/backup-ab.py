#!/usr/bin/env python3
"""A/B of two Strata daemon settings side by side in one run, on the same disk and the same cases as
backup-vs-qemu.py (full, incremental 1% and 10%), after the same untimed warm-up rounds (WARMUP);
prints the medians and every run. Each side gets
its JVM options through JAVA_TOOL_OPTIONS: A_OPTS and B_OPTS (defaults: one copy worker against
two).

    bench/scripts/backup-ab.py        # REPS=5 WARMUP=3 SIZE_MB=2048 WORK=/tmp/strata-backup-bench (backup-vs-qemu.py's)
    A_OPTS=-Dstrata.copy.offload=false B_OPTS= bench/scripts/backup-ab.py
    A_OPTS= B_OPTS= A_STRATA=/path/to/other/checkout/strata bench/scripts/backup-ab.py   # two builds
"""
import importlib.util
import os
import statistics

spec = importlib.util.spec_from_file_location(
    "backup_vs_qemu", os.path.join(os.path.dirname(os.path.abspath(__file__)), "backup-vs-qemu.py"))
b = importlib.util.module_from_spec(spec)
spec.loader.exec_module(b)


def main():
    b.prepare()
    opts = {"A": os.environ.get("A_OPTS", "-Dstrata.backup.workers=1"),
            "B": os.environ.get("B_OPTS", "-Dstrata.backup.workers=2")}
    sides = []
    for name, o in opts.items():
        os.environ["JAVA_TOOL_OPTIONS"] = o
        sides.append(b.Side(name, [os.environ.get(name + "_STRATA", b.STRATA), "daemon"]))
    os.environ.pop("JAVA_TOOL_OPTIONS")
    times = {}
    try:
        for rep in range(b.WARMUP + int(os.environ.get("REPS", "5"))):
            for s in sides:
                b.backup_round(s, rep, times.setdefault(s.name, {}) if rep >= b.WARMUP else {})
    finally:
        for s in sides:
            s.stop()
    print("after %d untimed rounds" % b.WARMUP)
    for name in ("A", "B"):
        print("%s: %s %s" % (name, os.environ.get(name + "_STRATA", b.STRATA), opts[name] or "(defaults)"))
    print("| case | A | B | runs (A / B) |")
    print("|---|---|---|---|")
    for case in ("full", "inc 1%", "inc 10%"):
        a = times["A"][case]
        bb = times["B"][case]
        print("| %s | %.3f s | %.3f s | %s / %s |" % (
            case, statistics.median(a), statistics.median(bb),
            " ".join("%.3f" % x for x in a), " ".join("%.3f" % x for x in bb)))


if __name__ == "__main__":
    main()
