#!/usr/bin/env bash
# Installs the system tools that the simulated-LAN tests need, only what is missing,
# and only when running as root (otherwise it says what it would do and exits 0, so a
# non-root setup step still works; the LAN tests then skip with a reason).
#
#   iproute2          ip netns / bridge / veth: the simulated LAN (scripts/netlab.sh)
#   avahi-daemon      a second, independent mDNS stack to check that others see us
#   avahi-utils       avahi-browse / avahi-resolve
#   python3-zeroconf  a third mDNS stack (Debian's /usr/bin/python3, not pyenv's)
#   dbus              avahi-daemon needs a system bus (started inside a namespace only)
#   tmux              headless terminal for the monitor tests
#   zsh               to check the script of `evalmesh completion zsh`
#   nats-server       NATS servers for the NATS tests (test/support/nats.ts starts its own,
#                     on loopback or inside a namespace; the package's service is blocked
#                     from starting like avahi's, below)
#
# avahi-daemon must never start in the root namespace (it would speak mDNS on eth0):
# we install with --no-install-recommends (no libnss-mdns rewriting nsswitch.conf) and
# under a policy-rc.d that refuses every service start, then check that no avahi-daemon
# process is running afterwards. The tests start avahi-daemon themselves, inside a
# network namespace, with allow-interfaces set to that namespace's veth.
set -euo pipefail

log () { printf '[system-deps] %s\n' "$*" >&2; }

have_cmd () { command -v "$1" >/dev/null 2>&1; }
have_pkg () { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
have_cmd ip || missing+=(iproute2)
have_cmd avahi-daemon || missing+=(avahi-daemon)
have_cmd avahi-browse || missing+=(avahi-utils)
have_cmd dbus-daemon || missing+=(dbus)
have_cmd tmux || missing+=(tmux)
have_cmd zsh || missing+=(zsh)
have_cmd nats-server || missing+=(nats-server)
if ! /usr/bin/python3 -c 'import zeroconf' >/dev/null 2>&1; then missing+=(python3-zeroconf); fi

if [ ${#missing[@]} -eq 0 ]; then
  log "all present: ip, avahi-daemon, avahi-browse, dbus-daemon, tmux, zsh, python3-zeroconf, nats-server"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  log "not root: would install ${missing[*]}; skipping (LAN tests will skip and say why)"
  exit 0
fi
if ! have_cmd apt-get; then
  log "no apt-get: cannot install ${missing[*]}; install them by hand"
  exit 0
fi

# Refuse service starts for the duration of the install, whatever policy the machine
# has, and put the previous policy back afterwards.
policy=/usr/sbin/policy-rc.d
saved=""
if [ -e "$policy" ]; then saved=$(mktemp); cp -p "$policy" "$saved"; fi
restore_policy () {
  if [ -n "$saved" ]; then cp -p "$saved" "$policy"; rm -f "$saved"; else rm -f "$policy"; fi
}
trap restore_policy EXIT
printf '#!/bin/sh\n# system-deps.sh: no service may start during this install\nexit 101\n' > "$policy"
chmod 755 "$policy"

# The namespace this script runs in: the machine's own (setup never runs inside a lab).
root_ns=$(readlink /proc/self/ns/net)
root_ns_avahi () {
  for pid in $(pgrep -x avahi-daemon || true); do
    [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$root_ns" ] && echo "$pid"
  done
  return 0
}
before=" $(root_ns_avahi | tr '\n' ' ') "

log "installing: ${missing[*]} (no recommends; services blocked by policy-rc.d)"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends "${missing[@]}" >/tmp/system-deps-apt.log 2>&1; then
  log "install failed; refreshing package lists (apt-get update) and retrying"
  apt-get update >>/tmp/system-deps-apt.log 2>&1
  apt-get install -y --no-install-recommends "${missing[@]}" >>/tmp/system-deps-apt.log 2>&1 || {
    log "apt-get install failed; see /tmp/system-deps-apt.log"; tail -n 20 /tmp/system-deps-apt.log >&2; exit 1; }
fi
log "installed; apt log in /tmp/system-deps-apt.log"

# Verify that the install started no avahi-daemon in the root namespace. Only pids in
# the root network namespace that were not there before count: a test's namespaced
# daemon, or one the machine's owner runs, is not ours to touch.
started=0
for pid in $(root_ns_avahi); do
  case "$before" in *" $pid "*) continue ;; esac
  log "WARNING: the install started avahi-daemon (pid $pid) in the root network namespace; stopping it"
  kill "$pid" 2>/dev/null || true
  started=1
done
[ "$started" -eq 0 ] && log "verified: the install started no avahi-daemon in the root network namespace"
exit 0
