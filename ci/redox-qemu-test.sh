#!/usr/bin/env bash
# ptnetd on Redox OS under QEMU (TCG), attached to the emulated ptnet hypervisor over vfio-user.
#
#   ci/redox-qemu-test.sh --image IMG   boot IMG (a Redox harddrive.img built by the Redox build
#                                       system with ci/redox/recipe.toml, see ci/redox/README.md)
#   ci/redox-qemu-test.sh               prints "SKIP: ..." and exits 0 (no image, nothing to boot)
#
# It starts ptnet-host (reflector), boots the image from NVMe (snapshot: the image is not
# modified) with both vfio-user functions attached, presses Enter through the QEMU monitor when the
# Redox bootloader asks for a display resolution, and watches the serial console:
#   - any "ptnetd" line, and its start line (ptnetd + a MAC address);
#   - "ptnetd: selftest PASS" (the image runs ptnetd with --selftest, see ci/redox/README.md),
#     unless --no-selftest, where the start line is enough;
#   - "ptnetd: selftest FAIL" or a ptnetd panic ends the run as a failure.
#
# Options:
#   --image IMG      the Redox disk image (also: $PTNET_REDOX_IMAGE)
#   --bios           boot with SeaBIOS instead of UEFI (OVMF from Debian trixie)
#   --no-selftest    success once ptnetd logged its start line (image runs the plain driver)
#   --timeout S      give up after S seconds (default 240)
#   --host-args "A"  extra ptnet-host options
#   --cpu MODEL      QEMU CPU model (default core2duo, as Redox's own mk/qemu.mk under TCG)
#   --smp N          guest CPUs (default 2)
#   --mem MB         guest RAM in MiB (default 2048)
#   --qemu-args "A"  extra QEMU options, appended last
#   --no-build       do not run cargo; use PTNET_HOST_BIN or target/release/ptnet-host
#   --keep           keep the run directory (serial log, monitor log, host log)
# Prints PASS/FAIL/SKIP lines; exits non-zero on FAIL.
set -euo pipefail

# shellcheck source=ci/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IMAGE=${PTNET_REDOX_IMAGE:-}
FIRMWARE=uefi
SELFTEST=1
TIMEOUT=240
HOST_ARGS=${PTNET_HOST_ARGS:-}
CPU=core2duo
SMP=2
MEM=2048
BUILD=1
KEEP=0
EXTRA_QEMU_ARGS=

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case $1 in
    --image) IMAGE=${2:?--image needs a file}; shift ;;
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
  echo "SKIP: redox-qemu-test: no Redox image given (--image IMG). Building one needs the Redox" \
    "build system and its toolchain, which this machine does not have; see ci/redox/README.md."
  exit 0
fi
[ -f "$IMAGE" ] || die "image $IMAGE not found"
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds"
[[ $MEM =~ ^[0-9]+$ ]] || die "--mem must be a number of MiB"
IMAGE=$(cd "$(dirname "$IMAGE")" && pwd)/$(basename "$IMAGE")

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
say "image $IMAGE ($FIRMWARE), run directory $RUN"

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
start_host "$HOST" "$RUN/sock" "$RUN/host.log" $((TIMEOUT + 30)) --backend reflector $HOST_ARGS ||
  die "ptnet-host did not create $RUN/sock/vm0-ptnet.sock and vm0-memdev.sock (log above)"
pass "ptnet-host up (reflector${HOST_ARGS:+, $HOST_ARGS})"

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

# Watch the serial log until a verdict, QEMU's exit or the time limit.
VERDICT=
PROMPTS_SEEN=0
NUDGES=0
LAST_SIZE=-1
LAST_GROWTH=$(now)
while :; do
  sleep 0.5
  LOG=$RUN/serial.txt
  tr -d '\r' <"$RUN/serial.log" | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g' >"$LOG"
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
  if grep -qE 'ptnetd: selftest FAIL' "$LOG"; then VERDICT=selftest-fail; break; fi
  if grep -E 'ptnetd' "$LOG" | grep -qiE 'panicked|panic:'; then VERDICT=panic; break; fi
  if grep -qE 'ptnetd: selftest PASS' "$LOG"; then VERDICT=pass; break; fi
  if [ "$SELFTEST" = 0 ] && grep -E 'ptnetd' "$LOG" | grep -qE '([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}'; then
    VERDICT=started
    sleep 3 # let an early failure after the start line show up
    break
  fi
  if ! kill -0 "$QEMU_PID" 2>/dev/null; then VERDICT=qemu-exit; break; fi
done
BOOT_SECS=$(secs_since "$T_BOOT")
if kill -0 "$QEMU_PID" 2>/dev/null; then
  monitor "quit" || true
  sleep 1
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
stop_host
phase_end
tr -d '\r' <"$RUN/serial.log" | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g' >"$LOG"
sed 's/^/qemu| /' "$RUN/qemu.log" | grep -v 'Could not enable error recovery' >&2 || true
sed 's/^/host| /' "$RUN/host.log" | tail -20 >&2

# --------------------------------------------------------------------------------------------
if grep -q 'Redox OS Bootloader' "$LOG"; then
  pass "Redox bootloader ran ($PROMPTS_SEEN resolution prompt(s) answered, $NUDGES nudge(s))"
else
  fail "no 'Redox OS Bootloader' banner on the serial console ($FIRMWARE firmware)"
fi
if grep -q 'ptnetd' "$LOG"; then
  pass "ptnetd logged $(grep -c 'ptnetd' "$LOG") line(s) on the serial console"
  START=$(grep -E 'ptnetd' "$LOG" | grep -E '([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}' | grep -vE 'selftest (PASS|FAIL)' | head -1 || true)
  if [ -n "$START" ]; then
    pass "ptnetd brought the device up: $START"
  else
    fail "no ptnetd start line with a MAC address"
  fi
else
  fail "no ptnetd output (is the recipe in the image? does pcid-spawner match 1b36:000d?)"
fi
case $VERDICT in
  pass) pass "selftest: $(grep -m1 -oE 'ptnetd: selftest PASS.*' "$LOG")" ;;
  started) pass "ptnetd running (--no-selftest)" ;;
  selftest-fail) fail "selftest: $(grep -m1 -oE 'ptnetd: selftest FAIL.*' "$LOG")" ;;
  panic) fail "ptnetd panicked: $(grep -E 'ptnetd' "$LOG" | grep -m1 -iE 'panicked|panic:')" ;;
  qemu-exit)
    if [ "$QEMU_RC" = 124 ] || [ "$QEMU_RC" = 137 ]; then
      fail "timed out after ${TIMEOUT}s without a verdict"
    else
      fail "QEMU exited ($QEMU_RC) without a verdict"
    fi
    ;;
esac
if grep -q 'panicked' "$RUN/host.log"; then
  fail "ptnet-host panicked (host| lines above)"
elif [ "$HOST_STATE" = running ] || [ "$HOST_STATE" = "exit 0" ]; then
  pass "ptnet-host ran without error"
else
  fail "ptnet-host ended with $HOST_STATE during the run"
fi

CI_TIMES+=("boot-to-verdict=${BOOT_SECS}s" "total=$(secs_since "$T_START")s")
print_times
if [ "$CI_FAILS" -gt 0 ]; then
  echo "FAIL: redox-qemu-test: $CI_FAILS check(s) failed"
  exit 1
fi
echo "PASS: redox-qemu-test"
