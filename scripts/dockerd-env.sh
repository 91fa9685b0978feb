#!/usr/bin/env bash
# A private, offline Docker engine (Debian's docker.io) with everything of its own under one
# directory, for native-tests/docker-real.test.ts and for trying ovlfs by hand:
#
#   bash scripts/dockerd-env.sh start DIR   start it in the background, wait until it answers, print
#                                          `export DOCKER_HOST=...` and `OVLFS_DOCKER_ROOT=...` lines
#                                          (eval "$(bash scripts/dockerd-env.sh start /tmp/d)")
#   bash scripts/dockerd-env.sh run DIR     the same daemon in the foreground (exec: this process becomes
#                                          dockerd; the test harness runs it so, under setpriv --pdeathsig)
#   bash scripts/dockerd-env.sh stop DIR    stop it (SIGTERM, wait, SIGKILL, by pid), unmount all that is
#                                          mounted below DIR, remove its cgroups, and remove DIR
#
# Layout of DIR: data/ (--data-root: overlay2/, image/overlay2/, containers/, containerd's root),
# exec/ (--exec-root: netns, runc state; exec/containerd/: our containerd's config, socket, pid
# file, state), docker.sock, dockerd.pid, dockerd.log (both daemons log there), daemon.json (an
# empty config, so that the host's /etc/docker/daemon.json is not read). Then:
# `docker -H unix://DIR/docker.sock ...` and `ovlfs layers --docker-root DIR/data REF`.
#
# What keeps it off the host: a containerd of its own, started here and handed to dockerd with
# --containerd (without that flag dockerd 20.10 would use a system containerd whenever
# /run/containerd/containerd.sock exists, and start its own only otherwise); no iptables/ip6tables
# rules, no bridge (docker0), no IP forwarding or masquerading, no userland proxy; containers'
# cgroups below /<basename DIR> (removed at stop). Not avoidable with 20.10: dockerd creates
# /etc/docker/key.json (its trust key) when missing and /run/docker/plugins, and containerd's
# shims put their sockets in /run/containerd/s/. Only processes whose pids this script finds in
# pid files below DIR are ever signalled, never any process by name.
set -euo pipefail

die() { printf 'dockerd-env: %s\n' "$*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 start|run|stop DIR"
cmd="$1"
[ -n "$2" ] || die "DIR is empty"
DIR="$(realpath -m -- "$2")"
case "$DIR" in /|/tmp|/var|/var/lib|/var/lib/docker|/run|/root|/home) die "refusing to use $DIR as the private docker dir" ;; esac

DOCKER=/usr/bin/docker   # the client that comes with docker.io (another `docker` may be first on PATH)
DOCKERD=/usr/sbin/dockerd
CONTAINERD=/usr/bin/containerd
SOCK="$DIR/docker.sock"
PIDFILE="$DIR/dockerd.pid"
CTD_DIR="$DIR/exec/containerd"
CTD_SOCK="$CTD_DIR/containerd.sock"
CTD_PIDFILE="$CTD_DIR/containerd.pid"
CGROUP_PARENT="/$(basename "$DIR")"

alive() { [ -d "/proc/$1" ] && ! grep -qE '^State:[[:space:]]+[ZX]' "/proc/$1/status" 2>/dev/null; }

check_installed() {
  [ -x "$DOCKERD" ] && [ -x "$DOCKER" ] ||
    die "docker.io is not installed ($DOCKERD and $DOCKER are needed): apt-get install docker.io (scripts/setup.sh installs it)"
  [ -x "$CONTAINERD" ] && command -v runc >/dev/null ||
    die "containerd and runc are not installed (docker.io depends on them): apt-get install docker.io"
  command -v setpriv >/dev/null || die "setpriv (util-linux) is not installed"
}

daemon_args() {
  printf '%s\n' \
    --config-file "$DIR/daemon.json" \
    --data-root "$DIR/data" \
    --exec-root "$DIR/exec" \
    --pidfile "$PIDFILE" \
    -H "unix://$SOCK" \
    --containerd "$CTD_SOCK" \
    --storage-driver overlay2 \
    --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    --bridge=none --userland-proxy=false \
    --cgroup-parent "$CGROUP_PARENT" \
    --log-level warn
}

prepare() {
  check_installed
  mkdir -p "$DIR/data/containerd" "$CTD_DIR"
  chmod 0700 "$DIR/exec" "$CTD_DIR"
  [ -f "$DIR/daemon.json" ] || printf '{}\n' >"$DIR/daemon.json"
  # what dockerd's own supervisor would write (moby libcontainerd/supervisor), minus the debug socket
  cat >"$CTD_DIR/containerd.toml" <<EOF
version = 2
root = "$DIR/data/containerd/daemon"
state = "$CTD_DIR/daemon"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
oom_score = 0

[grpc]
  address = "$CTD_SOCK"
  uid = 0
  gid = 0
EOF
}

# Our containerd, in the background; it gets SIGTERM when the process that started it - this
# shell, which then becomes dockerd - exits. Waits for its socket.
start_containerd() {
  setpriv --pdeathsig TERM "$CONTAINERD" --config "$CTD_DIR/containerd.toml" --log-level warn </dev/null &
  echo $! >"$CTD_PIDFILE"
  for _ in $(seq 1 100); do
    [ -S "$CTD_SOCK" ] && return 0
    alive "$(cat "$CTD_PIDFILE")" || die "containerd exited before it listened on $CTD_SOCK"
    sleep 0.1
  done
  die "containerd did not listen on $CTD_SOCK within 10 s"
}

case "$cmd" in
  run)
    prepare
    start_containerd
    mapfile -t args < <(daemon_args)
    exec "$DOCKERD" "${args[@]}"
    ;;

  start)
    prepare
    if [ -f "$PIDFILE" ] && alive "$(cat "$PIDFILE")"; then die "a dockerd already runs for $DIR (pid $(cat "$PIDFILE"))"; fi
    setsid bash "$0" run "$DIR" </dev/null >"$DIR/dockerd.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 120); do
      if [ -S "$SOCK" ] && "$DOCKER" -H "unix://$SOCK" version >/dev/null 2>&1; then
        printf 'export DOCKER_HOST=unix://%s\nexport OVLFS_DOCKER_ROOT=%s\n' "$SOCK" "$DIR/data"
        printf '# dockerd pid %s; stop with: bash %s stop %s\n' "$pid" "$0" "$DIR"
        exit 0
      fi
      alive "$pid" || { tail -n 20 "$DIR/dockerd.log" >&2; die "dockerd exited before it answered (log: $DIR/dockerd.log)"; }
      sleep 0.5
    done
    tail -n 20 "$DIR/dockerd.log" >&2
    die "dockerd did not answer on $SOCK within 60 s (log: $DIR/dockerd.log); stop it with: $0 stop $DIR"
    ;;

  stop)
    [ -e "$DIR" ] || exit 0
    # 1. the daemon, by the pid in its pid file (it stops its containerd and containers itself)
    if [ -f "$PIDFILE" ]; then
      pid="$(cat "$PIDFILE" 2>/dev/null || true)"
      if [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$DIR"; then
        # running containers would each hold the shutdown for their stop timeout: kill them first
        ids="$(timeout 10 "$DOCKER" -H "unix://$SOCK" ps -q 2>/dev/null || true)"
        if [ -n "$ids" ]; then
          # shellcheck disable=SC2086
          timeout 20 "$DOCKER" -H "unix://$SOCK" kill $ids >/dev/null 2>&1 || true
        fi
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.2; done
        if alive "$pid"; then
          echo "dockerd-env: dockerd $pid ignored SIGTERM for 20 s; SIGKILL" >&2
          kill -KILL "$pid" 2>/dev/null || true
          for _ in $(seq 1 25); do alive "$pid" || break; sleep 0.2; done
        fi
      fi
    fi
    # 2. our containerd (normally already gone: SIGTERM when dockerd exits), politely first
    if [ -f "$CTD_PIDFILE" ]; then
      p="$(tr -dc '0-9' <"$CTD_PIDFILE")"
      if [ -n "$p" ] && alive "$p" && tr '\0' ' ' <"/proc/$p/cmdline" | grep -qF -- "$DIR"; then
        kill -TERM "$p" 2>/dev/null || true
        for _ in $(seq 1 50); do alive "$p" || break; sleep 0.2; done
      fi
    fi
    #    and whatever is left: containerd, shims, container processes, by the pid files below DIR
    #    (containerd.pid, shim.pid, init.pid)
    while IFS= read -r -d '' f; do
      p="$(head -c 32 "$f" 2>/dev/null | tr -dc '0-9')"
      if [ -n "$p" ] && [ "$p" -gt 1 ] && alive "$p"; then
        echo "dockerd-env: killing leftover pid $p (from $f)" >&2
        kill -KILL "$p" 2>/dev/null || true
      fi
    done < <(find "$DIR/exec" "$DIR/data" -xdev -name '*.pid' -type f -print0 2>/dev/null)
    # 3. every mount below DIR (overlay merged dirs, shm, netns, test mounts), deepest first
    for _ in 1 2 3 4 5; do
      mapfile -t mnts < <(awk '{ print $5 }' /proc/self/mountinfo | while IFS= read -r m; do
        m="$(printf '%b' "$m")"
        case "$m" in "$DIR" | "$DIR"/*) printf '%s\n' "$m" ;; esac
      done | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2- | uniq)
      [ "${#mnts[@]}" -gt 0 ] || break
      for m in "${mnts[@]}"; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
      done
    done
    if awk '{ print $5 }' /proc/self/mountinfo | grep -qF -- "$DIR"; then
      die "something is still mounted below $DIR; not removing it"
    fi
    # 4. the containers' cgroups (empty once their processes are gone)
    for c in /sys/fs/cgroup/*"$CGROUP_PARENT" /sys/fs/cgroup"$CGROUP_PARENT"; do
      [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    # 5. the directory itself
    rm -rf --one-file-system -- "$DIR"
    [ ! -e "$DIR" ] || die "could not remove $DIR"
    ;;

  *) die "unknown command $cmd (start|run|stop)" ;;
esac
