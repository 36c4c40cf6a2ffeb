#!/usr/bin/env bash
# The Redox phase of .ci/run: ptnetd cross-linked for Redox, put in images made from the Redox
# test kit (shared/redox-kit, beside this repository), and booted six times under QEMU against
# ptnet-host, each boot with its own verdict line ("PASS: redox NAME" / "FAIL: redox NAME: ...").
#
#   1. reflector    ptnetd --selftest 20000 over one ring pair, reflector port
#   2. switch       the same image, the port on the switch with the reflect endpoint beside a
#                   sink and a source of broadcasts (counted by the guest as foreign=, not failed)
#   3. vnet-4rings  4 ring pairs and the 12-byte virtio-net header (switch + reflect endpoint
#                   with --vnet: only switch ports accept the header, as netmap's VALE ports)
#   4. daemon       the plain daemon (2 ring pairs, reflector): both schemes registered,
#                   readiness to pcid-spawner; ptnet-scheme-test from init.rc (stack mode, zero
#                   copy, ring ownership: PASS lines) and ptnet-pktgen (txrx with exact counts,
#                   ping latencies); then the device goes away: clean shutdown
#   5. netstack     two VMs on the switch, each with ptnetd and Redox's own netstack (smolnetd):
#                   UDP echoed through std::net (10,000 datagrams, none lost) and a TCP
#                   transfer checked by SHA-256 (ci/redox-netstack-test.sh)
#   6. smol         two VMs on the switch with ptnetd and no smolnetd: ptnet-smol, a smoltcp
#                   stack of its own, sends 4 MiB over TCP from VM A's network scheme to VM B's
#                   netmap scheme (zero copy), every byte checked (redox-netstack-test.sh --mode smol)
#
#   ci/redox-test.sh                 everything (cross-build, images, six boots)
#   ci/redox-test.sh --boots "1 4"   only these boots
#   ci/redox-test.sh --ptnetd BIN    a ptnetd already built for Redox (e.g. a deliberately
#                                    broken one, to see the run fail)
# Options: --out DIR (images; default a temporary directory, removed), --timeout S (per boot,
# default 120), --toolchain TC (see ci/redox-image.sh).
# Stops at the first failing boot; exits non-zero on FAIL.
set -euo pipefail

# shellcheck source=ci/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OUT=
BOOTS="1 2 3 4 5 6"
TIMEOUT=120
IMAGE_ARGS=()
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --out) OUT=${2:?--out needs a directory}; shift ;;
    --boots) BOOTS=${2:?--boots needs a list}; shift ;;
    --timeout) TIMEOUT=${2:?--timeout needs a value}; shift ;;
    --ptnetd | --toolchain) IMAGE_ARGS+=("$1" "${2:?$1 needs a value}"); shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

T0=$(now)
TMP_OUT=
if [ -z "$OUT" ]; then
  OUT=$(mktemp -d "${TMPDIR:-/tmp}/ptnet-redox-img.XXXXXX")
  TMP_OUT=$OUT
fi
trap '[ -z "$TMP_OUT" ] || rm -rf "$TMP_OUT"' EXIT

bash "$CI_DIR/redox-image.sh" --out "$OUT" "${IMAGE_ARGS[@]}"

boot() { bash "$CI_DIR/redox-qemu-test.sh" --bios --timeout "$TIMEOUT" "$@"; }
for n in $BOOTS; do
  case $n in
    1) boot --name reflector --image "$OUT/selftest.img" --min-frames 20000 ;;
    2) boot --name switch --image "$OUT/selftest.img" --min-frames 20000 --switch ;;
    3) boot --name vnet-4rings --image "$OUT/vnet.img" --min-frames 10000 \
      --host-args "--backend switch --reflect --vnet --rings 4" \
      --expect 'ptnetd: .* rings 4/4 .* vnet_hdr_len 12 ' --expect ': 8 vectors on CPU' ;;
    5) bash "$CI_DIR/redox-netstack-test.sh" --image-a "$OUT/net-a.img" --image-b "$OUT/net-b.img" \
      --timeout "$TIMEOUT" ;;
    4) boot --name daemon --image "$OUT/daemon.img" --no-selftest --host-args "--rings 2" \
      --wait-for 'pkt-gen: Ping (PASS|FAIL)' \
      --expect 'scheme network\.pci-[0-9a-f.-]+_ptnet registered' \
      --expect 'scheme netmap\.pci-[0-9a-f.-]+_ptnet registered' \
      --expect 'entered the null namespace' --expect 'ptnet-scheme-test: stack PASS' --expect 'ptnet-scheme-test: zerocopy PASS' \
      --expect 'ptnet-scheme-test: ownership PASS' --expect 'ptnet-scheme-test: eexist PASS .*already registered' \
      --expect 'pkt-gen: Txrx PASS sent=20000 received=20000 lost=0' \
      --expect 'pkt-gen: Ping PASS sent=500 received=500 .* rtt p50=' ;;
    6) bash "$CI_DIR/redox-netstack-test.sh" --mode smol --image-a "$OUT/smol-a.img" \
      --image-b "$OUT/smol-b.img" --timeout "$TIMEOUT" ;;
    *) die "no boot $n (1..6)" ;;
  esac
done
echo "TIME: redox phase $(secs_since "$T0")s (boots: $BOOTS)"
