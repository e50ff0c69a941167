#!/usr/bin/env bash
# Side by side in one run: Strata's image tools against QEMU's on the same 2 GiB fully written
# qcow2 image (convert with and without -C, copy offloading). Prints the median wall time of each command (whole process, start-up included)
# over REPS runs, the ratio Strata / QEMU (below 1 means Strata is faster) and every run.
#
#   bench/scripts/img-vs-qemu.sh            # REPS=3 SIZE_MB=2048 WORK=/tmp/strata-bench OUT=$WORK
#   OUT=/dev/shm bench/scripts/img-vs-qemu.sh   # outputs on tmpfs
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
reps=${REPS:-3}
size_mb=${SIZE_MB:-2048}
work=${WORK:-/tmp/strata-bench}
# where the outputs go: OUT=/dev/shm (tmpfs) takes this VM's disk, whose speed swings by 4x from
# one minute to the next, out of the comparison and leaves the tools' own work
out=${OUT:-$work}
strata="$root/strata"
mkdir -p "$work" "$out"
"$strata" --version >/dev/null   # builds the jar outside the timings

now_ns() { date +%s%N; }
# median of the arguments
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# time_ms PREP -- CMD...: runs PREP (untimed), then times CMD; prints milliseconds
time_ms() {
  local prep="$1"; shift
  eval "$prep"
  sync
  local s e; s=$(now_ns)
  "$@" >/dev/null || { echo "bench: command failed: $*" >&2; return 1; }
  e=$(now_ns)
  echo $(( (e - s) / 1000000 ))
}

src="$work/src.qcow2"
if [ ! -f "$src" ] || [ "$(qemu-img info --output=json "$src" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')" != $((size_mb << 20)) ]; then
  echo "preparing a ${size_mb} MiB fully written qcow2 source (random data)..."
  head -c $((size_mb << 20)) /dev/urandom > "$work/src.raw"
  qemu-img convert -f raw -O qcow2 "$work/src.raw" "$src"
  rm -f "$work/src.raw"
fi

count=$size_mb
io_cmds() { local op=$1 i; for ((i = 0; i < count; i++)); do printf -- "-c\n%s $((i << 20)) 1M\n" "$op"; done; }
mapfile -t qemu_writes < <(io_cmds write)
mapfile -t qemu_reads < <(io_cmds read)

declare -A results
run_case() {
  local name=$1 prep=$2; shift 2
  local qemu=() strata_cmd=() side=qemu t
  local -a tq=() ts=()
  for arg in "$@"; do
    if [ "$arg" = "--" ]; then side=strata; continue; fi
    if [ $side = qemu ]; then qemu+=("$arg"); else strata_cmd+=("$arg"); fi
  done
  # the two take turns going first, so neither always runs just after the other's output was
  # deleted (this disk discards freed blocks, and the host's cost of that lands on the next writer)
  for ((r = 0; r < reps; r++)); do
    if ((r % 2 == 0)); then
      t=$(time_ms "$prep" "${qemu[@]}") || exit 1; tq+=("$t")
      t=$(time_ms "$prep" "${strata_cmd[@]}") || exit 1; ts+=("$t")
    else
      t=$(time_ms "$prep" "${strata_cmd[@]}") || exit 1; ts+=("$t")
      t=$(time_ms "$prep" "${qemu[@]}") || exit 1; tq+=("$t")
    fi
  done
  local mq ms; mq=$(median "${tq[@]}"); ms=$(median "${ts[@]}")
  printf '| %-32s | %8s | %8s | %6s | %s / %s |\n' "$name" "$mq" "$ms" \
    "$(awk -v a="$ms" -v b="$mq" 'BEGIN {printf "%.2f", a / b}')" "${tq[*]}" "${ts[*]}"
}

echo
echo "Medians of $reps runs, ${size_mb} MiB image, outputs in $out, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo "| case                             | QEMU ms  | Strata ms| ratio  | runs, ms (QEMU / Strata) |"
echo "|----------------------------------|----------|----------|--------|---|"
run_case "convert qcow2 -> qcow2" "rm -f $out/dst.qcow2" \
  qemu-img convert -f qcow2 -O qcow2 "$src" "$out/dst.qcow2" -- \
  "$strata" img convert -f qcow2 -O qcow2 "$src" "$out/dst.qcow2"
run_case "convert qcow2 -> raw" "rm -f $out/dst.raw" \
  qemu-img convert -f qcow2 -O raw "$src" "$out/dst.raw" -- \
  "$strata" img convert -f qcow2 -O raw "$src" "$out/dst.raw"
run_case "convert -C qcow2 -> qcow2" "rm -f $out/dst.qcow2" \
  qemu-img convert -C -f qcow2 -O qcow2 "$src" "$out/dst.qcow2" -- \
  "$strata" img convert -C -f qcow2 -O qcow2 "$src" "$out/dst.qcow2"
run_case "convert -C qcow2 -> raw" "rm -f $out/dst.raw" \
  qemu-img convert -C -f qcow2 -O raw "$src" "$out/dst.raw" -- \
  "$strata" img convert -C -f qcow2 -O raw "$src" "$out/dst.raw"
fresh="rm -f $out/w.qcow2; qemu-img create -q -f qcow2 $out/w.qcow2 ${size_mb}M"
run_case "seq 1 MiB writes (qemu-io)" "$fresh" \
  qemu-io -f qcow2 "${qemu_writes[@]}" "$out/w.qcow2" -- \
  "$strata" img bench -q -w -s 1M -c "$count" -d 1 -f qcow2 "$out/w.qcow2"
run_case "seq 1 MiB reads (qemu-io)" ":" \
  qemu-io -f qcow2 "${qemu_reads[@]}" "$out/w.qcow2" -- \
  "$strata" img bench -q -s 1M -c "$count" -d 1 -f qcow2 "$out/w.qcow2"
run_case "seq 1 MiB writes (img bench)" "$fresh" \
  qemu-img bench -q -w -s 1M -c "$count" -d 1 -f qcow2 "$out/w.qcow2" -- \
  "$strata" img bench -q -w -s 1M -c "$count" -d 1 -f qcow2 "$out/w.qcow2"
run_case "seq 1 MiB reads (img bench)" ":" \
  qemu-img bench -q -s 1M -c "$count" -d 1 -f qcow2 "$out/w.qcow2" -- \
  "$strata" img bench -q -s 1M -c "$count" -d 1 -f qcow2 "$out/w.qcow2"

# the outputs are made again on every run; on tmpfs they would hold 6 GiB of memory
rm -f "$out/dst.qcow2" "$out/dst.raw" "$out/w.qcow2"
