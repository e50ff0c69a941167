#!/usr/bin/env bash
# Side by side in one run: Strata's NBD export against qemu-storage-daemon's, each serving its own
# copy of the same fully written raw image over a UNIX socket. nbdcopy and qemu-img convert move
# the whole image out of the export (read) and into it (write), first with no bitmap, then with
# BITMAPS recording dirty bitmaps on the exported node. Prints the median wall time over REPS runs
# and the ratio Strata / QEMU (below 1 means Strata is faster), and the median CPU time (user +
# system) of the client itself against each server: a client that needs as much CPU as the
# wall time bounds the case whatever the server does.
#
#   bench/scripts/nbd-vs-qemu.sh          # REPS=3 SIZE_MB=2048 BITMAPS=8 WORK=/tmp/strata-nbd-bench
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
reps=${REPS:-3}
size_mb=${SIZE_MB:-2048}
bitmaps=${BITMAPS:-8}
work=${WORK:-/tmp/strata-nbd-bench}
strata="$root/strata"
mkdir -p "$work"
"$strata" --version >/dev/null   # builds the jar outside the timings

now_ns() { date +%s%N; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# time_ms COMMAND...: prints the wall time and the command's own CPU time, in milliseconds
time_ms() {
  sync
  local s e cpu; s=$(now_ns)
  /usr/bin/time -f "%U %S" -o "$work/cpu.txt" "$@" >/dev/null 2>&1 || { echo "bench: command failed: $*" >&2; return 1; }
  e=$(now_ns)
  cpu=$(awk '{printf "%d", ($1 + $2) * 1000}' "$work/cpu.txt")
  echo "$(( (e - s) / 1000000 )) $cpu"
}

# qmp SOCKET COMMAND [JSON-ARGUMENTS]: one command on a fresh QMP connection; fails on an error
qmp() {
  python3 - "$@" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
f.readline()
def run(name, args=None):
    m = {"execute": name}
    if args: m["arguments"] = args
    f.write(json.dumps(m) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "event" not in r:
            if "error" in r: sys.exit("qmp: %s: %s" % (name, r["error"]["desc"]))
            return r
run("qmp_capabilities")
run(sys.argv[2], json.loads(sys.argv[3]) if len(sys.argv) > 3 else None)
EOF
}

src="$work/src.raw"
if [ ! -f "$src" ] || [ "$(stat -c %s "$src")" != $((size_mb << 20)) ]; then
  echo "preparing a ${size_mb} MiB source image of random data..."
  head -c $((size_mb << 20)) /dev/urandom > "$src"
fi
cp --sparse=never "$src" "$work/qemu.raw"
cp --sparse=never "$src" "$work/strata.raw"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start_daemon() { # NAME COMMAND...
  local name=$1; shift
  rm -f "$work/$name.qmp" "$work/$name.nbd"
  "$@" --blockdev "driver=file,node-name=file0,filename=$work/$name.raw" \
    --blockdev driver=raw,node-name=drive0,file=file0 \
    --nbd-server "addr.type=unix,addr.path=$work/$name.nbd" \
    --export type=nbd,id=exp0,node-name=drive0,name=drive0,writable=on \
    --chardev "socket,id=m,path=$work/$name.qmp,server=on,wait=off" --monitor chardev=m \
    >"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do [ -S "$work/$name.nbd" ] && [ -S "$work/$name.qmp" ] && return 0; sleep 0.1; done
  echo "bench: $name did not start" >&2; cat "$work/$name.log" >&2; exit 1
}
start_daemon qemu qemu-storage-daemon
start_daemon strata "$strata" daemon

uri() { echo "nbd+unix:///drive0?socket=$work/$1.nbd"; }

run_case() { # NAME COMMAND-TEMPLATE (with @URI@ for the export)
  local name=$1 tmpl=$2 side t cmd
  local -a tq=() ts=() cq=() cs=()
  for ((r = 0; r < reps; r++)); do
    for side in qemu strata; do
      cmd=${tmpl//@URI@/$(uri $side)}
      t=$(eval time_ms "$cmd") || exit 1
      if [ $side = qemu ]; then tq+=("${t% *}"); cq+=("${t#* }"); else ts+=("${t% *}"); cs+=("${t#* }"); fi
    done
  done
  local mq ms; mq=$(median "${tq[@]}"); ms=$(median "${ts[@]}")
  printf '| %-40s | %8s | %8s | %6s | %6s / %6s |\n' "$name" "$mq" "$ms" \
    "$(awk -v a="$ms" -v b="$mq" 'BEGIN {printf "%.2f", a / b}')" "$(median "${cq[@]}")" "$(median "${cs[@]}")"
}

cases() { # LABEL
  run_case "nbdcopy export -> null: $1" "nbdcopy '@URI@' null:"
  run_case "nbdcopy file -> export $1" "nbdcopy '$src' '@URI@'"
  run_case "qemu-img convert export -> raw $1" "qemu-img convert -f raw -O raw '@URI@' '$work/out.raw'"
  run_case "qemu-img convert raw -> export $1" "qemu-img convert -n -f raw -O raw '$src' '@URI@'"
}

echo
echo "Medians of $reps runs, ${size_mb} MiB raw image, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo "| case                                     | QEMU ms  | Strata ms| ratio  | client CPU ms (QEMU / Strata) |"
echo "|------------------------------------------|----------|----------|--------|-------------------------------|"
cases "(no bitmap)"
for side in qemu strata; do
  for ((i = 0; i < bitmaps; i++)); do
    qmp "$work/$side.qmp" block-dirty-bitmap-add "{\"node\":\"drive0\",\"name\":\"b$i\"}"
  done
done
cases "($bitmaps bitmaps)"
rm -f "$work/out.raw" "$work/cpu.txt"
