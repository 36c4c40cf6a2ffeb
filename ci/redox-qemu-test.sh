#!/usr/bin/env bash
# ptnetd on Redox OS under QEMU (TCG), attached to the emulated ptnet hypervisor over vfio-user.
#
#   ci/redox-qemu-test.sh --image IMG --bios   boot IMG (made by ci/redox-image.sh from the Redox
#                                              test kit, or a full Redox image with the cookbook
#                                              recipe, see ci/redox/README.md)
#   ci/redox-qemu-test.sh                      prints "SKIP: ..." and exits 0 (nothing to boot)
#
# It starts ptnet-host (reflector unless told otherwise), boots the image from NVMe (snapshot: the
# image is not modified) with both vfio-user functions attached, presses Enter through the QEMU
# monitor when the Redox bootloader asks for a display resolution, and watches the serial console.
# The run stops at the first verdict:
#   - "ptnetd: selftest PASS" (the image runs ptnetd --selftest), then it waits a few seconds
#     for ptnetd's shutdown line ("ptnetd: <nic> shut down");
#   - with --no-selftest (the plain daemon): the start line (ptnetd + a MAC address) and
#     "readiness signalled"; 2 s later (the daemon must still be up) it stops ptnet-host, so the
#     device goes away under the daemon (QEMU answers its registers with all-ones), and waits
#     for ptnetd to say so and shut down;
#   - at once, as a failure: "ptnetd: selftest FAIL", an "[ERROR ptnetd" line, a panic, or
#     "exited without notifying readiness" (pcid-spawner saw ptnetd exit before it was ready);
#   - QEMU's exit or the time limit.
# Then it powers QEMU off (monitor "quit") and checks: start line, verdict, --expect patterns,
# self-test counts, ptnetd's clean shutdown (its shutdown line, DELETE seen by the host, no error
# line), the host seeing the VM go (client disconnected), ptnet-host without error; with --switch
# also the switch's host endpoints. The last line is "PASS: redox NAME" or "FAIL: redox NAME: ...".
#
# Options:
#   --image IMG      the Redox disk image (also: $PTNET_REDOX_IMAGE)
#   --name NAME      what the verdict lines call this boot (default: the image's base name)
#   --bios           boot with SeaBIOS (the test kit's images); a missing bootloader banner on
#                    serial is then only a note. Default: UEFI (OVMF from Debian trixie)
#   --no-selftest    the image runs the plain daemon: start line, readiness, stays up, clean
#                    shutdown when its device goes away
#   --switch         ptnet-host --backend switch --reflect --sink --source-pps P, and check
#                    the host endpoints' counters and the guest's foreign= count
#   --source-pps P   broadcast rate of the host source with --switch (default 2000)
#   --min-frames N   the self test's sent= and received= must each be >= N
#   --expect RE      a serial console line must match the extended regex RE (repeatable)
#   --wait-for RE    with --no-selftest: after readiness, wait for a line matching RE (the test
#                    clients of the image finishing) before the device is made to go away
#   --timeout S      give up after S seconds (default 240)
#   --host-args "A"  extra ptnet-host options (after the defaults: a repeated option wins)
#   --cpu MODEL      QEMU CPU model (default core2duo, as Redox's own mk/qemu.mk under TCG)
#   --smp N          guest CPUs (default 1)
#   --mem MB         guest RAM in MiB (default 1024)
#   --qemu-args "A"  extra QEMU options, appended last
#   --no-build       do not run cargo; use PTNET_HOST_BIN or target/release/ptnet-host
#   --keep           keep the run directory (serial log, monitor log, host log)
# Prints PASS/FAIL/SKIP lines; exits non-zero on FAIL.
set -euo pipefail

# shellcheck source=ci/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IMAGE=${PTNET_REDOX_IMAGE:-}
NAME=
FIRMWARE=uefi
SELFTEST=1
SWITCH=0
SOURCE_PPS=2000
MIN_FRAMES=0
EXPECT=()
WAIT_FOR=
TIMEOUT=240
HOST_ARGS=${PTNET_HOST_ARGS:-}
CPU=core2duo
SMP=1
MEM=1024
BUILD=1
KEEP=0
EXTRA_QEMU_ARGS=

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case $1 in
    --image) IMAGE=${2:?--image needs a file}; shift ;;
    --name) NAME=${2:?--name needs a value}; shift ;;
    --switch) SWITCH=1 ;;
    --source-pps) SOURCE_PPS=${2:?--source-pps needs a value}; shift ;;
    --min-frames) MIN_FRAMES=${2:?--min-frames needs a value}; shift ;;
    --expect) EXPECT+=("${2:?--expect needs a regex}"); shift ;;
    --wait-for) WAIT_FOR=${2:?--wait-for needs a regex}; shift ;;
    --bios) FIRMWARE=bios ;;
    --uefi) FIRMWARE=uefi ;;
    --no-selftest) SELFTEST=0 ;;
    --timeout) TIMEOUT=${2:?--timeout needs a value}; shift ;;
    --host-args) HOST_ARGS=${2?--host-args needs a value}; shift ;;
    --cpu) CPU=${2:?--cpu needs a value}; shift ;;
    --smp) SMP=${2:?--smp needs a value}; shift ;;
    --mem) MEM=${2:?--mem needs a value}; shift ;;
    --qemu-args) EXTRA_QEMU_ARGS=${2?--qemu-args needs a value}; shift ;;
    --no-build) BUILD=0 ;;
    --keep) KEEP=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ -z "$IMAGE" ]; then
  echo "SKIP: redox-qemu-test: no Redox image given (--image IMG): ci/redox-image.sh makes" \
    "them from the Redox test kit; see ci/redox/README.md."
  exit 0
fi
[ -f "$IMAGE" ] || die "image $IMAGE not found"
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds"
[[ $MEM =~ ^[0-9]+$ ]] || die "--mem must be a number of MiB"
[[ $SOURCE_PPS =~ ^[0-9]+$ ]] || die "--source-pps must be a number"
[[ $MIN_FRAMES =~ ^[0-9]+$ ]] || die "--min-frames must be a number"
IMAGE=$(cd "$(dirname "$IMAGE")" && pwd)/$(basename "$IMAGE")
[ -n "$NAME" ] || NAME=$(basename "$IMAGE" .img)
BACKEND_ARGS=(--backend reflector)
[ "$SWITCH" = 1 ] && BACKEND_ARGS=(--backend switch --reflect --sink --source-pps "$SOURCE_PPS")

need_cmd timeout awk sed grep mkfifo mktemp
T_START=$(now)
RUN=$(mktemp -d "${TMPDIR:-/tmp}/ptnet-redox.XXXXXX")
QEMU_PID=
MONCAT_PID=
TAIL_PID=
cleanup() {
  [ -n "$QEMU_PID" ] && kill -TERM "$QEMU_PID" 2>/dev/null
  [ -n "$MONCAT_PID" ] && kill "$MONCAT_PID" 2>/dev/null
  [ -n "$TAIL_PID" ] && kill "$TAIL_PID" 2>/dev/null
  stop_host
  if [ "$KEEP" = 1 ]; then say "run directory kept: $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
say "$NAME: image $IMAGE ($FIRMWARE), run directory $RUN"

# --------------------------------------------------------------------------------------------
phase_begin download
fetch_qemu
pass "QEMU $QEMU_VERSION with vfio-user-pci"
if [ "$FIRMWARE" = uefi ]; then
  fetch_ovmf
  cp "$OVMF_VARS" "$RUN/OVMF_VARS.fd"
fi
phase_end

phase_begin build
HOST=${PTNET_HOST_BIN:-}
if [ -z "$HOST" ]; then
  if [ "$BUILD" = 1 ]; then
    need_cmd cargo
    HOST=$(cargo_bin ptnet-host) || HOST=
  else
    HOST=$CARGO_TARGET/release/ptnet-host
  fi
fi
{ [ -n "$HOST" ] && [ -x "$HOST" ]; } ||
  die "host binary ptnet-host missing (cargo build --release --bin ptnet-host: the crate must have a bin target 'ptnet-host')"
phase_end

# --------------------------------------------------------------------------------------------
phase_begin boot
# shellcheck disable=SC2086 # HOST_ARGS is a list of options
start_host "$HOST" "$RUN/sock" "$RUN/host.log" $((TIMEOUT + 30)) "${BACKEND_ARGS[@]}" $HOST_ARGS ||
  die "$NAME: ptnet-host did not create $RUN/sock/vm0-ptnet.sock and vm0-memdev.sock (log above)"
HOST_LOG=$RUN/host.log
pass "$NAME: ptnet-host up (${BACKEND_ARGS[*]}${HOST_ARGS:+ $HOST_ARGS})"

# The monitor is a pipe chardev (two FIFOs): plain shell redirections drive it, so no socket
# client (socat, nc, python) is needed on the host. QEMU opens both ends read-write.
mkfifo "$RUN/mon.in" "$RUN/mon.out"
# shellcheck disable=SC2054 # the commas belong to QEMU's option syntax
QEMU_ARGS=(
  -nodefaults -display none -vga std -no-reboot -name "Redox OS x86_64 (ptnet)"
  -machine q35,memory-backend=mem -object "memory-backend-memfd,id=mem,size=${MEM}M,share=on" -m "$MEM"
  -cpu "$CPU" -smp "$SMP"
  -drive "file=$IMAGE,format=raw,if=none,id=drv0,snapshot=on" -device nvme,drive=drv0,serial=PTNETCI
  -serial "file:$RUN/serial.log"
  -monitor "pipe:$RUN/mon"
  -d guest_errors
)
if [ "$FIRMWARE" = uefi ]; then
  QEMU_ARGS+=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF_CODE"
    -drive "if=pflash,format=raw,unit=1,file=$RUN/OVMF_VARS.fd")
fi
mapfile -t DEVS < <(vfio_user_devices "$RUN/sock")
QEMU_ARGS+=("${DEVS[@]}")
# shellcheck disable=SC2206 # split into words on purpose
[ -n "$EXTRA_QEMU_ARGS" ] && QEMU_ARGS+=($EXTRA_QEMU_ARGS)

: >"$RUN/serial.log"
T_BOOT=$(now)
timeout -k 5 "$TIMEOUT" "${QEMU[@]}" "${QEMU_ARGS[@]}" >"$RUN/qemu.log" 2>&1 &
QEMU_PID=$!
cat "$RUN/mon.out" >"$RUN/monitor.log" 2>/dev/null &
MONCAT_PID=$!
tail -n +1 -f --pid="$QEMU_PID" "$RUN/serial.log" 2>/dev/null |
  sed -u 's/\r$//; s/\x1b\[[0-9;?]*[A-Za-z]//g; s/^/redox| /' >&2 &
TAIL_PID=$!

# One monitor command. Guarded: opening the FIFO would block if QEMU were gone.
monitor() {
  kill -0 "$QEMU_PID" 2>/dev/null || return 0
  # shellcheck disable=SC2016 # $1 and $2 expand in the inner shell
  timeout 5 bash -c 'printf "%s\n" "$1" >"$2"' _ "$*" "$RUN/mon.in" || say "monitor: '$*' not delivered"
}

# What ends a run at once, as a failure (extended regexes over the serial console).
FATAL_RE='\[ERROR ptnetd|panicked at|exited without notifying readiness|ptnetd: selftest FAIL|ptnet-(scheme|net)-test: .*FAIL|pkt-gen: .*FAIL'
MAC_RE='([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}'
SHUTDOWN_RE='ptnetd: .* shut down'
start_line() { grep -E 'ptnetd' "$LOG" | grep -E "$MAC_RE" | grep -vE 'selftest (PASS|FAIL)' | head -1 || true; }

# Watch the serial log until a verdict, QEMU's exit or the time limit.
VERDICT=
PROMPTS_SEEN=0
NUDGES=0
LAST_SIZE=-1
LAST_GROWTH=$(now)
LOG=$RUN/serial.txt
refresh_log() { tr -d '\r' <"$RUN/serial.log" | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g' >"$LOG"; }
while :; do
  sleep 0.5
  refresh_log
  size=$(wc -c <"$LOG")
  if [ "$size" != "$LAST_SIZE" ]; then
    LAST_SIZE=$size
    LAST_GROWTH=$(now)
  fi
  # The bootloader's resolution prompt: one Enter per prompt shown (one per display output).
  prompts=$(grep -c 'Arrow keys and enter select mode' "$LOG" || true)
  if [ "$prompts" -gt "$PROMPTS_SEEN" ]; then
    PROMPTS_SEEN=$prompts
    sleep 1
    monitor "sendkey ret"
    say "bootloader resolution prompt #$prompts: sent 'sendkey ret' through the monitor"
  fi
  # If the console sits idle for 15 s before any ptnetd output (a prompt not mirrored on serial,
  # or a firmware menu), press Enter anyway, at most 3 times.
  if [ "$NUDGES" -lt 3 ] && ! grep -q 'ptnetd' "$LOG" &&
    awk -v a="$LAST_GROWTH" -v b="$(now)" 'BEGIN { exit !(b - a > 15) }'; then
    NUDGES=$((NUDGES + 1))
    LAST_GROWTH=$(now)
    monitor "sendkey ret"
    say "serial console idle for 15 s: sent 'sendkey ret' (nudge $NUDGES/3)"
  fi
  if grep -qE "$FATAL_RE" "$LOG"; then VERDICT=fatal; break; fi
  if [ "$SELFTEST" = 1 ] && grep -qE 'ptnetd: selftest PASS' "$LOG"; then VERDICT=pass; break; fi
  if [ "$SELFTEST" = 0 ] && [ -n "$(start_line)" ] && grep -q 'readiness signalled' "$LOG"; then
    VERDICT=started
    break
  fi
  if ! kill -0 "$QEMU_PID" 2>/dev/null; then VERDICT=qemu-exit; break; fi
done
# The plain daemon stays: check that it does, then make its device go away (stop ptnet-host:
# QEMU then answers the function's registers with all-ones) and expect a clean shutdown.
EARLY_EXIT=0
if [ "$VERDICT" = started ] && [ -n "$WAIT_FOR" ]; then
  while kill -0 "$QEMU_PID" 2>/dev/null &&
    awk -v a="$(secs_since "$T_BOOT")" -v t="$TIMEOUT" 'BEGIN { exit !(a < t) }'; do
    refresh_log
    grep -qE "$FATAL_RE" "$LOG" && { VERDICT=fatal; break; }
    grep -qE "$WAIT_FOR" "$LOG" && break
    sleep 0.5
  done
  say "$NAME: clients done after $(secs_since "$T_BOOT")s"
fi
if [ "$VERDICT" = started ]; then
  sleep 2
  refresh_log
  grep -qE "$SHUTDOWN_RE" "$LOG" && EARLY_EXIT=1
  say "$NAME: stopping ptnet-host: the device goes away under the running daemon"
  stop_host
fi
# After a good verdict, give ptnetd a few seconds to shut down (or to fail after all).
if [ "$VERDICT" = pass ] || [ "$VERDICT" = started ]; then
  for _ in $(seq 1 20); do
    refresh_log
    grep -qE "$SHUTDOWN_RE|$FATAL_RE" "$LOG" && break
    kill -0 "$QEMU_PID" 2>/dev/null || break
    sleep 0.5
  done
  grep -qE "$FATAL_RE" "$LOG" && VERDICT=fatal
fi
BOOT_SECS=$(secs_since "$T_BOOT")
# Power QEMU off (the monitor's quit), then let the host see the client go.
if kill -0 "$QEMU_PID" 2>/dev/null; then
  monitor "quit" || true
  for _ in $(seq 1 20); do
    kill -0 "$QEMU_PID" 2>/dev/null || break
    sleep 0.25
  done
  kill -TERM "$QEMU_PID" 2>/dev/null || true
fi
QEMU_RC=0
wait "$QEMU_PID" || QEMU_RC=$?
QEMU_PID=
wait "$TAIL_PID" 2>/dev/null || true
TAIL_PID=
kill "$MONCAT_PID" 2>/dev/null || true
wait "$MONCAT_PID" 2>/dev/null || true
MONCAT_PID=
for _ in $(seq 1 20); do
  grep -q 'vm0-ptnet: client disconnected' "$HOST_LOG" && break
  sleep 0.1
done
stop_host
phase_end
refresh_log
sed 's/^/qemu| /' "$RUN/qemu.log" | grep -v 'Could not enable error recovery' >&2 || true
sed 's/^/host| /' "$HOST_LOG" | tail -20 >&2

# --------------------------------------------------------------------------------------------
if grep -q 'Redox OS Bootloader' "$LOG"; then
  pass "$NAME: Redox bootloader ran ($PROMPTS_SEEN resolution prompt(s) answered, $NUDGES nudge(s))"
elif [ "$FIRMWARE" = bios ]; then
  say "$NAME: note: no 'Redox OS Bootloader' banner on the serial console (Redox's own BIOS bootloader prints nothing there)"
else
  fail "$NAME: no 'Redox OS Bootloader' banner on the serial console ($FIRMWARE firmware)"
fi
if [ "$VERDICT" = fatal ]; then
  fail "$NAME: ptnetd failed on Redox after ${BOOT_SECS}s: $(grep -m1 -E "$FATAL_RE" "$LOG")"
elif grep -qE "$FATAL_RE" "$LOG"; then
  fail "$NAME: ptnetd failed on Redox after its verdict: $(grep -m1 -E "$FATAL_RE" "$LOG")"
fi
START=$(start_line)
if [ -n "$START" ]; then
  pass "$NAME: ptnetd brought the device up: ${START#*\] }"
elif grep -q 'ptnetd' "$LOG"; then
  fail "$NAME: no ptnetd start line with a MAC address"
else
  fail "$NAME: no ptnetd output (is ptnetd in the image? does pcid-spawner match 1b36:000d?)"
fi
for re in "${EXPECT[@]}"; do
  if grep -qE "$re" "$LOG"; then
    pass "$NAME: serial console has /$re/: $(grep -m1 -oE ".{0,40}$re.{0,40}" "$LOG")"
  else
    fail "$NAME: no serial console line matches /$re/"
  fi
done
RESULT=$(grep -m1 -oE 'ptnetd: selftest (PASS|FAIL).*' "$LOG" || true)
RX=$(printf '%s\n' "$RESULT" | sed -En 's/.*\breceived=([0-9]+).*/\1/p')
TX=$(printf '%s\n' "$RESULT" | sed -En 's/.*\bsent=([0-9]+).*/\1/p')
FOREIGN=$(printf '%s\n' "$RESULT" | sed -En 's/.*\bforeign=([0-9]+).*/\1/p')
case $VERDICT in
  pass)
    pass "$NAME: ${RESULT#ptnetd: }"
    if [ -n "$TX" ] && [ -n "$RX" ] && [ "$TX" -ge "$MIN_FRAMES" ] && [ "$RX" -ge "$MIN_FRAMES" ]; then
      [ "$MIN_FRAMES" -gt 0 ] && pass "$NAME: frames moved: sent=$TX received=$RX (>= $MIN_FRAMES each way)"
    else
      fail "$NAME: frames moved: sent=${TX:-?} received=${RX:-?}, expected >= $MIN_FRAMES each way"
    fi
    ;;
  started)
    pass "$NAME: ptnetd signalled readiness to pcid-spawner: $(grep -m1 -oE 'readiness signalled.*' "$LOG")"
    [ -z "$RESULT" ] || fail "$NAME: a self test ran in the plain daemon: $RESULT"
    ;;
  fatal) ;;
  qemu-exit)
    if [ "$QEMU_RC" = 124 ] || [ "$QEMU_RC" = 137 ]; then
      fail "$NAME: timed out after ${TIMEOUT}s without a verdict"
    else
      fail "$NAME: QEMU exited ($QEMU_RC) without a verdict"
    fi
    ;;
esac
# A clean shutdown: ptnetd's own line, the host saw DELETE, and nothing went wrong after; the
# plain daemon instead stays until its device goes away, then shuts down without DELETE.
if [ "$VERDICT" = started ]; then
  if [ "$EARLY_EXIT" = 1 ]; then
    fail "$NAME: the plain daemon shut down before its device went away: $(grep -m1 -oE "$SHUTDOWN_RE.*" "$LOG")"
  elif grep -q 'went away' "$LOG" && grep -qE "$SHUTDOWN_RE" "$LOG"; then
    pass "$NAME: ptnetd stayed until its device went away, then shut down cleanly: $(grep -m1 -oE "$SHUTDOWN_RE.*" "$LOG")"
  else
    fail "$NAME: no clean shutdown after the device went away ('went away' lines: $(grep -c 'went away' "$LOG"), shutdown lines: $(grep -cE "$SHUTDOWN_RE" "$LOG"))"
  fi
elif [ "$VERDICT" = pass ]; then
  if grep -qE "$SHUTDOWN_RE" "$LOG" && grep -q 'DELETE' "$HOST_LOG"; then
    pass "$NAME: ptnetd shut down cleanly: $(grep -m1 -oE "$SHUTDOWN_RE" "$LOG"); host: $(grep -m1 -oE 'DELETE.*' "$HOST_LOG")"
  else
    fail "$NAME: no clean shutdown (ptnetd's shutdown line: $(grep -cE "$SHUTDOWN_RE" "$LOG"), DELETE at the host: $(grep -c DELETE "$HOST_LOG"))"
  fi
fi
if [ "$VERDICT" = started ]; then
  if [ "$QEMU_RC" = 0 ]; then
    pass "$NAME: QEMU powered off after ${BOOT_SECS}s"
  else
    fail "$NAME: power-off: QEMU exit status $QEMU_RC"
  fi
elif [ "$QEMU_RC" = 0 ] && grep -q 'vm0-ptnet: client disconnected' "$HOST_LOG"; then
  pass "$NAME: QEMU powered off after ${BOOT_SECS}s; ptnet-host saw the VM go (client disconnected)"
elif [ "$VERDICT" != qemu-exit ]; then
  fail "$NAME: power-off: QEMU exit status $QEMU_RC, host saw the client go: $(grep -c 'vm0-ptnet: client disconnected' "$HOST_LOG")"
fi
[ "$SWITCH" = 1 ] && [ "$VERDICT" = pass ] && check_switch_host "$NAME"
if grep -q 'panicked' "$HOST_LOG"; then
  fail "$NAME: ptnet-host panicked (host| lines above)"
elif [ "$HOST_STATE" = running ] || [ "$HOST_STATE" = "exit 0" ]; then
  pass "$NAME: ptnet-host ran without error"
else
  fail "$NAME: ptnet-host ended with $HOST_STATE during the run"
fi

CI_TIMES+=("boot-to-verdict=${BOOT_SECS}s" "total=$(secs_since "$T_START")s")
print_times
if [ "$CI_FAILS" -gt 0 ]; then
  echo "FAIL: redox $NAME: $CI_FAILS check(s) failed"
  exit 1
fi
echo "PASS: redox $NAME"
