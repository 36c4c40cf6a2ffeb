#!/usr/bin/env bash
# ptnetd in a Linux guest under QEMU (TCG), attached to the emulated ptnet hypervisor over vfio-user.
#
#   ci/qemu-linux-test.sh            the real test, two boots of the same initramfs, each running
#                                    `ptnetd --linux --selftest N` in the guest (needs its PASS line):
#                                    1. reflector: `ptnet-host --backend reflector`, the guest's
#                                       port sends every frame back;
#                                    2. switch: `ptnet-host --backend switch --reflect --sink
#                                       --source-pps P`, the guest's port on the VALE-like switch
#                                       with a host reflect endpoint (the selftest's peer) and a
#                                       host sink + source (broadcasts the guest must set aside
#                                       as foreign); the host's counters must show the sink,
#                                       source and reflect endpoint at work
#   ci/qemu-linux-test.sh --smoke    boot only: the guest lists its PCI functions (and, when
#                                    ptnet-host is available, must see 1b36:000d and 1b36:000c)
#                                    and runs `ptnetd --help` to prove the guest binary executes
#
# Options:
#   --frames N       frames for the selftest (default 100000, at least 100000 each way is the bar)
#   --phases P       reflector, switch or all (default all)
#   --source-pps P   broadcast rate of the host source in the switch phase (default 2000)
#   --host-args "A"  extra ptnet-host options for the reflector phase, appended (the last value
#                    wins), e.g. "--rings 2 --slots 1024"
#   --timeout S      limit for each QEMU run in seconds (default 120)
#   --guest-libc L   musl | glibc | auto (default auto: musl, else glibc + its libraries)
#   --no-build       do not run cargo; use existing binaries (PTNETD_BIN / PTNET_HOST_BIN or target/)
#   --keep           keep the run directory (serial log, initramfs, host log)
#
# Everything it downloads comes from Debian's archives (see ci/lib.sh) and is cached in
# ${PTNET_CI_CACHE:-~/.cache/ptnet-ci}. Prints PASS/FAIL lines; exits non-zero on any FAIL.
set -euo pipefail

# shellcheck source=ci/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODE=selftest
FRAMES=100000
HOST_ARGS=${PTNET_HOST_ARGS:-}
QEMU_TIMEOUT=${PTNET_CI_QEMU_TIMEOUT:-120}
PHASES=all
SOURCE_PPS=2000
GUEST_LIBC=${PTNET_CI_GUEST_LIBC:-auto}
BUILD=1
KEEP=0
MIN_FRAMES=100000

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case $1 in
    --smoke) MODE=smoke ;;
    --frames) FRAMES=${2:?--frames needs a value}; shift ;;
    --host-args) HOST_ARGS=${2?--host-args needs a value}; shift ;;
    --phases) PHASES=${2:?--phases needs a value}; shift ;;
    --source-pps) SOURCE_PPS=${2:?--source-pps needs a value}; shift ;;
    --timeout) QEMU_TIMEOUT=${2:?--timeout needs a value}; shift ;;
    --guest-libc) GUEST_LIBC=${2:?--guest-libc needs a value}; shift ;;
    --no-build) BUILD=0 ;;
    --keep) KEEP=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
case $GUEST_LIBC in musl | glibc | auto) ;; *) die "--guest-libc must be musl, glibc or auto" ;; esac
[[ $FRAMES =~ ^[0-9]+$ ]] || die "--frames must be a number"
[[ $QEMU_TIMEOUT =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds"
[[ $SOURCE_PPS =~ ^[0-9]+$ ]] || die "--source-pps must be a number"
case $PHASES in reflector | switch | all) ;; *) die "--phases must be reflector, switch or all" ;; esac

need_cmd timeout awk sed grep find gzip mktemp
T_START=$(now)
RUN=$(mktemp -d "${TMPDIR:-/tmp}/ptnet-linux.XXXXXX")
QEMU_PID=
TAIL_PID=
cleanup() {
  [ -n "$TAIL_PID" ] && kill "$TAIL_PID" 2>/dev/null
  [ -n "$QEMU_PID" ] && kill -TERM "$QEMU_PID" 2>/dev/null
  stop_host
  if [ "$KEEP" = 1 ]; then say "run directory kept: $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
say "mode $MODE, run directory $RUN"

# --------------------------------------------------------------------------------------------
phase_begin download
fetch_qemu
pass "QEMU $QEMU_VERSION with vfio-user-pci"
fetch_kernel
fetch_busybox
pass "guest kernel $KERNEL_VERSION, busybox-static (Debian bookworm)"
phase_end

# --------------------------------------------------------------------------------------------
# Binaries: the guest's ptnetd (static musl, or glibc plus its libraries) and the host's ptnet-host.
phase_begin build
PTNETD=${PTNETD_BIN:-}
PTNETD_KIND=
if [ -n "$PTNETD" ]; then
  PTNETD_KIND=given
elif [ "$BUILD" = 1 ]; then
  need_cmd cargo
  if [ "$GUEST_LIBC" != glibc ]; then
    if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
      say "rustup target add x86_64-unknown-linux-musl"
      rustup target add x86_64-unknown-linux-musl >&2 || say "the musl target could not be installed"
    fi
    if PTNETD=$(CARGO_QUIET_FAIL=1 cargo_bin ptnetd x86_64-unknown-linux-musl); then
      PTNETD_KIND=musl
    elif [ "$GUEST_LIBC" = musl ]; then
      die "ptnetd does not build for x86_64-unknown-linux-musl (see the cargo output above)"
    else
      say "ptnetd does not build for musl: falling back to the glibc binary plus its libraries"
    fi
  fi
  if [ -z "$PTNETD_KIND" ]; then
    PTNETD=$(cargo_bin ptnetd) || die "cargo build --release --bin ptnetd failed"
    PTNETD_KIND=glibc
  fi
else
  for cand in "$CARGO_TARGET/x86_64-unknown-linux-musl/release/ptnetd:musl" "$CARGO_TARGET/release/ptnetd:glibc"; do
    if [ -x "${cand%:*}" ] && { [ "$GUEST_LIBC" = auto ] || [ "$GUEST_LIBC" = "${cand##*:}" ]; }; then
      PTNETD=${cand%:*}
      PTNETD_KIND=${cand##*:}
      break
    fi
  done
fi
{ [ -n "$PTNETD" ] && [ -x "$PTNETD" ]; } || die "guest binary ptnetd missing (build it with: cargo build --release --target x86_64-unknown-linux-musl --bin ptnetd)"
say "guest ptnetd: $PTNETD ($PTNETD_KIND)"

HOST=${PTNET_HOST_BIN:-}
if [ -z "$HOST" ]; then
  if [ "$BUILD" = 1 ]; then
    HOST=$(cargo_bin ptnet-host) || HOST=
  elif [ -x "$CARGO_TARGET/release/ptnet-host" ]; then
    HOST=$CARGO_TARGET/release/ptnet-host
  fi
fi
if [ -z "$HOST" ] || [ ! -x "$HOST" ]; then
  HOST=
  if [ "$MODE" = selftest ]; then
    die "host binary ptnet-host missing (cargo build --release --bin ptnet-host: the crate must have a bin target 'ptnet-host')"
  fi
  say "ptnet-host not available: smoke mode boots without the ptnet device"
fi
phase_end

# --------------------------------------------------------------------------------------------
# The initramfs: busybox, ptnetd (+ libraries when dynamic), and an /init that reports over the
# serial console and powers off.
phase_begin initramfs
ROOT=$RUN/root
mkdir -p "$ROOT"/{bin,dev,proc,sys,tmp,etc,lib,lib64,usr/lib}
cp "$BUSYBOX" "$ROOT/bin/busybox"
cp "$PTNETD" "$ROOT/bin/ptnetd"
if [ "$PTNETD_KIND" = given ]; then
  if ldd "$PTNETD" 2>/dev/null | grep -q '=>'; then PTNETD_KIND=given-dynamic; else PTNETD_KIND=given-static; fi
fi
if [ "$PTNETD_KIND" = glibc ] || [ "$PTNETD_KIND" = given-dynamic ]; then
  # Dynamic binary: copy the loader and every library ldd names to the same paths in the guest.
  need_cmd ldd
  ldd "$PTNETD" | awk '/=> \//{print $3} /^[[:space:]]*\/[^ ]*ld-linux/{print $1}' | while read -r lib; do
    mkdir -p "$ROOT$(dirname "$lib")"
    cp -L "$lib" "$ROOT$lib"
  done
fi

cat >"$ROOT/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
arg() {
  for w in $(cat /proc/cmdline); do
    case $w in ptnet_$1=*) echo "${w#*=}" ;; esac
  done
}
mode=$(arg mode)
frames=$(arg frames)
limit=$(arg limit)
echo "guest: init up, kernel $(uname -r), uptime $(cut -d' ' -f1 /proc/uptime)s, mode $mode"
for d in /sys/bus/pci/devices/*; do
  echo "guest: pci $(basename "$d") $(cat "$d/vendor"):$(cat "$d/device") class $(cat "$d/class")"
done
if [ "$mode" = smoke ]; then
  ptnetd --help >/tmp/help 2>&1
  rc=$?
  echo "guest: ptnetd --help exit=$rc ($(wc -l </tmp/help) lines)"
else
  export RUST_LOG=info RUST_BACKTRACE=1
  # ptnetd's own bound comes first, so that a stuck run still prints its FAIL line with counts.
  timeout -s KILL "$limit" ptnetd --linux --selftest "$frames" --timeout $((limit > 20 ? limit - 10 : limit))
  rc=$?
  echo "guest: ptnetd exit=$rc"
fi
echo "guest: done, uptime $(cut -d' ' -f1 /proc/uptime)s"
poweroff -f
INIT
chmod +x "$ROOT/init"
(cd "$ROOT" && find . -mindepth 1 | "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null | gzip -1) >"$RUN/initramfs.gz"
say "initramfs $(du -h "$RUN/initramfs.gz" | cut -f1) (ptnetd: $PTNETD_KIND)"
phase_end

# --------------------------------------------------------------------------------------------
# One boot. boot_guest NAME [PTNET-HOST OPTIONS...]: starts ptnet-host with those options (when
# it is available), boots the guest with its two functions attached, waits for the power-off
# and stops ptnet-host (which logs its counters as it stops). Sets LOG (the serial log),
# HOST_LOG, QEMU_RC and BOOT_SECS; returns 1 if ptnet-host did not come up.
LOG=
HOST_LOG=
QEMU_RC=0
BOOT_SECS=0
boot_guest() {
  local name=$1
  shift
  local serial=$RUN/serial-$name.log sock=$RUN/sock-$name
  LOG=$RUN/serial-$name.txt
  HOST_LOG=$RUN/host-$name.log
  : >"$LOG"
  : >"$HOST_LOG"
  phase_begin "boot-$name"
  # shellcheck disable=SC2054 # the commas belong to QEMU's option syntax
  local args=(
    -nodefaults -display none -no-reboot
    -machine q35,memory-backend=mem -object memory-backend-memfd,id=mem,size=512M,share=on -m 512
    -cpu max -smp 1
    -kernel "$KERNEL_IMAGE" -initrd "$RUN/initramfs.gz"
    -append "console=ttyS0 panic=-1 quiet ptnet_mode=$MODE ptnet_frames=$FRAMES ptnet_limit=$((QEMU_TIMEOUT > 40 ? QEMU_TIMEOUT - 30 : QEMU_TIMEOUT))"
    -serial "file:$serial"
  )
  if [ -n "$HOST" ]; then
    if ! start_host "$HOST" "$sock" "$HOST_LOG" $((QEMU_TIMEOUT + 30)) "$@"; then
      fail "$name: ptnet-host did not create $sock/vm0-ptnet.sock and vm0-memdev.sock (log above)"
      phase_end
      return 1
    fi
    pass "$name: ptnet-host up ($*)"
    local devs
    mapfile -t devs < <(vfio_user_devices "$sock")
    args+=("${devs[@]}")
  fi
  : >"$serial"
  local t_boot
  t_boot=$(now)
  timeout -k 5 "$QEMU_TIMEOUT" "${QEMU[@]}" "${args[@]}" >"$RUN/qemu-$name.log" 2>&1 &
  QEMU_PID=$!
  tail -n +1 -f --pid="$QEMU_PID" "$serial" 2>/dev/null | sed -u "s/\r$//; s/^/guest($name)| /" >&2 &
  TAIL_PID=$!
  QEMU_RC=0
  wait "$QEMU_PID" || QEMU_RC=$?
  QEMU_PID=
  wait "$TAIL_PID" 2>/dev/null || true
  TAIL_PID=
  BOOT_SECS=$(secs_since "$t_boot")
  phase_end
  sed "s/^/qemu($name)| /" "$RUN/qemu-$name.log" | grep -v 'Could not enable error recovery' >&2 || true
  if [ -n "$HOST" ]; then
    stop_host
    sed "s/^/host($name)| /" "$HOST_LOG" | tail -20 >&2
  fi
  tr -d '\r' <"$serial" >"$LOG"
}

line() { grep -m1 -E "$1" "$LOG" || true; }
has_fn() { grep -qE "^guest: pci [0-9a-f:.]+ 0x1b36:$1 " "$LOG"; }

# check_guest NAME: the verdicts of one boot from its serial log. Sets RESULT (the selftest
# line), TX and RX (its counts) and FOREIGN (frames set aside as not ours).
RESULT=
TX=
RX=
FOREIGN=
check_guest() {
  local name=$1
  RESULT=
  TX=
  RX=
  FOREIGN=
  if [ -n "$(line '^guest: init up')" ]; then
    pass "$name: guest booted to init ($(line '^guest: init up' | sed 's/.*uptime \([^ ,]*\).*/\1/') guest time)"
  else
    fail "$name: guest never reached init (QEMU exit $QEMU_RC; see the guest($name)| lines above)"
  fi
  if [ -n "$HOST" ]; then
    if has_fn 0x000d && has_fn 0x000c; then
      pass "$name: guest sees the ptnet function (1b36:000d) and the memdev (1b36:000c)"
    else
      fail "$name: guest does not see both vfio-user functions 1b36:000d and 1b36:000c"
    fi
  fi

  if [ "$MODE" = smoke ]; then
    if [ -n "$(line '^guest: ptnetd --help exit=0')" ]; then
      pass "$name: ptnetd ($PTNETD_KIND build) runs in the guest"
    else
      fail "$name: ptnetd --help did not exit 0 in the guest ($PTNETD_KIND build)"
    fi
  else
    # The start line names the PCI address, MAC, rings, slots, features and vnet header length;
    # it is recognised by "ptnetd" and a MAC address (log prefixes such as "[INFO ptnetd] " allowed).
    local mac_re='([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}' start
    start=$(grep -E 'ptnetd' "$LOG" | grep -E "$mac_re" | grep -vE 'selftest (PASS|FAIL)' | head -1 || true)
    if [ -n "$start" ]; then
      pass "$name: ptnetd brought the device up: $start"
    else
      fail "$name: no ptnetd start line with a MAC address on the serial console"
    fi
    RESULT=$(grep -m1 -oE 'ptnetd: selftest (PASS|FAIL).*' "$LOG" || true)
    if [[ $RESULT == "ptnetd: selftest PASS"* ]]; then
      pass "$name: selftest: $RESULT"
      # Counts, when the line carries them as sent=N received=N (or tx=N rx=N; any order, digits
      # may be grouped by _ or ,).
      TX=$(printf '%s\n' "$RESULT" | sed -En 's/.*\b(sent|tx)[=: ]{1,2}([0-9_,]+).*/\2/p' | tr -d '_,')
      RX=$(printf '%s\n' "$RESULT" | sed -En 's/.*\b(received|rx)[=: ]{1,2}([0-9_,]+).*/\2/p' | tr -d '_,')
      FOREIGN=$(printf '%s\n' "$RESULT" | sed -En 's/.*\bforeign=([0-9]+).*/\1/p')
      if [ -n "$TX" ] && [ -n "$RX" ]; then
        if [ "$TX" -ge "$MIN_FRAMES" ] && [ "$RX" -ge "$MIN_FRAMES" ]; then
          pass "$name: frames moved: sent=$TX received=$RX (>= $MIN_FRAMES each way)"
        elif [ "$FRAMES" -lt "$MIN_FRAMES" ]; then
          say "$name: sent=$TX received=$RX: below $MIN_FRAMES, as asked with --frames $FRAMES"
        else
          fail "$name: frames moved: sent=$TX received=$RX, fewer than $MIN_FRAMES each way"
        fi
      else
        say "$name: the PASS line carries no sent=N received=N counts; relying on ptnetd's verdict for $FRAMES frames"
      fi
    elif [ -n "$RESULT" ]; then
      fail "$name: selftest: $RESULT"
    else
      fail "$name: no 'ptnetd: selftest PASS|FAIL' line (ptnetd crashed, hung or lacks --linux --selftest)"
    fi
    if [ -n "$(line '^guest: ptnetd exit=0$')" ]; then
      pass "$name: ptnetd exited 0"
    else
      fail "$name: ptnetd exit status: $(line '^guest: ptnetd exit=' | sed 's/^guest: //')"
    fi
  fi

  if [ "$QEMU_RC" = 0 ] && [ -n "$(line '^guest: done')" ]; then
    pass "$name: guest powered off (QEMU run ${BOOT_SECS}s wall)"
  elif [ "$QEMU_RC" = 124 ] || [ "$QEMU_RC" = 137 ]; then
    fail "$name: QEMU timed out after ${QEMU_TIMEOUT}s"
  else
    fail "$name: QEMU exit status $QEMU_RC (guest done marker: $([ -n "$(line '^guest: done')" ] && echo yes || echo no))"
  fi
  if [ -n "$HOST" ]; then
    if grep -q 'panicked' "$HOST_LOG"; then
      fail "$name: ptnet-host panicked (host($name)| lines above)"
    elif [ "$HOST_STATE" = running ] || [ "$HOST_STATE" = "exit 0" ]; then
      pass "$name: ptnet-host ran without error ($HOST_STATE at the end of the run)"
    else
      fail "$name: ptnet-host ended with $HOST_STATE during the run (host($name)| lines above)"
    fi
  fi
}

# --------------------------------------------------------------------------------------------
if [ "$MODE" = smoke ]; then
  # shellcheck disable=SC2086 # HOST_ARGS is a list of options
  boot_guest smoke --backend reflector $HOST_ARGS && check_guest smoke
else
  if [ "$PHASES" != switch ]; then
    # shellcheck disable=SC2086 # HOST_ARGS is a list of options
    boot_guest reflector --backend reflector $HOST_ARGS && check_guest reflector
  fi
  if [ "$PHASES" != reflector ]; then
    if boot_guest switch --backend switch --reflect --sink --source-pps "$SOURCE_PPS"; then
      check_guest switch
      check_switch_host switch
    fi
  fi
fi

CI_TIMES+=("total=$(secs_since "$T_START")s")
print_times
if [ "$CI_FAILS" -gt 0 ]; then
  echo "FAIL: qemu-linux-test ($MODE): $CI_FAILS check(s) failed"
  exit 1
fi
echo "PASS: qemu-linux-test ($MODE)"
