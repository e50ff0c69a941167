#!/usr/bin/env python3
"""Side by side in one run: Strata's backup jobs against qemu-storage-daemon's.

Each daemon serves its own copy of the same fully written qcow2 disk (random data) as node drive0,
exported writable over NBD so that guest writes reach both the same way (qemu-io over NBD). Cases,
medians of REPS runs each:

  full        drive-backup sync=full into a new qcow2 (time from the command to BLOCK_JOB_COMPLETED)
  inc 1%/10%  drive-backup sync=incremental with 1% / 10% of the 64 KiB clusters dirty (random,
              the same clusters on both sides) into an image backed by the full backup
  guest       512 MiB of 1 MiB guest writes (qemu-io over NBD) while a full backup runs
  dd          the same bytes as the full backup written by dd with conv=fdatasync (the baseline
              the full backup is held against)

WARMUP rounds of every case run first on both sides and are not counted (a daemon runs for days:
a fresh JVM runs the backup path interpreted or being compiled during its first backups, and the
JIT's compiler threads take CPU from the copy meanwhile; the 1% incremental, the shortest case,
keeps getting faster for about ten rounds: 1.41x QEMU after 3 rounds, 2.03x after 10, the same
day); the first round's times are printed apart, as the cold numbers. Prints a markdown table with throughputs and the ratio Strata / QEMU (above 1: Strata
is faster), then every timed run.

    bench/scripts/backup-vs-qemu.py        # REPS=3 WARMUP=10 SIZE_MB=2048 WORK=/tmp/strata-backup-bench
"""
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STRATA = os.path.join(ROOT, "strata")
REPS = int(os.environ.get("REPS", "3"))
WARMUP = int(os.environ.get("WARMUP", "10"))
SIZE_MB = int(os.environ.get("SIZE_MB", "2048"))
WORK = os.environ.get("WORK", "/tmp/strata-backup-bench")
CLUSTER = 64 << 10
# the guest writes 512 MiB during a full backup, or the whole disk when it is smaller
GUEST_MB = min(512, SIZE_MB)


class Qmp:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        # binary: lines end at b"\n" whatever the socket's read sizes (a text file may split "\r\n")
        self.f = self.sock.makefile("rwb")
        self.events = []
        self.f.readline()
        self.cmd("qmp_capabilities")

    def cmd(self, command, **args):
        msg = {"execute": command}
        if args:
            msg["arguments"] = args
        self.f.write((json.dumps(msg) + "\n").encode())
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "event" in r:
                self.events.append(r)
                continue
            if "error" in r:
                raise RuntimeError("%s: %s" % (command, r["error"]["desc"]))
            return r["return"]

    def wait_job(self, job):
        while True:
            for e in self.events:
                if e["event"] in ("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED") and e["data"]["device"] == job:
                    self.events.remove(e)
                    if e["event"] != "BLOCK_JOB_COMPLETED" or "error" in e["data"]:
                        raise RuntimeError("job %s: %s" % (job, e))
                    return
            self.events.append(json.loads(self.f.readline()))


def run(*argv):
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_daemon(name, argv, nbd, options, work=None):
    """Starts a daemon (argv: qemu-storage-daemon or strata daemon) with `options`, an NBD server
    on the UNIX socket `nbd` and a QMP monitor; returns (process, Qmp, log file) once both sockets
    exist."""
    work = work or WORK
    qmp_path = os.path.join(work, name + ".qmp")
    for p in (qmp_path, nbd):
        if os.path.exists(p):
            os.remove(p)
    log = open(os.path.join(work, name + ".log"), "w")
    proc = subprocess.Popen(
        argv
        + ["--nbd-server", "addr.type=unix,addr.path=" + nbd]
        # after the server: an --export needs it
        + options
        + [
            "--chardev",
            "socket,id=m,path=%s,server=on,wait=off" % qmp_path,
            "--monitor",
            "chardev=m",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    for _ in range(400):
        if os.path.exists(qmp_path) and os.path.exists(nbd):
            break
        time.sleep(0.05)
    else:
        raise RuntimeError(name + " did not start; see " + log.name)
    return proc, Qmp(qmp_path), log


class Side:
    def __init__(self, name, argv):
        self.name = name
        self.disk = os.path.join(WORK, name + ".qcow2")
        run("cp", "--sparse=always", os.path.join(WORK, "src.qcow2"), self.disk)
        self.nbd = os.path.join(WORK, name + ".nbd")
        self.proc, self.qmp, self.log = start_daemon(name, argv, self.nbd, [
            "--blockdev",
            "driver=qcow2,node-name=drive0,file.driver=file,file.filename=" + self.disk,
            "--export",
            "type=nbd,id=exp0,node-name=drive0,name=drive0,writable=on",
        ])
        self.jobs = 0

    def uri(self):
        return "nbd+unix:///drive0?socket=" + self.nbd

    def backup(self, target, sync, **extra):
        """Runs one drive-backup; returns its seconds."""
        self.jobs += 1
        job = "job%d" % self.jobs
        run("sync")
        t = time.monotonic()
        self.qmp.cmd("drive-backup", **{"job-id": job, "device": "drive0", "target": target, "sync": sync,
                                        "format": "qcow2"}, **extra)
        self.qmp.wait_job(job)
        return time.monotonic() - t

    def guest(self, commands):
        argv = ["qemu-io", "-f", "raw", self.uri()]
        for c in commands:
            argv += ["-c", c]
        t = time.monotonic()
        run(*argv)
        return time.monotonic() - t

    def stop(self):
        try:
            self.qmp.cmd("quit")
        except Exception:
            pass
        self.proc.wait(timeout=30)


def prepare():
    os.makedirs(WORK, exist_ok=True)
    src = os.path.join(WORK, "src.qcow2")
    if not os.path.exists(src):
        print("preparing a %d MiB fully written qcow2 (random data)..." % SIZE_MB, file=sys.stderr)
        raw = os.path.join(WORK, "src.raw")
        with open(raw, "wb") as f:
            for _ in range(SIZE_MB):
                f.write(os.urandom(1 << 20))
        run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, src)
        os.remove(raw)
    subprocess.run([STRATA, "--version"], check=True, stdout=subprocess.DEVNULL)


def dirty_writes(percent, seed):
    clusters = (SIZE_MB << 20) // CLUSTER
    picks = random.Random(seed).sample(range(clusters), clusters * percent // 100)
    return ["write -P %d %d 64k" % (1 + i % 250, c * CLUSTER) for i, c in enumerate(sorted(picks))]


def backup_round(s, rep, t):
    """One full backup of side s, then incremental ones at 1% and 10% dirty; appends the times to t."""
    full = os.path.join(WORK, s.name + "-full.qcow2")
    if os.path.exists(full):
        os.remove(full)
    t.setdefault("full", []).append(s.backup(full, "full"))
    for pct in (1, 10):
        bitmap = "b%d" % pct
        s.qmp.cmd("block-dirty-bitmap-add", node="drive0", name=bitmap)
        s.guest(dirty_writes(pct, rep * 100 + pct))
        inc = os.path.join(WORK, "%s-inc%d.qcow2" % (s.name, pct))
        if os.path.exists(inc):
            os.remove(inc)
        run("qemu-img", "create", "-f", "qcow2", "-b", full, "-F", "qcow2", inc)
        t.setdefault("inc %d%%" % pct, []).append(s.backup(inc, "incremental", bitmap=bitmap, mode="existing"))
        s.qmp.cmd("block-dirty-bitmap-remove", node="drive0", name=bitmap)


def main():
    prepare()
    sides = [Side("qemu", ["qemu-storage-daemon"]), Side("strata", [STRATA, "daemon"])]
    times = {s.name: {} for s in sides}
    cold = {s.name: {} for s in sides}
    try:
        for rep in range(WARMUP + REPS):
            for s in sides:
                t = times[s.name] if rep >= WARMUP else cold[s.name] if rep == 0 else {}
                backup_round(s, rep, t)
                # guest writes while a full backup runs
                full2 = os.path.join(WORK, s.name + "-full2.qcow2")
                if os.path.exists(full2):
                    os.remove(full2)
                s.jobs += 1
                job = "job%d" % s.jobs
                s.qmp.cmd("drive-backup", **{"job-id": job, "device": "drive0", "target": full2, "sync": "full",
                                             "format": "qcow2"})
                t.setdefault("guest", []).append(
                    s.guest(["write -P 9 %d 1M" % (i << 20) for i in range(GUEST_MB)]))
                s.qmp.wait_job(job)
            if rep < WARMUP:
                continue
            dd = os.path.join(WORK, "dd.out")
            run("sync")
            t0 = time.monotonic()
            run("dd", "if=/dev/zero", "of=" + dd, "bs=4M", "count=%d" % (SIZE_MB // 4), "conv=fdatasync")
            times.setdefault("dd", {}).setdefault("dd", []).append(time.monotonic() - t0)
            os.remove(dd)
    finally:
        for s in sides:
            s.stop()

    mb = {"full": SIZE_MB, "guest": GUEST_MB}
    print()
    print("Medians of %d runs after %d untimed rounds, %d MiB disk, %d cores, %s"
          % (REPS, WARMUP, SIZE_MB, os.cpu_count(), time.strftime("%Y-%m-%d")))
    print("| case | QEMU | Strata | Strata / QEMU |")
    print("|---|---|---|---|")
    cases = ("full", "inc 1%", "inc 10%", "guest")

    def row(case, q, st):
        if case in mb:
            return "| %s | %.0f MB/s | %.0f MB/s | %.2f |" % (case, mb[case] / q, mb[case] / st, q / st)
        return "| %s | %.3f s | %.3f s | %.2f |" % (case, q, st, q / st)

    for case in cases:
        print(row(case, statistics.median(times["qemu"][case]), statistics.median(times["strata"][case])))
    if WARMUP:
        print()
        print("Cold: the first round, in fresh daemons")
        print("| case | QEMU | Strata | Strata / QEMU |")
        print("|---|---|---|---|")
        for case in cases:
            print(row(case, cold["qemu"][case][0], cold["strata"][case][0]))
    print()
    print("Every timed run, seconds (QEMU / Strata):")
    for case in cases:
        print("  %-8s %s / %s" % (case, " ".join("%.3f" % x for x in times["qemu"][case]),
                                  " ".join("%.3f" % x for x in times["strata"][case])))
    dd = statistics.median(times["dd"]["dd"])
    full = statistics.median(times["strata"]["full"])
    print()
    print("durable dd of %d MiB: %.2f s (%.0f MB/s); Strata's full backup takes %.2fx that time"
          % (SIZE_MB, dd, SIZE_MB / dd, full / dd))


if __name__ == "__main__":
    main()
