#!/usr/bin/env bash
# build-static.sh: build the statically linked ociboot that goes into the VM test image (it
# runs as init= before any library is reachable) and print its path.
#
# glibc static (`-C target-feature=+crt-static`; no musl target here), release profile, in a
# target directory of its own (target/static) so it neither fights the test build's lock nor
# invalidates its artifacts. Incremental: a second run with no change takes about a second.
set -euo pipefail
REPO=$(cd "$(dirname "$(realpath "${BASH_SOURCE[0]}")")/../.." && pwd)
export CARGO_TARGET_DIR=${OCIBOOT_STATIC_TARGET_DIR:-$REPO/target/static}
export RUSTFLAGS='-C target-feature=+crt-static'
cd "$REPO"
cargo build --quiet --release --target x86_64-unknown-linux-gnu -p ociboot >&2
BIN=$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/ociboot
if readelf -l "$BIN" | grep -q 'Requesting program interpreter'; then
    echo "build-static.sh: $BIN is dynamically linked" >&2
    exit 1
fi
echo "$BIN"
