#!/bin/bash
# Runs scripts/stress.js and watches its worker processes; if one stays in
# uninterruptible sleep (D: waiting on the mount) for WAIT seconds, dumps
# what the daemon's threads are doing before anything is torn down:
#   DIR/gdb.txt      gdb "thread apply all bt" of the daemon (libfuse threads in
#                    wait_path/queue_path wait for libfuse's path locks, in
#                    uv_sem_wait for the JS thread)
#   DIR/tasks.txt    each daemon thread's state and wchan
#   DIR/workers.txt  each worker's state and kernel stack
# then ends the run (a worker asleep on a directory lock cannot be killed, so
# the mount is detached with umount -l). Written for the hang of 2026-12-01,
# since explained (libfuse 2's path-lock deadlock, patch item 28; README,
# "Load: concurrency stress"); kept for any hang to come.
#
#   bash scripts/load/watch-stress.sh DIR [WAIT=60] -- [stress.js options...]
# Exit: stress.js's exit code, or 3 when a stuck worker was seen (dump in DIR).
set -u
dir=${1:?usage: watch-stress.sh DIR [WAIT] -- [stress.js options]}; shift
wait_s=60
if [ "${1:-}" != "--" ] && [ -n "${1:-}" ]; then wait_s=$1; shift; fi
[ "${1:-}" = "--" ] && shift
command -v gdb > /dev/null || { echo "watch-stress: gdb is not installed" >&2; exit 2; }
mkdir -p "$dir"
here=$(cd "$(dirname "$0")/../.." && pwd)
node "$here/scripts/stress.js" --stall-seconds 3600 "$@" > "$dir/stress.json" 2> "$dir/stress.err" &
stress=$!
declare -A since=()
while kill -0 "$stress" 2> /dev/null; do
  sleep 3
  for w in $(pgrep -P "$stress" -f stress-worker.js); do
    if [ "$(awk '{print $3}' "/proc/$w/stat" 2> /dev/null)" != D ]; then unset "since[$w]"; continue; fi
    [ -z "${since[$w]:-}" ] && since[$w]=$(date +%s)
    [ $(( $(date +%s) - ${since[$w]} )) -lt "$wait_s" ] && continue
    daemon=$(pgrep -f -- "--ovlfs-daemon" | while read -r p; do grep -qs "ovlfs-stress" "/proc/$p/cmdline" && echo "$p"; done | head -1)
    echo "worker $w in D for ${wait_s} s at $(date +%T); daemon ${daemon:-not found}" | tee "$dir/what.txt" >&2
    if [ -n "$daemon" ]; then
      gdb -p "$daemon" -batch -ex "thread apply all bt 16" > "$dir/gdb.txt" 2>&1
      for t in /proc/"$daemon"/task/*; do echo "$t $(cat "$t/comm" 2> /dev/null) $(awk '{print $3}' "$t/stat" 2> /dev/null) $(cat "$t/wchan" 2> /dev/null)"; done > "$dir/tasks.txt"
    fi
    for x in $(pgrep -P "$stress" -f stress-worker.js); do echo "== worker $x $(awk '{print $3}' "/proc/$x/stat")"; cat "/proc/$x/stack"; done > "$dir/workers.txt" 2> /dev/null
    kill "$stress"
    mnt=$(grep -o "/tmp/ovlfs-stress-[A-Za-z0-9]*/mnt" /proc/mounts | head -1)
    [ -n "$mnt" ] && umount -l "$mnt"
    wait "$stress"
    exit 3
  done
done
wait "$stress"
