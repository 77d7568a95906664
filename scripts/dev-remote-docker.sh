#!/usr/bin/env bash
# A second Docker engine on this host, reached over ssh: the remote engine the tests of
# tests/backends/test_docker_remote.py run against (docs/scale.md). Idempotent; run as root.
#
#   bash scripts/dev-remote-docker.sh start    # make and start it; prints the DOCKER_HOST to use
#   bash scripts/dev-remote-docker.sh stop     # stop it and remove everything start made
#   bash scripts/dev-remote-docker.sh restart-engine   # restart only its dockerd (a real fault)
#   bash scripts/dev-remote-docker.sh cut-network      # refuse (TCP reset) every packet to its sshd
#   bash scripts/dev-remote-docker.sh restore-network  # undo cut-network
#   bash scripts/dev-remote-docker.sh status   # exit 0 when it answers over ssh
#
# What start makes (stop removes all of it):
#   - a sparse ext4 file $IMAGE_FILE ($SIZE), loop-mounted on $DATA_ROOT: the engine's data-root,
#     small so that a test can fill it for real
#   - a bridge $BRIDGE ($BRIDGE_ADDR) for the engine's default network, and networks from the pool
#     $POOL: both outside the main dockerd's 172.17+ ranges; dockerd runs with --iptables=false
#     (at its start it would remove and rebuild the DOCKER chains the main dockerd uses), so the
#     NAT and FORWARD rules for $POOL_ALL are ours, tagged with the comment $NAME
#   - dockerd with its own data-root, exec-root, pidfile, cgroup parent, socket $SOCKET and log $LOG
#   - sshd on 127.0.0.1:$PORT (its own host key, a throwaway client key, root by key only, a
#     client that stops answering dropped after 15 s: its sessions then end even while the
#     network is cut,
#     SetEnv DOCKER_HOST=unix://$SOCKET), and the ssh client alias "Host $NAME" in
#     /etc/ssh/ssh_config.d/$NAME.conf, so that DOCKER_HOST=ssh://root@$NAME reaches the engine
#   - the base image $BASE_IMAGE, copied from the main engine (docker save | docker load)
set -euo pipefail

NAME=${PTO_REMOTE_NAME:-pto-docker2}
SIZE=${PTO_REMOTE_SIZE:-3G}
PORT=${PTO_REMOTE_PORT:-22022}
BASE_IMAGE=${PYTEST_ORBSTACK_BASE_IMAGE:-debian:bookworm}
IMAGE_FILE=/var/tmp/$NAME.ext4
DATA_ROOT=/var/lib/$NAME
EXEC_ROOT=/run/$NAME
SOCKET=/run/$NAME.sock
PIDFILE=/run/$NAME.pid
LOG=/var/log/$NAME.log
SSH_DIR=/run/$NAME-ssh
SSH_ALIAS=/etc/ssh/ssh_config.d/$NAME.conf
BRIDGE=ptodk2br0
BRIDGE_ADDR=10.213.255.1/24
POOL=10.213.0.0/17
POOL_ALL=10.213.0.0/16
LOCAL=(docker -H "unix://$SOCKET")
log() { printf '[dev-remote-docker.sh] %s\n' "$*" >&2; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

ensure_packages() {
  command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] && return 0
  log "installing openssh-server"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null; }
}

ensure_disk() {
  mountpoint -q "$DATA_ROOT" && return 0
  if [ ! -f "$IMAGE_FILE" ]; then
    truncate -s "$SIZE" "$IMAGE_FILE"
    mkfs.ext4 -q -F "$IMAGE_FILE"
  fi
  mkdir -p "$DATA_ROOT"
  mount -o loop "$IMAGE_FILE" "$DATA_ROOT"
}

ensure_network() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$BRIDGE_ADDR" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
  rule nat POSTROUTING -s "$POOL_ALL" ! -d "$POOL_ALL" -m comment --comment "$NAME" -j MASQUERADE
  rule filter FORWARD -s "$POOL_ALL" -m comment --comment "$NAME" -j ACCEPT
  rule filter FORWARD -d "$POOL_ALL" -m comment --comment "$NAME" -j ACCEPT
}

# rule TABLE CHAIN RULE...: insert the rule at the chain's top unless it is there.
rule() {
  local table=$1 chain=$2; shift 2
  iptables -t "$table" -C "$chain" "$@" 2>/dev/null || iptables -t "$table" -I "$chain" 1 "$@"
}

# unrule TABLE CHAIN: delete the chain's rules tagged $NAME.
unrule() {
  local spec args
  { iptables -t "$1" -S "$2" 2>/dev/null || true; } | { grep -F -- "--comment $NAME" || true; } |
    while read -r _ _ spec; do read -ra args <<<"$spec"; iptables -t "$1" -D "$2" "${args[@]}"; done
}

start_dockerd() {
  "${LOCAL[@]}" info >/dev/null 2>&1 && return 0
  log "starting dockerd $NAME (log: $LOG)"
  mkdir -p "$EXEC_ROOT"
  nohup dockerd --data-root "$DATA_ROOT" --exec-root "$EXEC_ROOT" --pidfile "$PIDFILE" \
    -H "unix://$SOCKET" --bridge "$BRIDGE" --iptables=false --ip-masq=false \
    --default-address-pool "base=$POOL,size=24" --cgroup-parent "/$NAME" >>"$LOG" 2>&1 &
  for _ in $(seq 1 60); do "${LOCAL[@]}" info >/dev/null 2>&1 && return 0; sleep 0.5; done
  log "dockerd $NAME did not start; see $LOG"; tail -20 "$LOG" >&2
  return 1
}

stop_dockerd() {
  pid_alive "$PIDFILE" || return 0
  local pid; pid=$(cat "$PIDFILE")
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  log "dockerd $NAME did not stop in 30 s"; return 1
}

# stop_sshd: its sessions first (they would outlive it), reaped by it, then sshd itself.
stop_sshd() {
  pid_alive "$SSH_DIR/sshd.pid" || return 0
  local pid; pid=$(cat "$SSH_DIR/sshd.pid")
  pkill -P "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do pgrep -P "$pid" >/dev/null || break; sleep 0.25; done
  kill "$pid"
}

ensure_sshd() {
  mkdir -p "$SSH_DIR" /run/sshd
  chmod 700 "$SSH_DIR"
  [ -f "$SSH_DIR/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$SSH_DIR/host_key"
  [ -f "$SSH_DIR/client_key" ] || ssh-keygen -q -t ed25519 -N '' -C "$NAME" -f "$SSH_DIR/client_key"
  cp "$SSH_DIR/client_key.pub" "$SSH_DIR/authorized_keys"
  printf '%s\n' "Port $PORT" "ListenAddress 127.0.0.1" "HostKey $SSH_DIR/host_key" \
    "PidFile $SSH_DIR/sshd.pid" "AuthorizedKeysFile $SSH_DIR/authorized_keys" \
    "PermitRootLogin prohibit-password" "PasswordAuthentication no" "KbdInteractiveAuthentication no" \
    "UsePAM no" "MaxStartups 100:30:200" "MaxSessions 100" \
    "ClientAliveInterval 5" "ClientAliveCountMax 3" "SetEnv DOCKER_HOST=unix://$SOCKET" \
    >"$SSH_DIR/sshd_config"
  printf '%s\n' "Host $NAME" "  HostName 127.0.0.1" "  Port $PORT" "  User root" \
    "  IdentityFile $SSH_DIR/client_key" "  IdentitiesOnly yes" "  UserKnownHostsFile $SSH_DIR/known_hosts" \
    "  StrictHostKeyChecking accept-new" "  BatchMode yes" \
    "  ControlMaster auto" "  ControlPath $SSH_DIR/master-%C" "  ControlPersist 120" >"$SSH_ALIAS"
  pid_alive "$SSH_DIR/sshd.pid" || /usr/sbin/sshd -f "$SSH_DIR/sshd_config"
  for _ in $(seq 1 20); do ssh "$NAME" true 2>/dev/null && return 0; sleep 0.5; done
  log "ssh $NAME does not answer"; return 1
}

ensure_image() {
  "${LOCAL[@]}" image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return 0
  log "copying $BASE_IMAGE into $NAME (docker save | docker load)"
  docker save "$BASE_IMAGE" | "${LOCAL[@]}" load -q >/dev/null
}

start() {
  [ "$(id -u)" = 0 ] || { log "run as root"; return 1; }
  ensure_packages
  ensure_disk
  ensure_network
  start_dockerd
  ensure_image
  ensure_sshd
  docker -H "ssh://root@$NAME" version --format '{{.Server.Version}}' >/dev/null
  echo "DOCKER_HOST=ssh://root@$NAME"
}

stop() {
  if "${LOCAL[@]}" info >/dev/null 2>&1; then
    "${LOCAL[@]}" ps -aq | xargs -r "${LOCAL[@]}" rm -f >/dev/null
    "${LOCAL[@]}" network prune -f >/dev/null  # their bridges are in the host's namespace: dockerd's stop leaves them
  fi
  stop_dockerd
  [ ! -f "$SSH_ALIAS" ] || ssh -O exit "$NAME" 2>/dev/null || true  # the shared connection
  stop_sshd
  rm -rf "$SSH_DIR" "$SSH_ALIAS" "$EXEC_ROOT" "$SOCKET" "$PIDFILE" "$LOG"
  pgrep -x sshd >/dev/null || rmdir /run/sshd 2>/dev/null || true  # sshd's own dir, when no sshd is left
  ! mountpoint -q "$DATA_ROOT" || umount "$DATA_ROOT" || umount -l "$DATA_ROOT"
  rm -rf "$DATA_ROOT" "$IMAGE_FILE"
  unrule nat POSTROUTING
  unrule filter FORWARD
  unrule filter INPUT
  ! ip link show "$BRIDGE" >/dev/null 2>&1 || ip link del "$BRIDGE"
}

# restart_engine: stop and start its dockerd. A dockerd starting again on a data-root it used
# before deletes the host's docker0 (seen here with dockerd 20.10: a fresh data-root leaves it,
# the same one again removes it), and the main engine's default network then has no bridge:
# every `docker run` without --network fails. docker0 is put back as it was.
restart_engine() {
  local addr
  addr=$(ip -4 -o addr show docker0 2>/dev/null | awk '{print $4; exit}')
  stop_dockerd
  start_dockerd
  if [ -n "$addr" ] && ! ip link show docker0 >/dev/null 2>&1; then
    log "dockerd $NAME removed the host's docker0 when it started again: putting it back ($addr)"
    ip link add docker0 type bridge
    ip addr add "$addr" dev docker0
    ip link set docker0 up
  fi
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  restart-engine) restart_engine ;;
  cut-network) rule filter INPUT -p tcp --dport "$PORT" -m comment --comment "$NAME" -j REJECT --reject-with tcp-reset ;;
  restore-network) unrule filter INPUT ;;
  status) docker -H "ssh://root@$NAME" info >/dev/null 2>&1 ;;
  *) echo "usage: $0 start|stop|restart-engine|cut-network|restore-network|status" >&2; exit 2 ;;
esac
