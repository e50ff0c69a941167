#!/usr/bin/env bash
# Side by side in one run: Strata's NBD export against qemu-storage-daemon's, each serving its own
# copy of the same fully written raw image over a UNIX socket. nbdcopy and qemu-img convert move
# the whole image out of the export (read) and into it (write), with no bitmap and with BITMAPS
# recording dirty bitmaps on the exported node, taking turns round by round. Prints the median
# wall time over REPS runs and the ratio Strata / QEMU (below 1 means Strata is faster), and the
# median CPU time (user + system) of the client itself against each server: a client that needs
# as much CPU as the wall time bounds the case whatever the server does.
#
# With nbdkit installed (apt-get install nbdkit), each round also runs the client against nbdkit's
# file plugin on a third copy of the image (a C server doing the same file I/O), and the floor:
# the same client with no server doing work (a read case reads the image's file directly; a write
# case writes to nbdkit's null plugin, which drops what it gets). No server lets the client finish
# sooner than that, so when the floor is above half of QEMU's time, 2x QEMU cannot be reached with
# that client on this machine.
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
kit=$(command -v nbdkit || true)
if [ -n "$kit" ]; then
  cp --sparse=never "$src" "$work/kit.raw"
fi

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

start_kit() { # NAME PLUGIN ARGS...: an nbdkit server on $work/NAME.nbd serving export drive0
  local name=$1; shift
  rm -f "$work/$name.nbd"
  "$kit" -f -U "$work/$name.nbd" --exportname drive0 "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do [ -S "$work/$name.nbd" ] && return 0; sleep 0.1; done
  echo "bench: nbdkit $* did not start" >&2; cat "$work/$name.log" >&2; exit 1
}
if [ -n "$kit" ]; then
  start_kit kitfile file "$work/kit.raw"
  start_kit kitnull null "size=${size_mb}M"
fi

uri() { echo "nbd+unix:///drive0?socket=$work/$1.nbd"; }

bitmaps() { # add|remove: BITMAPS bitmaps on drive0 of both daemons
  local side i
  for side in qemu strata; do
    for ((i = 0; i < bitmaps; i++)); do
      qmp "$work/$side.qmp" "block-dirty-bitmap-$1" "{\"node\":\"drive0\",\"name\":\"b$i\"}"
    done
  done
}

# run_case NAME TEMPLATE FLOOR: TEMPLATE is the client's command with @URI@ for the export; FLOOR
# the same client with no server doing work: reading the image from its file instead of an export,
# or writing to a server that drops what it gets (@URI@: nbdkit null). Each round runs both daemons
# with no bitmap, then both with BITMAPS recording bitmaps (the other daemon first), then the nbdkit
# servers, so the two settings meet the disk in the same minutes
run_case() {
  local name=$1 tmpl=$2 floor=$3 side t r
  local -a tq=() ts=() cq=() cs=() bq=() bs=() tf=() tn=()
  for ((r = 0; r < reps; r++)); do
    for side in qemu strata; do
      t=$(eval time_ms "${tmpl//@URI@/$(uri $side)}") || exit 1
      if [ $side = qemu ]; then tq+=("${t% *}"); cq+=("${t#* }"); else ts+=("${t% *}"); cs+=("${t#* }"); fi
    done
    bitmaps add
    for side in strata qemu; do
      t=$(eval time_ms "${tmpl//@URI@/$(uri $side)}") || exit 1
      if [ $side = qemu ]; then bq+=("${t% *}"); else bs+=("${t% *}"); fi
    done
    bitmaps remove
    if [ -n "$kit" ]; then
      t=$(eval time_ms "${tmpl//@URI@/$(uri kitfile)}") || exit 1
      tf+=("${t% *}")
      t=$(eval time_ms "${floor//@URI@/$(uri kitnull)}") || exit 1
      tn+=("${t% *}")
    fi
  done
  local mq ms mbq mbs mf=- mn=-
  mq=$(median "${tq[@]}"); ms=$(median "${ts[@]}"); mbq=$(median "${bq[@]}"); mbs=$(median "${bs[@]}")
  if [ -n "$kit" ]; then mf=$(median "${tf[@]}"); mn=$(median "${tn[@]}"); fi
  printf '| %-30s | %7s | %9s | %5s | %7s | %11s | %5s | %6s / %6s | %7s | %7s | %5s |\n' "$name" "$mq" "$ms" \
    "$(ratio "$ms" "$mq")" "$((mq / 2))" "$mf" "$mn" "$(median "${cq[@]}")" "$(median "${cs[@]}")" \
    "$mbq" "$mbs" "$(ratio "$mbs" "$mbq")"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

echo
echo "Medians of $reps runs, ${size_mb} MiB raw image, $(nproc) cores, $(date -u +%Y-%m-%d). Ratio: Strata / QEMU"
echo "(below 1: Strata is faster); 2x QEMU: the time Strata must beat for the issue's target;"
echo "nbdkit file: a C server doing the same file I/O; floor: the same client with no server doing"
echo "work (reading the image's file, or writing to nbdkit null); '-': nbdkit is not installed."
echo "The last three columns: both daemons with $bitmaps recording bitmaps on the exported node."
echo "| case                           | QEMU ms | Strata ms | ratio | 2x QEMU | nbdkit file | floor | client CPU ms (QEMU / Strata) | QEMU ms, $bitmaps bitmaps | Strata ms, $bitmaps bitmaps | ratio |"
echo "|--------------------------------|---------|-----------|-------|---------|-------------|-------|-------------------------------|---------|---------|-------|"
run_case "nbdcopy export -> null" "nbdcopy '@URI@' null:" "nbdcopy '$src' null:"
run_case "nbdcopy file -> export" "nbdcopy '$src' '@URI@'" "nbdcopy '$src' '@URI@'"
run_case "qemu-img convert export -> raw" "qemu-img convert -f raw -O raw '@URI@' '$work/out.raw'" \
  "qemu-img convert -f raw -O raw '$src' '$work/out.raw'"
run_case "qemu-img convert raw -> export" "qemu-img convert -n -f raw -O raw '$src' '@URI@'" \
  "qemu-img convert -n -f raw -O raw '$src' '@URI@'"
rm -f "$work/out.raw" "$work/cpu.txt" "$work/kit.raw"
