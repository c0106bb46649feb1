#!/usr/bin/env bash
# Seed the fuzz corpora from the test fixtures: uncompressed layers of the tricky image for
# tar_layer, manifests/indexes/configs for manifest, layer and tree records of a real store
# for record. Then: RUSTC_BOOTSTRAP=1 cargo fuzz run -O TARGET -- -max_total_time=60
set -euo pipefail
cd "$(dirname "$0")"
FX=$(mktemp -d)
trap 'rm -rf "$FX"' EXIT
python3 ../tests/fixtures/mkimages.py "$FX" >/dev/null
mkdir -p corpus/tar_layer corpus/manifest corpus/record
python3 - "$FX" <<'PY'
import json, os, shutil, sys
fx = sys.argv[1]
j = json.load(open(os.path.join(fx, "fixtures.json")))
for name, l in j["layouts"].items():
    for tag, t in l["tags"].items():
        blobs = os.path.join(fx, l["path"], "blobs", "sha256")
        for d in [t["digest"], t.get("manifest"), t.get("config")]:
            if d:
                p = os.path.join(blobs, d.split(":")[1])
                if os.path.exists(p):
                    shutil.copy(p, os.path.join("corpus/manifest", d.split(":")[1]))
        if name == "tricky" and tag == "plain":
            for d in t["layers"]:
                shutil.copy(os.path.join(blobs, d.split(":")[1]), os.path.join("corpus/tar_layer", d.split(":")[1]))
PY
# tar_header: the same layers, and small PAX and GNU archives (long names and links, xattrs).
mkdir -p corpus/tar_header
cp corpus/tar_layer/* corpus/tar_header/
find corpus/tar_header -size +256k -delete  # header parsing: small inputs run faster
for fmt in PAX_FORMAT GNU_FORMAT USTAR_FORMAT; do
    python3 -c "import io, sys, tarfile
with tarfile.open(sys.argv[1], 'w', format=tarfile.$fmt) as t:
    for name, kind in [('usr/' + 'n' * 120 + '/f', tarfile.REGTYPE), ('usr/lib/l', tarfile.SYMTYPE), ('usr/d', tarfile.DIRTYPE)]:
        i = tarfile.TarInfo(name if '$fmt' != 'USTAR_FORMAT' else name[-90:]); i.type = kind; i.linkname = 'x' * 150 if kind == tarfile.SYMTYPE and '$fmt' != 'USTAR_FORMAT' else 'f'
        i.pax_headers = {'SCHILY.xattr.user.k': 'v', 'mtime': '1700000000.5'} if '$fmt' == 'PAX_FORMAT' else {}
        i.size = 5 if kind == tarfile.REGTYPE else 0; t.addfile(i, io.BytesIO(b'hello'))" "corpus/tar_header/$fmt.tar"
done
sysroot=$FX/sysroot
mkdir -p "$sysroot"
(cd .. && cargo run -q --release -p ociboot -- --quiet --sysroot "$sysroot" image pull "oci:$FX/tricky:gzip")
cp "$sysroot"/ociboot/store/layers/* corpus/record/
for t in "$sysroot"/ociboot/store/images/*/tree; do cp "$t" "corpus/record/tree-$(basename "$(dirname "$t")")"; done
# etc_merge: three trees from 4-byte operations (tree and depth, names, kind, argument; see
# fuzz_targets/etc_merge.rs): a changed file below a directory the new image made a symlink
# out, an added directory where it has a relative link out, a file/directory swap, a FIFO.
mkdir -p corpus/etc_merge
printf '\x03\x04\x00\x00\x04\x04\x00\x01\x02\x00\x03\x00' >corpus/etc_merge/parent-link
printf '\x04\x02\x00\x00\x02\x02\x03\x02\x00\x01\x00\x00' >corpus/etc_merge/added-dir-link
printf '\x00\x01\x02\x00\x01\x01\x00\x00\x05\x05\x00\x00\x02\x01\x04\x00\x01\x03\x03\x01' >corpus/etc_merge/swap-fifo
echo "seeded: $(ls corpus/etc_merge | wc -l) etc trees, $(ls corpus/tar_layer | wc -l) layers, $(ls corpus/tar_header | wc -l) tar_header inputs, $(ls corpus/manifest | wc -l) manifests, $(ls corpus/record | wc -l) records"
