# shellcheck shell=bash disable=SC2034 # variables set here are used by the scripts sourcing it
# Shared helpers of ci/qemu-linux-test.sh and ci/redox-qemu-test.sh (sourced, not run).
#
# Everything downloaded comes from Debian's archives through a *private* apt configuration (own
# sources list, lists, cache and an empty dpkg status file): nothing is installed system-wide and
# the host's own apt state is not touched. Downloads are cached under $CI_CACHE.
#
# Environment:
#   PTNET_CI_CACHE     cache directory (default ~/.cache/ptnet-ci)
#   PTNET_CI_REFRESH=1 re-resolve and re-download everything (default: reuse the cache)
#   PTNET_CI_MIRROR    Debian mirror (default http://deb.debian.org/debian)
#   PTNET_CI_SECURITY_MIRROR  (default http://deb.debian.org/debian-security)
#   PTNET_CI_QEMU      use this qemu-system-x86_64 (>= 10.1) instead of the trixie-backports one

CI_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$CI_DIR/.." && pwd)
CI_CACHE=${PTNET_CI_CACHE:-${HOME:-/root}/.cache/ptnet-ci}
CI_MIRROR=${PTNET_CI_MIRROR:-http://deb.debian.org/debian}
CI_SECURITY_MIRROR=${PTNET_CI_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
CI_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
CI_QEMU_MIN_MAJOR=10
CI_QEMU_MIN_MINOR=1
CARGO_TARGET=${CARGO_TARGET_DIR:-$REPO_DIR/target}

# ---------------------------------------------------------------------------------------------
# Output: progress to stderr with a "ci:" prefix; results as PASS/FAIL/SKIP lines on stdout.

CI_FAILS=0
CI_TIMES=()

say() { printf 'ci: %s\n' "$*" >&2; }
pass() { printf 'PASS: %s\n' "$*"; }
fail() {
  printf 'FAIL: %s\n' "$*"
  CI_FAILS=$((CI_FAILS + 1))
}
# A failure after which nothing else can be checked.
die() {
  printf 'FAIL: %s\n' "$*"
  exit 1
}

now() { date +%s.%N; }
secs_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# phase_begin NAME / phase_end: record how long a phase took (printed by print_times).
phase_begin() {
  CI_PHASE=$1
  CI_PHASE_T0=$(now)
  say "phase $CI_PHASE ..."
}
phase_end() {
  local t
  t=$(secs_since "$CI_PHASE_T0")
  CI_TIMES+=("$CI_PHASE=${t}s")
  say "phase $CI_PHASE done in ${t}s"
}
print_times() {
  printf 'TIME: %s\n' "${CI_TIMES[*]}"
}

need_cmd() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || die "required command '$c' not found on the host"
  done
}

# ---------------------------------------------------------------------------------------------
# Private apt configuration.  apt_setup NAME SOURCE-LINE... creates $CI_CACHE/apt/NAME and sets
# APT_OPTS for `apt-get "${APT_OPTS[@]}" ...`.  The dpkg status file is empty, so apt resolves
# every dependency (libc6 included) as if nothing were installed.  The host's apt.conf.d is still
# read (proxy settings keep working); its sources, pins, keys and state are not.

APT_OPTS=()
APT_DIR=
apt_setup() {
  local name=$1
  shift
  APT_DIR=$CI_CACHE/apt/$name
  mkdir -p "$APT_DIR"/lists/partial "$APT_DIR"/archives/partial \
    "$APT_DIR"/etc/preferences.d "$APT_DIR"/etc/sources.list.d "$APT_DIR"/etc/trusted.gpg.d
  [ -e "$APT_DIR/status" ] || : >"$APT_DIR/status"
  printf '%s\n' "$@" >"$APT_DIR/etc/sources.list.new"
  if ! cmp -s "$APT_DIR/etc/sources.list.new" "$APT_DIR/etc/sources.list" 2>/dev/null; then
    mv "$APT_DIR/etc/sources.list.new" "$APT_DIR/etc/sources.list"
    rm -f "$APT_DIR/updated"
  else
    rm -f "$APT_DIR/etc/sources.list.new"
  fi
  APT_OPTS=(
    -o "Dir::Etc::SourceList=$APT_DIR/etc/sources.list"
    -o "Dir::Etc::SourceParts=$APT_DIR/etc/sources.list.d"
    -o "Dir::Etc::Preferences=$APT_DIR/etc/preferences"
    -o "Dir::Etc::PreferencesParts=$APT_DIR/etc/preferences.d"
    -o "Dir::Etc::Trusted=$APT_DIR/etc/trusted.gpg"
    -o "Dir::Etc::TrustedParts=$APT_DIR/etc/trusted.gpg.d"
    -o "Dir::State=$APT_DIR"
    -o "Dir::State::Lists=$APT_DIR/lists"
    -o "Dir::State::status=$APT_DIR/status"
    -o "Dir::Cache=$APT_DIR"
    -o "Dir::Cache::Archives=$APT_DIR/archives"
    -o "Dir::Cache::pkgcache="
    -o "Dir::Cache::srcpkgcache="
    -o "APT::Architecture=amd64"
    -o "APT::Architectures=amd64"
    -o "Acquire::Languages=none"
    -o "APT::Sandbox::User=root"
    -o "Debug::NoLocking=1"
    -o "APT::Install-Recommends=0"
    -o "APT::Get::Assume-Yes=1"
  )
}

# Refresh the private package lists (once; again with PTNET_CI_REFRESH=1).
apt_update() {
  if [ -e "$APT_DIR/updated" ] && [ "${PTNET_CI_REFRESH:-0}" != 1 ]; then
    return 0
  fi
  need_cmd apt-get dpkg
  [ -r "$CI_KEYRING" ] || die "$CI_KEYRING missing (Debian package debian-archive-keyring)"
  say "apt-get update ($(basename "$APT_DIR"))"
  apt-get "${APT_OPTS[@]}" -qq update >"$APT_DIR/update.log" 2>&1 || {
    cat "$APT_DIR/update.log" >&2
    die "apt-get update of the private $(basename "$APT_DIR") configuration failed"
  }
  touch "$APT_DIR/updated"
}

apt_line() { # SUITE [MIRROR]
  printf 'deb [signed-by=%s] %s %s main' "$CI_KEYRING" "${2:-$CI_MIRROR}" "$1"
}

setup_apt_trixie() {
  apt_setup trixie "$(apt_line trixie)" "$(apt_line trixie-backports)" "$(apt_line sid)"
}
setup_apt_bookworm() {
  apt_setup bookworm "$(apt_line bookworm)" "$(apt_line bookworm-updates)" \
    "$(apt_line bookworm-security "$CI_SECURITY_MIRROR")"
}

# apt_download_one PKG[/SUITE] DESTDIR: the .deb of PKG (no dependencies) into DESTDIR, prints
# its path.
apt_download_one() {
  local spec=$1 dest=$2 deb pkg=${1%%/*}
  mkdir -p "$dest"
  (cd "$dest" && apt-get "${APT_OPTS[@]}" -qq download "$spec" >&2) ||
    die "apt-get download $spec failed"
  deb=$(find "$dest" -maxdepth 1 -name "${pkg}_*.deb" -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
  [ -n "$deb" ] || die "download of $pkg produced no .deb"
  printf '%s\n' "$deb"
}

# ---------------------------------------------------------------------------------------------
# QEMU >= 10.1 (vfio-user-pci) from trixie-backports, unpacked into $CI_CACHE/qemu/prefix and run
# through that prefix's own ld-linux.  Sets the array QEMU (command + firmware options).

QEMU=()
QEMU_VERSION=
qemu_version_ok() { # VERSION-STRING
  local maj min
  maj=${1%%.*}
  min=${1#*.}
  min=${min%%.*}
  [ "$maj" -gt "$CI_QEMU_MIN_MAJOR" ] ||
    { [ "$maj" -eq "$CI_QEMU_MIN_MAJOR" ] && [ "$min" -ge "$CI_QEMU_MIN_MINOR" ]; }
}

fetch_qemu() {
  if [ -n "${PTNET_CI_QEMU:-}" ]; then
    QEMU=("$PTNET_CI_QEMU")
  else
    local top=$CI_CACHE/qemu prefix=$CI_CACHE/qemu/prefix
    if [ ! -e "$top/done" ] || [ "${PTNET_CI_REFRESH:-0}" = 1 ]; then
      setup_apt_trixie
      apt_update
      say "downloading qemu-system-x86 from trixie-backports (with all dependencies)"
      rm -f "$APT_DIR"/archives/*.deb
      apt-get "${APT_OPTS[@]}" -qq -t trixie-backports install -d --no-install-recommends \
        qemu-system-x86 >"$APT_DIR/install.log" 2>&1 || {
        cat "$APT_DIR/install.log" >&2
        die "apt-get install -d qemu-system-x86 (trixie-backports) failed"
      }
      rm -rf "$prefix" "$top/done"
      mkdir -p "$prefix"
      local deb n=0
      for deb in "$APT_DIR"/archives/*.deb; do
        dpkg -x "$deb" "$prefix" || die "dpkg -x $deb failed"
        n=$((n + 1))
      done
      say "unpacked $n packages into $prefix ($(du -sh "$prefix" | cut -f1))"
      touch "$top/done"
    fi
    local lib=$prefix/usr/lib/x86_64-linux-gnu
    [ -x "$prefix/usr/bin/qemu-system-x86_64" ] || die "no qemu-system-x86_64 in $prefix"
    export QEMU_MODULE_DIR=$lib/qemu
    QEMU=("$lib/ld-linux-x86-64.so.2" --library-path "$lib:$lib/systemd"
      "$prefix/usr/bin/qemu-system-x86_64" -L "$prefix/usr/share/qemu" -L "$prefix/usr/share/seabios")
  fi
  local v
  v=$("${QEMU[@]}" --version 2>&1 | head -1) || die "QEMU does not run: $v"
  QEMU_VERSION=$(printf '%s\n' "$v" | sed -n 's/.*version \([0-9][0-9]*\.[0-9][0-9]*\(\.[0-9]*\)\?\).*/\1/p')
  [ -n "$QEMU_VERSION" ] || die "cannot parse QEMU version from: $v"
  qemu_version_ok "$QEMU_VERSION" ||
    die "QEMU $QEMU_VERSION is too old: vfio-user-pci needs >= $CI_QEMU_MIN_MAJOR.$CI_QEMU_MIN_MINOR"
  "${QEMU[@]}" -device help 2>/dev/null | grep -q '"vfio-user-pci"' ||
    die "QEMU $QEMU_VERSION has no vfio-user-pci device"
}

# OVMF (UEFI firmware) from trixie (sid's ovmf is a metapackage), for Redox images. Sets
# OVMF_CODE and OVMF_VARS.
OVMF_CODE=
OVMF_VARS=
fetch_ovmf() {
  local top=$CI_CACHE/ovmf
  if [ ! -e "$top/done" ] || [ "${PTNET_CI_REFRESH:-0}" = 1 ]; then
    setup_apt_trixie
    apt_update
    rm -rf "$top"
    local deb
    deb=$(apt_download_one ovmf/trixie "$top/debs")
    dpkg -x "$deb" "$top/root" || die "dpkg -x $deb failed"
  fi
  OVMF_CODE=$(find "$top/root" -name 'OVMF_CODE_4M.fd' | head -1)
  OVMF_VARS=$(find "$top/root" -name 'OVMF_VARS_4M.fd' | head -1)
  { [ -n "$OVMF_CODE" ] && [ -n "$OVMF_VARS" ]; } ||
    die "OVMF_CODE_4M.fd/OVMF_VARS_4M.fd not found in the ovmf package ($top)"
  touch "$top/done"
}

# ---------------------------------------------------------------------------------------------
# Guest pieces from bookworm: the newest linux-image-6.1.0-NN-amd64 and busybox-static.
# Set KERNEL_IMAGE, KERNEL_VERSION, KERNEL_ROOT (unpacked package) and BUSYBOX.

KERNEL_IMAGE=
KERNEL_VERSION=
KERNEL_ROOT=
fetch_kernel() {
  local top=$CI_CACHE/kernel
  if [ ! -e "$top/done" ] || [ "${PTNET_CI_REFRESH:-0}" = 1 ]; then
    setup_apt_bookworm
    apt_update
    local pkg deb
    pkg=$(apt-cache "${APT_OPTS[@]}" search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' |
      cut -d' ' -f1 | sort -V | tail -1)
    [ -n "$pkg" ] || die "no linux-image-6.1.0-NN-amd64 package found in bookworm"
    say "downloading $pkg"
    rm -rf "$top"
    deb=$(apt_download_one "$pkg" "$top/debs")
    dpkg -x "$deb" "$top/root" || die "dpkg -x $deb failed"
  fi
  KERNEL_ROOT=$top/root
  KERNEL_IMAGE=$(find "$KERNEL_ROOT/boot" -name 'vmlinuz-*' 2>/dev/null | sort -V | tail -1)
  [ -n "$KERNEL_IMAGE" ] || die "no vmlinuz in $KERNEL_ROOT/boot"
  touch "$top/done"
  KERNEL_VERSION=${KERNEL_IMAGE##*/vmlinuz-}
}

BUSYBOX=
fetch_busybox() {
  local top=$CI_CACHE/busybox
  if [ ! -e "$top/done" ] || [ "${PTNET_CI_REFRESH:-0}" = 1 ]; then
    setup_apt_bookworm
    apt_update
    rm -rf "$top"
    local deb
    deb=$(apt_download_one busybox-static "$top/debs")
    dpkg -x "$deb" "$top/root" || die "dpkg -x $deb failed"
  fi
  BUSYBOX=$top/root/bin/busybox
  [ -x "$BUSYBOX" ] || die "no bin/busybox in the busybox-static package ($top)"
  touch "$top/done"
}

# ---------------------------------------------------------------------------------------------
# Cargo builds.  cargo_bin NAME [TARGET] builds one bin of this crate in release mode and prints
# the path of the binary; on failure it prints nothing and returns 1 (the caller says FAIL).
# With CARGO_QUIET_FAIL=1 a failure shows only cargo's first error lines.

cargo_bin() {
  local name=$1 target=${2:-} log
  log=$(mktemp)
  local args=(build --release --bin "$name")
  [ -n "$target" ] && args+=(--target "$target")
  if ! (cd "$REPO_DIR" && cargo "${args[@]}") >"$log" 2>&1; then
    if grep -q "no bin target named" "$log"; then
      say "cargo: this crate has no bin target '$name' (yet)"
    elif [ "${CARGO_QUIET_FAIL:-0}" = 1 ]; then
      grep -m3 -A3 '^error' "$log" | sed 's/^/cargo| /' >&2 || true
    else
      tail -30 "$log" | sed 's/^/cargo| /' >&2
    fi
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
  if [ -n "$target" ]; then
    printf '%s\n' "$CARGO_TARGET/$target/release/$name"
  else
    printf '%s\n' "$CARGO_TARGET/release/$name"
  fi
}

# ---------------------------------------------------------------------------------------------
# ptnet-host: start_host SOCKDIR LOG ARGS... starts it (in the background, under timeout) and
# waits for the two vfio-user sockets of VM 0.  Sets HOST_PID.  stop_host ends it.

HOST_PID=
start_host() {
  local bin=$1 sockdir=$2 log=$3 limit=$4
  shift 4
  mkdir -p "$sockdir"
  say "starting: $bin --socket-dir $sockdir --vms 1 $*"
  timeout -k 5 "$limit" "$bin" --socket-dir "$sockdir" --vms 1 "$@" >"$log" 2>&1 &
  HOST_PID=$!
  local i
  for i in $(seq 1 200); do
    if [ -S "$sockdir/vm0-ptnet.sock" ] && [ -S "$sockdir/vm0-memdev.sock" ]; then
      return 0
    fi
    if ! kill -0 "$HOST_PID" 2>/dev/null; then
      wait "$HOST_PID" 2>/dev/null || true
      HOST_PID=
      sed 's/^/host| /' "$log" | tail -30 >&2
      return 1
    fi
    [ "$i" -eq 200 ] && break
    sleep 0.1
  done
  sed 's/^/host| /' "$log" | tail -30 >&2
  return 1
}

# stop_host: ends ptnet-host if it is still running. Sets HOST_STATE to "running" (it was up
# and has now been stopped), "exit N" (it had ended by itself with status N) or "none".
HOST_STATE=none
stop_host() {
  [ -n "$HOST_PID" ] || return 0
  if kill -0 "$HOST_PID" 2>/dev/null; then
    HOST_STATE=running
    kill -TERM "$HOST_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do
      kill -0 "$HOST_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$HOST_PID" 2>/dev/null || true
    wait "$HOST_PID" 2>/dev/null || true
  else
    local rc=0
    wait "$HOST_PID" 2>/dev/null || rc=$?
    HOST_STATE="exit $rc"
  fi
  HOST_PID=
}

# host_count REGEX: the first number captured by REGEX (sed -E, one group) in the host log.
host_count() { sed -En "s/.*$1.*/\\1/p" "$HOST_LOG" | head -1; }

# check_switch_host NAME: the switch phase's host endpoints were at work, from the counters
# ptnet-host logs as it stops (src/model/vfio/host.rs), and the guest set the source's
# broadcasts aside. Reads HOST_LOG, SOURCE_PPS, and from the guest's self-test line RESULT,
# RX (frames received) and FOREIGN.
check_switch_host() {
  local name=$1 sent sunk reflected undelivered
  sent=$(host_count 'source: ([0-9]+) frames sent')
  sunk=$(host_count 'sink: ([0-9]+) frames')
  reflected=$(host_count 'reflect [0-9a-f:]+: .*reflected=([0-9]+)')
  undelivered=$(host_count 'reflect [0-9a-f:]+: .*undelivered=([0-9]+)')
  local sw
  sw=$(grep -m1 -oE 'switch vale0: .*' "$HOST_LOG" || true)
  [ -n "$sw" ] && say "$name: host $sw"
  if [ -n "$sent" ] && [ "$sent" -ge 1000 ]; then
    pass "$name: host source active: $(grep -m1 -oE 'source: [0-9]+ frames sent.*' "$HOST_LOG")"
  else
    fail "$name: host source: ${sent:-no} frames sent logged (at least 1000 expected at $SOURCE_PPS pps)"
  fi
  if [ -n "$sunk" ] && [ "$sunk" -ge 1 ]; then
    pass "$name: host sink active: $(grep -m1 -oE 'sink: [0-9]+ frames.*' "$HOST_LOG") (the guest's frames flooded before the switch learnt the reflect endpoint)"
  else
    fail "$name: host sink: ${sunk:-no} frames received logged (at least 1 expected)"
  fi
  if [ -n "$reflected" ] && [ -n "$RX" ] && [ "$reflected" -ge "$RX" ] && [ "$undelivered" = 0 ]; then
    pass "$name: host reflect endpoint: $(grep -m1 -oE 'reflect [0-9a-f:]+: .*' "$HOST_LOG")"
  else
    fail "$name: host reflect endpoint: reflected=${reflected:-?} undelivered=${undelivered:-?} (the guest received ${RX:-?})"
  fi
  if [ -n "$FOREIGN" ] && [ "$FOREIGN" -gt 0 ]; then
    pass "$name: the source's broadcasts reached the guest and were set aside: foreign=$FOREIGN"
  elif [[ $RESULT == "ptnetd: selftest PASS"* ]]; then
    fail "$name: the guest received no foreign frame (foreign=${FOREIGN:-?}): the source's broadcasts did not reach it"
  fi
}

# The -device options that attach VM 0's two functions (ptnet netif, then memdev).
vfio_user_devices() { # SOCKDIR
  printf '%s\n' -device "{\"driver\":\"vfio-user-pci\",\"id\":\"ptnet0\",\"socket\":{\"path\":\"$1/vm0-ptnet.sock\",\"type\":\"unix\"}}" \
    -device "{\"driver\":\"vfio-user-pci\",\"id\":\"memdev0\",\"socket\":{\"path\":\"$1/vm0-memdev.sock\",\"type\":\"unix\"}}"
}

# ---------------------------------------------------------------------------------------------
# The Redox test kit (a minimal Redox and a relibc sysroot; shared/redox-kit/README.md): used
# where it lies, beside the repository, never copied into it. Sets REDOX_KIT.

REDOX_KIT=
redox_kit() {
  local kit=${PTNET_REDOX_KIT:-$REPO_DIR/../shared/redox-kit}
  [ -x "$kit/make-image.sh" ] && [ -x "$kit/sysroot/bin/x86_64-unknown-redox-gcc" ] ||
    die "the Redox test kit is not at $kit (shared/redox-kit beside the repository; PTNET_REDOX_KIT=DIR to use another)"
  REDOX_KIT=$(cd "$kit" && pwd)
}
