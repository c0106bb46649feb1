#!/usr/bin/env bash
# build-static.sh: build the statically linked ociboot that goes into the VM test images (it
# runs as init= before any library is reachable) and print its path.
#
# This is the ordinary `cargo build --release` of the workspace: .cargo/config.toml makes every
# build static (glibc, +crt-static) for x86_64-unknown-linux-gnu. The tests call it while
# `cargo test` runs; cargo releases the target directory's lock before it runs the tests, and
# the release profile's artifacts do not disturb the test build's. Incremental: a second run
# with no change takes about a second.
set -euo pipefail
REPO=$(cd "$(dirname "$(realpath "${BASH_SOURCE[0]}")")/../.." && pwd)
cd "$REPO"
cargo build --quiet --release -p ociboot >&2
BIN=${CARGO_TARGET_DIR:-$REPO/target}/x86_64-unknown-linux-gnu/release/ociboot
if readelf -l "$BIN" | grep -q 'Requesting program interpreter'; then
    echo "build-static.sh: $BIN is dynamically linked (RUSTFLAGS in the environment overrides .cargo/config.toml?)" >&2
    exit 1
fi
echo "$BIN"
