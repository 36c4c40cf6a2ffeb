#!/usr/bin/env bash
# Redox's own network stack on ptnetd's `network` scheme: two Redox VMs on ptnet-host's switch,
# each with ptnetd (the plain daemon) and smolnetd, the stack every Redox program's sockets go
# through. VM B (10.0.2.12) runs `ptnet-net-test serve`, VM A (10.0.2.11) `ptnet-net-test
# client`: 10,000 UDP datagrams echoed through std::net (none may be lost), then 1 MiB over TCP
# checked by SHA-256 on both sides. Nothing on that path is ours but ptnetd.
# With --mode smol the VMs run no smolnetd: VM A runs `ptnet-smol send` (a smoltcp stack of its
# own on ptnetd's `network` scheme), VM B `ptnet-smol receive` (smoltcp on the `netmap` scheme,
# zero copy): 4 MiB over TCP, every byte checked by VM B, the same SHA-256 on both sides.
#
#   ci/redox-netstack-test.sh --image-a IMG --image-b IMG   (ci/redox-image.sh makes net-a.img,
#                                                           net-b.img from ci/redox/match/net-*)
#   ci/redox-netstack-test.sh --mode smol --image-a IMG --image-b IMG     (smol-a.img, smol-b.img)
# Options: --mode netstack|smol (default netstack), --timeout S (default 150), --keep (keep the
# run directory).
# Environment: PTNET_NETSTACK_PCAP=FILE records VM A's port (ptnet-host --pcap).
# Prints PASS/FAIL lines and "PASS: redox MODE" / "FAIL: redox MODE: ..."; exits
# non-zero on FAIL.
set -euo pipefail

# shellcheck source=ci/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IMG_A=
IMG_B=
MODE=netstack
TIMEOUT=150
KEEP=0
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --image-a) IMG_A=${2:?--image-a needs a file}; shift ;;
    --image-b) IMG_B=${2:?--image-b needs a file}; shift ;;
    --mode) MODE=${2:?--mode needs netstack or smol}; shift ;;
    --timeout) TIMEOUT=${2:?--timeout needs a value}; shift ;;
    --keep) KEEP=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -f "$IMG_A" ] && [ -f "$IMG_B" ] || die "--image-a and --image-b are required (ci/redox-image.sh makes them)"

case $MODE in
  netstack) DONE_A='ptnet-net-test: client (PASS|FAIL)' DONE_B='ptnet-net-test: serve (PASS|FAIL)' ;;
  smol) DONE_A='smol: send .*(PASS|FAIL)' DONE_B='smol: receive .*(PASS|FAIL)' ;;
  *) die "--mode: netstack or smol, not $MODE" ;;
esac
need_cmd timeout awk sed grep mkfifo mktemp
RUN=$(mktemp -d "${TMPDIR:-/tmp}/ptnet-netstack.XXXXXX")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  stop_host
  if [ "$KEEP" = 1 ]; then say "run directory kept: $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT

fetch_qemu
HOST=${PTNET_HOST_BIN:-$(cargo_bin ptnet-host)}
PCAP_ARGS=()
[ -z "${PTNET_NETSTACK_PCAP:-}" ] || PCAP_ARGS=(--pcap "$PTNET_NETSTACK_PCAP")
start_host "$HOST" "$RUN/sock" "$RUN/host.log" $((TIMEOUT + 30)) --vms 2 --backend switch "${PCAP_ARGS[@]}" ||
  die "$MODE: ptnet-host did not start"
HOST_LOG=$RUN/host.log
[ -S "$RUN/sock/vm1-ptnet.sock" ] || sleep 1
pass "$MODE: ptnet-host up (2 VMs on the switch)"

# One QEMU per VM (k = 0: A, 1: B), monitor on a FIFO pair, serial to a file.
boot_vm() { # K IMAGE
  local k=$1 img=$2 d=$RUN/vm$1
  mkdir -p "$d"
  mkfifo "$d/mon.in" "$d/mon.out"
  : >"$d/serial.log"
  # shellcheck disable=SC2054 # the commas belong to QEMU's option syntax
  timeout -k 5 "$TIMEOUT" "${QEMU[@]}" -nodefaults -display none -vga std -no-reboot \
    -machine q35,memory-backend=mem -object "memory-backend-memfd,id=mem,size=1024M,share=on" -m 1024 \
    -cpu core2duo -smp 1 \
    -drive "file=$img,format=raw,if=none,id=drv0,snapshot=on" -device nvme,drive=drv0,serial=PTNET$k \
    -serial "file:$d/serial.log" -monitor "pipe:$d/mon" \
    -device "{\"driver\":\"vfio-user-pci\",\"id\":\"ptnet0\",\"socket\":{\"path\":\"$RUN/sock/vm$k-ptnet.sock\",\"type\":\"unix\"}}" \
    -device "{\"driver\":\"vfio-user-pci\",\"id\":\"memdev0\",\"socket\":{\"path\":\"$RUN/sock/vm$k-memdev.sock\",\"type\":\"unix\"}}" \
    >"$d/qemu.log" 2>&1 &
  PIDS+=($!)
  cat "$d/mon.out" >/dev/null 2>&1 &
  PIDS+=($!)
}
monitor() { # K CMD
  # shellcheck disable=SC2016 # $1 and $2 expand in the inner shell
  timeout 5 bash -c 'printf "%s\n" "$1" >"$2"' _ "$2" "$RUN/vm$1/mon.in" || true
}
log_of() { tr -d '\r' <"$RUN/vm$1/serial.log" | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g'; }

T0=$(now)
boot_vm 1 "$IMG_B"
boot_vm 0 "$IMG_A"
FATAL_RE='\[ERROR ptnetd|panicked at|exited without notifying readiness|ptnet-net-test: .*FAIL|no network adapter found|smol: .*FAIL'
PROMPTS=(0 0)
VERDICT=timeout
while awk -v a="$(secs_since "$T0")" -v t="$TIMEOUT" 'BEGIN { exit !(a < t) }'; do
  sleep 0.5
  for k in 0 1; do
    n=$(log_of "$k" | grep -c 'Arrow keys and enter select mode' || true)
    if [ "$n" -gt "${PROMPTS[$k]}" ]; then
      PROMPTS[k]=$n
      sleep 1
      monitor "$k" "sendkey ret"
    fi
    if log_of "$k" | grep -qE "$FATAL_RE"; then VERDICT="fatal in VM $k"; break 2; fi
  done
  if log_of 0 | grep -qE "$DONE_A" && log_of 1 | grep -qE "$DONE_B"; then
    VERDICT=done
    break
  fi
done
SECS=$(secs_since "$T0")
for k in 0 1; do monitor "$k" quit; done
sleep 1
for k in 0 1; do log_of "$k" | sed "s/^/vm$k| /" >&2; done
sed 's/^/host| /' "$HOST_LOG" | tail -12 >&2

for k in 0 1; do
  vm=$([ "$k" = 0 ] && echo A || echo B)
  if log_of "$k" | grep -q 'readiness signalled'; then
    pass "$MODE: VM $vm: ptnetd up, $(log_of "$k" | grep -m1 -oE 'scheme network\.[^ ]+ registered')"
  else
    fail "$MODE: VM $vm: ptnetd did not signal readiness"
  fi
  if log_of "$k" | grep -qE "$FATAL_RE"; then
    fail "$MODE: VM $vm: $(log_of "$k" | grep -m1 -E "$FATAL_RE")"
  fi
done
if [ "$MODE" = smol ]; then
  # ptnet-smol: VM A's smoltcp on the network scheme (a frame per call) sends 4 MiB to VM B's
  # smoltcp on the netmap scheme (frames in place in the rings); VM B checks every byte.
  LINES_A=('smol: send over Network PASS 4194304 bytes')
  LINES_B=('smol: receive over Netmap PASS 4194304 bytes')
else
  # VM A: every datagram echoed, then 1 MiB over TCP whose SHA-256 (computed by VM B from what
  # it received) equals the client's; VM B: the same two phases seen from its side. The client
  # writes in blocks the server acknowledges: the kit's smolnetd drops written bytes that do
  # not fit its TCP send buffer (ci/redox/README.md, "TCP through smolnetd").
  LINES_A=('ptnet-net-test: udp-echo PASS sent=10000 echoed=10000 lost=0'
    'ptnet-net-test: client PASS tcp PASS bytes=1048576 ')
  LINES_B=('ptnet-net-test: udp-echo PASS echoed=10000' 'ptnet-net-test: serve PASS tcp-sink .*: 1048576 bytes')
fi
for re in "${LINES_A[@]}"; do
  if log_of 0 | grep -qE "$re"; then pass "$MODE: VM A: $(log_of 0 | grep -m1 -oE "$re.*")"; else fail "$MODE: VM A: no line /$re/"; fi
done
for re in "${LINES_B[@]}"; do
  if log_of 1 | grep -qE "$re"; then pass "$MODE: VM B: $(log_of 1 | grep -m1 -oE "$re.*")"; else fail "$MODE: VM B: no line /$re/"; fi
done
# The TCP lines (the last of each VM) carry the SHA-256 of what was sent / received.
sha_a=$(log_of 0 | grep -m1 -oE "${LINES_A[-1]}.*sha256 [0-9a-f]{64}" | grep -oE '[0-9a-f]{64}$' || true)
sha_b=$(log_of 1 | grep -m1 -oE "${LINES_B[-1]}.*sha256 [0-9a-f]{64}" | grep -oE '[0-9a-f]{64}$' || true)
if [ -n "$sha_a" ] && [ "$sha_a" = "$sha_b" ]; then
  pass "$MODE: TCP SHA-256 the same on both VMs ($sha_a)"
else
  fail "$MODE: TCP SHA-256 VM A '${sha_a:-none}', VM B '${sha_b:-none}'"
fi
say "$MODE: verdict '$VERDICT' after ${SECS}s"
if [ "$CI_FAILS" -gt 0 ]; then
  echo "FAIL: redox $MODE: $CI_FAILS check(s) failed"
  exit 1
fi
echo "PASS: redox $MODE (${SECS}s)"
