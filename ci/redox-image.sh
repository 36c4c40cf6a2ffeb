#!/usr/bin/env bash
# Cross-links ptnetd for x86_64-unknown-redox and makes the Redox test images, with the Redox
# test kit (shared/redox-kit, beside this repository: never copied into it).
#
#   ci/redox-image.sh --out DIR          DIR/{selftest,vnet,daemon}.img, one per match file
#   ci/redox-image.sh --out DIR --ptnetd BIN   use a ptnetd already built for Redox
#
# For each ci/redox/match/NAME.toml it lays out an initfs from files this repository owns:
#   ci/redox/initfs/                  (etc/init.rc: the daemons, then pcid-spawner)
#   etc/pcid/initfs.toml              <- ci/redox/match/NAME.toml (ptnetd's command line)
#   lib/drivers/ptnetd                <- the cross-linked binary
#   bin/ptnet-{scheme-test,net-test,pktgen}   <- the test clients, cross-linked with it
#   etc/init.rc                       += ci/redox/match/NAME.rc, if there is one
# and makes DIR/NAME.img with the kit's make-image.sh (which adds the kit's own programs).
#
# Options:
#   --out DIR        where the images go (made if missing)
#   --ptnetd BIN     skip the build, use BIN
#   --toolchain TC   rustup toolchain for -Zbuild-std (default: $PTNET_NIGHTLY, else
#                    nightly-2026-05-20; it needs the rust-src component)
# Environment: PTNET_REDOX_KIT (default ../shared/redox-kit relative to the repository).
# Needs: clang and lld (the kit's link driver), sfdisk (Debian fdisk), strip (binutils).
# Prints PASS/FAIL lines; exits non-zero on FAIL.
set -euo pipefail

# shellcheck source=ci/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OUT=
PTNETD=
TOOLCHAIN=${PTNET_NIGHTLY:-nightly-2026-05-20}
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --out) OUT=${2:?--out needs a directory}; shift ;;
    --ptnetd) PTNETD=${2:?--ptnetd needs a file}; shift ;;
    --toolchain) TOOLCHAIN=${2:?--toolchain needs a value}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$OUT" ] || die "--out DIR is required"

redox_kit
need_cmd clang ld.lld sfdisk strip
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
T_START=$(now)

phase_begin cross-build
if [ -z "$PTNETD" ]; then
  log=$OUT/cargo-redox.log
  # The kit's unwinder is a stub: panic=abort, with std rebuilt for it (-Zbuild-std). No debug
  # info: make-image.sh strips it anyway, and generating it for std only slows a cold build.
  if ! (cd "$REPO_DIR" &&
    CARGO_TARGET_X86_64_UNKNOWN_REDOX_LINKER=$REDOX_KIT/sysroot/bin/x86_64-unknown-redox-gcc \
      CARGO_PROFILE_RELEASE_PANIC=abort CARGO_PROFILE_RELEASE_DEBUG=0 \
      cargo "+$TOOLCHAIN" build --release --target x86_64-unknown-redox \
      -Zbuild-std=std,panic_abort --bin ptnetd --bin ptnet-scheme-test --bin ptnet-net-test --bin ptnet-pktgen --bin ptnet-smol) \
      >"$log" 2>&1; then
    tail -30 "$log" | sed 's/^/cargo| /' >&2
    die "ptnetd does not build or link for x86_64-unknown-redox (log: $log)"
  fi
  PTNETD=$CARGO_TARGET/x86_64-unknown-redox/release/ptnetd
fi
# The test clients (scheme checks, netstack checks): built beside ptnetd when it is built here.
CLIENTS=()
for c in ptnet-scheme-test ptnet-net-test ptnet-pktgen ptnet-smol; do
  f=$CARGO_TARGET/x86_64-unknown-redox/release/$c
  [ -x "$f" ] && CLIENTS+=("$f")
done
[ -x "$PTNETD" ] || die "no ptnetd binary at $PTNETD"
pass "ptnetd linked for x86_64-unknown-redox: $PTNETD ($(du -k "$PTNETD" | cut -f1) KiB)"
phase_end

phase_begin images
for match in "$CI_DIR"/redox/match/*.toml; do
  name=$(basename "$match" .toml)
  root=$OUT/initfs-$name
  rm -rf "$root"
  cp -a "$CI_DIR/redox/initfs" "$root"
  mkdir -p "$root/etc/pcid" "$root/lib/drivers"
  cp "$match" "$root/etc/pcid/initfs.toml"
  cp "$PTNETD" "$root/lib/drivers/ptnetd"
  mkdir -p "$root/bin"
  [ ${#CLIENTS[@]} -eq 0 ] || cp "${CLIENTS[@]}" "$root/bin/"
  # An image's own init.rc lines (its test clients) follow the common ones.
  [ ! -f "${match%.toml}.rc" ] || cat "${match%.toml}.rc" >>"$root/etc/init.rc"
  "$REDOX_KIT/make-image.sh" "$OUT/$name.img" "$root" >/dev/null ||
    die "make-image.sh $OUT/$name.img failed"
  pass "image $OUT/$name.img: $(grep -m1 -o 'command = .*' "$match")"
done
phase_end
CI_TIMES+=("total=$(secs_since "$T_START")s")
print_times
