#!/usr/bin/env bash
# netlab: a simulated LAN made of network namespaces, for multi-node tests (root only).
#
#   netlab.sh up N [--prefix P] [--ipv6 | --subnet K]  hub namespace P-hub holding bridge br0, and hosts P1..PN
#   netlab.sh down [--prefix P]      stop what still runs in them, delete them (idempotent)
#   netlab.sh exec HOST cmd...       run cmd inside host HOST (P3, or just 3)
#   netlab.sh list [--prefix P]      print "name address" for each host
#
# Layout (the default prefix is "emlab"):
#
#   emlab-hub:  br0 ──┬── h1 ══ veth ══ lan0 (emlab1, 198.18.0.1/15)
#                     ├── h2 ══ veth ══ lan0 (emlab2, 198.18.0.2/15)
#                     └── hN ══ veth ══ lan0 (emlabN, 198.18.x.y/15)
#
# Nothing is created in the caller's (root) namespace: the veth pairs are made inside
# the hub and their host ends moved straight into the host namespaces, so multicast
# from a test can never reach the machine's own interfaces. Each host has lo up (and
# multicast-capable) and a 224.0.0.0/4 route on lan0, which mDNS needs. Addresses come
# from 198.18.0.0/15 (the benchmarking range): host i gets 198.18.(i/256).(i%256).
#
# With --subnet K (1-255) the LAN is 198.18.K.0/24 instead: host i gets 198.18.K.i/24
# (at most 249 hosts; .250-.254 stay free for a namespace joining several such LANs, as
# the NATS tests' backbone does). Two labs on different subnets cannot route to each other.
#
# With --ipv6 the LAN is IPv6 only: no IPv4 address at all, host i gets 2001:db8::<i in
# hex>/64 (the documentation range) besides its link-local fe80:: address, and duplicate
# address detection is off so both are usable at once (nothing else is on this link).
# IPv6 needs no multicast route: the kernel has ff00::/8 on every interface.
set -Eeuo pipefail

prog=$(basename "$0")
die () { printf '%s: %s\n' "$prog" "$*" >&2; exit 1; }
say () { [ -n "${NETLAB_QUIET:-}" ] || printf '[netlab] %s\n' "$*" >&2; }

PREFIX=${NETLAB_PREFIX:-emlab}
MAX_HOSTS=1000
IPV6=""
SUBNET=""

host_addr () {
  local i=$1
  if [ -n "$SUBNET" ]; then printf '198.18.%d.%d' "$SUBNET" "$i"; else printf '198.18.%d.%d' $((i / 256)) $((i % 256)); fi
}
host_prefix_len () { if [ -n "$SUBNET" ]; then echo 24; else echo 15; fi; }
host_addr6 () { local i=$1; printf '2001:db8::%x' "$i"; }

check_prefix () {
  # Namespace names become paths under /run/netns, and down deletes by pattern: keep
  # the prefix plain so that it can neither escape nor match someone else's lab. It may
  # not end in a digit, or lab "em1" would own the hosts of lab "em" (em1 + 2 = em12).
  [[ "$PREFIX" =~ ^[a-zA-Z][a-zA-Z0-9_]{0,29}[a-zA-Z_]$ ]] ||
    die "bad prefix '$PREFIX': use 2-31 letters, digits or _, starting with a letter and not ending in a digit"
}

need_root () {
  [ "$(id -u)" -eq 0 ] || die "must run as root (ip netns needs CAP_SYS_ADMIN)"
  command -v ip >/dev/null 2>&1 || die "ip not found: install iproute2 (scripts/system-deps.sh)"
}

# Every namespace of this lab: the hub and P<digits>, nothing else.
lab_namespaces () {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${PREFIX}(-hub|[0-9]+)\$" || true
}

cmd_up () {
  local n=${1:-}
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le "$MAX_HOSTS" ] ||
    die "up: N must be a number from 1 to $MAX_HOSTS (got '${n}')"
  if [ -n "$SUBNET" ]; then
    [[ "$SUBNET" =~ ^[0-9]+$ ]] && [ "$SUBNET" -ge 1 ] && [ "$SUBNET" -le 255 ] || die "up: --subnet K must be a number from 1 to 255 (got '${SUBNET}')"
    [ -z "$IPV6" ] || die "up: --subnet is for IPv4 labs; it does not go with --ipv6"
    [ "$n" -le 249 ] || die "up: a --subnet lab has at most 249 hosts (got $n)"
  fi
  if [ -n "$(lab_namespaces)" ]; then
    die "up: namespaces with prefix '$PREFIX' already exist; run '$prog down --prefix $PREFIX' first"
  fi
  local hub="${PREFIX}-hub"
  # A half-built lab is worse than none: tear down whatever was made if a step fails.
  trap 'say "up failed; removing the partial lab"; cmd_down >/dev/null 2>&1 || true' ERR

  ip netns add "$hub"
  ip -n "$hub" link set lo up
  # STP off and no forward delay so ports forward at once; snooping off so that
  # multicast floods to every port without needing an IGMP querier.
  ip -n "$hub" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
  ip -n "$hub" link set br0 up

  local i ns addr
  for ((i = 1; i <= n; i++)); do
    ns="${PREFIX}${i}"
    addr=$(host_addr "$i")
    ip netns add "$ns"
    ip -n "$hub" link add "h$i" type veth peer name lan0 netns "$ns"
    ip -n "$hub" link set "h$i" master br0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" link set lo multicast on
    if [ -n "$IPV6" ]; then
      # Before lan0 comes up, so that its link-local address skips DAD too.
      ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.lan0.accept_dad=0
      ip -n "$ns" addr add "$(host_addr6 "$i")/64" dev lan0 nodad
      ip -n "$ns" link set lan0 up
    else
      ip -n "$ns" addr add "$addr/$(host_prefix_len)" dev lan0
      ip -n "$ns" link set lan0 up
      ip -n "$ns" route add 224.0.0.0/4 dev lan0
    fi
  done
  trap - ERR
  if [ -n "$IPV6" ]; then
    say "up: $n hosts ${PREFIX}1..${PREFIX}$n on bridge br0 in $hub, IPv6 only, 2001:db8::1-$(host_addr6 "$n")/64"
  else
    say "up: $n hosts ${PREFIX}1..${PREFIX}$n on bridge br0 in $hub, $(host_addr 1)-$(host_addr "$n")/$(host_prefix_len)"
  fi
}

cmd_down () {
  local namespaces ns pids
  namespaces=$(lab_namespaces)
  [ -n "$namespaces" ] || { say "down: nothing to remove for prefix '$PREFIX'"; return 0; }
  # A process left inside keeps its namespace's interfaces alive after 'ip netns del'.
  # These are processes a test started in this lab: end them by pid, TERM then KILL.
  pids=""
  for ns in $namespaces; do pids="$pids $(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"; done
  pids=$(echo $pids)
  if [ -n "$pids" ]; then
    say "down: stopping leftover processes $pids"
    kill -TERM $pids 2>/dev/null || true
    local t
    for t in 1 2 3 4 5 6 7 8 9 10; do
      local alive=""
      local p
      for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
      [ -z "$alive" ] && break
      sleep 0.2
    done
    for p in $pids; do kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true; done
  fi
  for ns in $namespaces; do ip netns del "$ns" 2>/dev/null || true; done
  say "down: removed $(echo "$namespaces" | wc -l) namespaces with prefix '$PREFIX'"
}

cmd_exec () {
  local host=${1:-}
  [ -n "$host" ] || die "exec: usage: $prog exec HOST cmd..."
  shift
  [ $# -gt 0 ] || die "exec: no command given"
  [[ "$host" =~ ^[0-9]+$ ]] && host="${PREFIX}${host}"
  lab_namespaces | grep -qx -- "$host" || die "exec: no host '$host' in lab '$PREFIX'"
  exec ip netns exec "$host" "$@"
}

cmd_list () {
  local ns
  # The address lan0 has (IPv4, or the global IPv6 one of an --ipv6 lab).
  for ns in $(lab_namespaces | grep -v -- '-hub$' | sort -V); do
    printf '%s %s\n' "$ns" "$(ip -n "$ns" -o addr show dev lan0 scope global | awk '{split($4, a, "/"); print a[1]; exit}')"
  done
}

usage () {
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

# Options may stand before or after the command; for exec, everything after HOST is
# the command line and passes through untouched.
sub=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a value"; PREFIX=$2; shift 2 ;;
    --prefix=*) PREFIX=${1#--prefix=}; shift ;;
    --ipv6) IPV6=1; shift ;;
    --subnet) [ $# -ge 2 ] || die "--subnet needs a value"; SUBNET=$2; shift 2 ;;
    --subnet=*) SUBNET=${1#--subnet=}; shift ;;
    --) shift; args+=("$@"); break ;;
    *) if [ -z "$sub" ]; then sub=$1; shift; continue; fi
       args+=("$1"); shift
       if [ "$sub" = exec ]; then args+=("$@"); break; fi ;;
  esac
done
[ -n "$sub" ] || usage 1
check_prefix

case "$sub" in
  up) need_root; cmd_up "${args[@]:-}" ;;
  down) need_root; cmd_down ;;
  exec) need_root; cmd_exec "${args[@]:-}" ;;
  list) need_root; cmd_list ;;
  -h|--help|help) usage 0 ;;
  *) die "unknown command '$sub' (up, down, exec, list)" ;;
esac
