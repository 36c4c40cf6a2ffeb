#!/usr/bin/env bash
# Put ptnetd into a Redox build system checkout as a cookbook recipe.
#
#   ci/redox/install-recipe.sh REDOX_DIR [CATEGORY]
#
# Creates REDOX_DIR/recipes/CATEGORY/ptnetd/ (CATEGORY defaults to "drivers") with
#   recipe.toml   ci/redox/recipe.toml, its [source] path set to the export below
#   ptnetd-src/   the files of this checkout that git tracks or would track (no target/)
# and writes an example filesystem config, REDOX_DIR/config/x86_64/ptnet-test.toml, unless one
# exists. Run it again after changing the sources; the cookbook re-copies a newer path source.
set -euo pipefail

REDOX_DIR=${1:?usage: $0 REDOX_DIR [CATEGORY]}
CATEGORY=${2:-drivers}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

[ -d "$REDOX_DIR/recipes" ] || { echo "FAIL: $REDOX_DIR has no recipes/ (not a Redox build system checkout)"; exit 1; }
REDOX_DIR=$(cd "$REDOX_DIR" && pwd)
DEST=$REDOX_DIR/recipes/$CATEGORY/ptnetd
mkdir -p "$DEST"

# Export the sources: tracked files plus untracked, non-ignored ones (work in progress).
rm -rf "$DEST/ptnetd-src.new"
mkdir -p "$DEST/ptnetd-src.new"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do
    [ -e "$f" ] && printf '%s\0' "$f"
  done | xargs -0 cp --parents -t "$DEST/ptnetd-src.new")
rm -rf "$DEST/ptnetd-src"
mv "$DEST/ptnetd-src.new" "$DEST/ptnetd-src"

sed "s|^path = .*|path = \"$DEST/ptnetd-src\"|" "$HERE/recipe.toml" >"$DEST/recipe.toml"
echo "ci: recipe written to $DEST/recipe.toml (source: $DEST/ptnetd-src)"

CONF=$REDOX_DIR/config/x86_64/ptnet-test.toml
if [ -d "$REDOX_DIR/config/x86_64" ] && [ ! -e "$CONF" ]; then
  cat >"$CONF" <<'EOF'
# Redox image for testing ptnetd (written by ptnetd's ci/redox/install-recipe.sh).
include = ["minimal.toml"]

[packages]
ptnetd = {}

# Run ptnetd's selftest at boot: a file in /etc/pcid.d/ overrides /usr/lib/pcid.d/ of the same
# name. Remove this block for an image that runs the plain driver
# (then: ci/redox-qemu-test.sh --no-selftest).
[[files]]
path = "/etc/pcid.d/ptnetd.toml"
data = """
[[drivers]]
name = "ptnet"
class = 0x02
vendor = 0x1b36
device = 0x000d
command = ["ptnetd", "--selftest", "100000"]
"""
EOF
  echo "ci: example image config written to $CONF (make all CONFIG_NAME=ptnet-test)"
fi
