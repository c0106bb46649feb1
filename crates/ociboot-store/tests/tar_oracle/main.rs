//! The tar oracle: a generated corpus of valid and malformed layer tar streams, read by GNU tar
//! (`tar -xf` into a temporary directory, as root), Python's tarfile (`/usr/bin/python3`,
//! `tarfile.open(errorlevel=2)`, every member listed and every file's data read; nothing is
//! extracted, since this Python has no extraction filters and would follow `/abs` names out of
//! the directory) and ociboot's import (`import_layer` into a temporary object store, the ops
//! applied to a tree, as a pull does).
//!
//! Required: whatever ociboot accepts, both references accept, with the same content: paths,
//! types, sizes, file bytes, link targets, permission bits (and owner and mtime against
//! tarfile). Where both references accept the same content and ociboot refuses, the case must
//! be listed in [`DELIBERATE`] with the reason; the list is checked to be exact, so it stays
//! true.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use ociboot_oci::{Compression, Sha256Digest};
use ociboot_store::import::import_layer;
use ociboot_store::objects::Staging;
use ociboot_store::{Content, LayerOp, Tree};

mod corpus;
use corpus::corpus;

/// Cases both references accept with the same content that ociboot refuses, by a part of
/// their name (see `corpus.rs`), and why. Every case of this kind must match a line, and every
/// line must match such a case.
const DELIBERATE: &[(&str, &str)] = &[
    (
        "/plus",
        "octal field with a sign: tarfile's int() takes it, GNU tar reads it (as base-64 or \
        octal); no tar writer produces one",
    ),
    (
        "/underscore",
        "octal field with '_': tarfile's int() takes it; no tar writer produces one",
    ),
    (
        "/tab",
        "octal field with a leading tab: both skip white space; ociboot only leading spaces",
    ),
    (
        "/spaces",
        "numeric field of spaces only: read as 0 by both; ociboot wants a digit",
    ),
    (
        "/leadnul",
        "numeric field starting with NUL then digits: both stop or skip at the NUL \
        (tarfile reads 0, GNU tar skips it); refused as ambiguous",
    ),
    (
        "/junkafternul",
        "bytes after the NUL that ends a numeric field: both ignore them; ociboot \
        wants only NULs and spaces after the digits",
    ),
    (
        "/b256neg",
        "negative base-256 number: both take negative ids, times and modes; ociboot \
        has no use for one and refuses all",
    ),
    (
        "/b256ovf",
        "base-256 uid, gid, device or mtime beyond 32/63 bits: where a reader ignores \
        the field (ids when the user name resolves, devices of non-devices) it accepts it; \
        ociboot checks every field of every header",
    ),
    (
        "/hugeoctal",
        "all-7s size on a directory: both ignore sizes of non-files (see /size+)",
    ),
    (
        "/size+",
        "a size on a directory, link or device: both ignore it (and read the next header \
        right after), the tar crate skipped that much data; refused as ambiguous",
    ),
    (
        "magic-v7",
        "old V7 header (no magic): no image builder writes one; refused to keep the \
        prefix field unambiguous",
    ),
    ("magic-junk", "unknown magic: read as V7 by both"),
    (
        "magic-ustarsp",
        "'ustar\\0' with a version of spaces: neither POSIX nor GNU",
    ),
    (
        "/prefix",
        "bytes in the prefix field of a GNU header: GNU's own format keeps times there",
    ),
    (
        "type[NUL]",
        "a directory as a regular file of type NUL whose name ends in '/' (old tars)",
    ),
    (
        "type[X]",
        "Solaris 'X' extended header: not written by any image builder",
    ),
    (
        "type[S]",
        "GNU sparse files: unsupported (and their maps grow with the input)",
    ),
    (
        "type[8]",
        "unknown type: both extract it as a regular file; ociboot refuses it",
    ),
    ("type[A]", "unknown type, as type[8]"),
    (
        "type[N]",
        "old GNU long-name type, unknown to both: as type[8]",
    ),
    ("type[Z]", "unknown type, as type[8]"),
    ("type[ ]", "type ' ': unknown, as type[8]"),
    (
        "name-empty",
        "an entry without a name: GNU tar substitutes '.', tarfile keeps ''",
    ),
    (
        "pax-x/uid-ok",
        "uid 4294967295 is (uid_t)-1, which chown(2) takes for 'unchanged'",
    ),
    (
        "gnu-L/after-pax",
        "a PAX path and a GNU long name for one entry: here both take the \
        PAX path, but the other order they read differently; refused in either order",
    ),
    (
        "cut700",
        "stream ending inside a header block: both take it for the end of the archive",
    ),
    (
        "halfend",
        "stream ending inside the end-of-archive blocks: as cut700",
    ),
    (
        "pax-x/dup-path",
        "a PAX key twice: both take the last one; refused as ambiguous",
    ),
    (
        "pax-x/xattr-emptyname",
        "an xattr without a name: both ignore xattrs when extracting",
    ),
    (
        "pax-x/mtime-neg",
        "negative PAX mtime: ociboot takes no time before 1970",
    ),
    (
        "pax-x/mtime-exp",
        "PAX mtime with an exponent: tarfile's float() and GNU tar take it",
    ),
    (
        "pax-x/mtime-dot",
        "PAX mtime '5.': no digits after the point",
    ),
    (
        "pax-x/nuljunk",
        "bytes after a NUL in the PAX records: both stop at the NUL",
    ),
    (
        "pax-g/",
        "PAX global headers that set entry fields or are malformed the way pax-x ones \
        are: ociboot refuses a global header that would change the entries after it",
    ),
];

/// One file system entry as a reader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    /// 'f' file, 'd' directory, 'l' symlink, 'p' FIFO, 'c'/'b' devices.
    kind: char,
    /// Permission bits (not compared for symlinks).
    mode: u32,
    /// File bytes, or a symlink's target.
    data: Vec<u8>,
    dev: (u32, u32),
}

/// Path → entry; owner and mtime kept apart (only tarfile and ociboot report them).
type Model = BTreeMap<Vec<u8>, Item>;
type Owners = BTreeMap<Vec<u8>, (u64, u64, i64)>;

/// A path as the readers store it: no leading `/` or `./`, no empty or `.` components.
fn norm(p: &[u8]) -> Vec<u8> {
    p.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect::<Vec<_>>()
        .join(&b'/')
}

fn objects_dir(root: &Path) -> (PathBuf, PathBuf) {
    let objects = root.join("objects");
    let tmp = root.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    for i in 0..256 {
        std::fs::create_dir_all(objects.join(format!("{i:02x}"))).unwrap();
    }
    (objects, tmp)
}

/// ociboot's reading of `blob`: `Err` with the message when refused.
fn ociboot(blob: &[u8], objects: &Path, tmp: &Path) -> Result<(Model, Owners), String> {
    let mut staging = Staging::new(tmp, objects).unwrap();
    let r = import_layer(
        blob,
        Sha256Digest::of(blob),
        blob.len() as u64,
        Compression::None,
        &mut staging,
        "layer",
    );
    let layer = match r {
        Ok(l) => l,
        Err(e) => {
            staging.abort();
            return Err(e.to_string());
        }
    };
    let applied = Tree::new().apply_layer(&layer.ops);
    let mut m = Model::new();
    let mut own = Owners::new();
    for op in &layer.ops {
        match op {
            LayerOp::Put(p, n) => {
                let (kind, data, dev) = match &n.content {
                    Content::Dir(_) => ('d', vec![], (0, 0)),
                    Content::File { object, .. } => {
                        let d = std::fs::read(objects.join(object.rel_path())).unwrap();
                        ('f', d, (0, 0))
                    }
                    Content::Symlink(t) => ('l', t.clone(), (0, 0)),
                    Content::Fifo => ('p', vec![], (0, 0)),
                    Content::CharDevice(a, b) => ('c', vec![], (*a, *b)),
                    Content::BlockDevice(a, b) => ('b', vec![], (*a, *b)),
                };
                let mode = if kind == 'l' { 0 } else { n.meta.mode };
                m.insert(
                    p.clone(),
                    Item {
                        kind,
                        mode,
                        data,
                        dev,
                    },
                );
                own.insert(
                    p.clone(),
                    (n.meta.uid.into(), n.meta.gid.into(), n.meta.mtime),
                );
            }
            LayerOp::Hardlink(p, t) => {
                let Some(i) = m.get(t).cloned() else {
                    return Err(format!("hardlink to a missing {t:?}"));
                };
                m.insert(p.clone(), i);
                own.insert(p.clone(), own[t]);
            }
            LayerOp::Whiteout(_) | LayerOp::Opaque(_) => return Err("whiteout".into()),
        }
    }
    staging.abort();
    applied.map_err(|e| format!("applying the layer: {e}"))?;
    Ok((m, own))
}

/// GNU tar's reading: extract into `dir` as root; `Err` on a non-zero exit.
fn gnu(tarball: &Path, dir: &Path) -> Result<Model, String> {
    std::fs::create_dir_all(dir).unwrap();
    let out = Command::new("tar")
        .arg("-xf")
        .arg(tarball)
        .arg("-C")
        .arg(dir)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut m = Model::new();
    walk(dir, dir, &mut m);
    Ok(m)
}

fn walk(root: &Path, d: &Path, m: &mut Model) {
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        let md = std::fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_encoded_bytes()
            .to_vec();
        let mode = md.permissions().mode() & 0o7777;
        let rdev = md.rdev();
        let dev = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
        let item = if ft.is_dir() {
            walk(root, &p, m);
            Item {
                kind: 'd',
                mode,
                data: vec![],
                dev: (0, 0),
            }
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&p).unwrap();
            Item {
                kind: 'l',
                mode: 0,
                data: t.into_os_string().into_encoded_bytes(),
                dev: (0, 0),
            }
        } else if ft.is_file() {
            Item {
                kind: 'f',
                mode,
                data: std::fs::read(&p).unwrap(),
                dev: (0, 0),
            }
        } else if ft.is_fifo() {
            Item {
                kind: 'p',
                mode,
                data: vec![],
                dev: (0, 0),
            }
        } else if ft.is_char_device() {
            Item {
                kind: 'c',
                mode,
                data: vec![],
                dev,
            }
        } else {
            Item {
                kind: 'b',
                mode,
                data: vec![],
                dev,
            }
        };
        m.insert(rel, item);
    }
}

const PY: &str = r#"
import json, sys, tarfile
for p in sys.argv[1:]:
    try:
        t = tarfile.open(p, errorlevel=2)
        out = []
        for m in t.getmembers():
            d = b""
            if m.isreg() or m.type not in tarfile.SUPPORTED_TYPES:
                d = t.extractfile(m).read()
            if len(d) != m.size and m.isreg():
                raise ValueError("short data")
            out.append([m.name.encode("utf-8", "surrogateescape").hex(), m.type.decode("latin-1"),
                        str(m.mode), str(m.uid), str(m.gid), str(int(m.mtime)), m.linkname.encode("utf-8", "surrogateescape").hex(),
                        d.hex(), str(m.devmajor), str(m.devminor)])
        print(json.dumps({"ok": out}))
    except Exception as e:
        print(json.dumps({"err": repr(e)[:300]}))
"#;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// tarfile's reading of every tarball, in order.
fn python(paths: &[PathBuf]) -> Vec<Result<(Model, Owners), String>> {
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(PY)
        .args(paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let res: Vec<_> = text
        .lines()
        .map(|l| py_model(serde_json::from_str(l).unwrap()))
        .collect();
    assert_eq!(res.len(), paths.len());
    res
}

fn py_model(v: serde_json::Value) -> Result<(Model, Owners), String> {
    let Some(members) = v.get("ok").and_then(|m| m.as_array()) else {
        return Err(v["err"].as_str().unwrap_or("?").to_string());
    };
    let mut m = Model::new();
    let mut own = Owners::new();
    for x in members {
        let s = |i: usize| x[i].as_str().unwrap().to_string();
        // Numbers as text: tarfile's can be beyond 64 bits; those become -1.
        let n = |i: usize| x[i].as_str().unwrap().parse::<i64>().unwrap_or(-1);
        let path = norm(&unhex(&s(0)));
        let mode = (n(2) & 0o7777) as u32;
        let link = unhex(&s(6));
        let dev = (n(8) as u32, n(9) as u32);
        let mut owner = (n(3) as u64, n(4) as u64, n(5));
        let item = match s(1).as_str() {
            "1" => match m.get(&norm(&link)) {
                // A hard link is the same inode: its target's owner and time.
                Some(i) => {
                    owner = own[&norm(&link)];
                    i.clone()
                }
                None => return Err("tarfile: hardlink to a missing file".into()),
            },
            "2" => Item {
                kind: 'l',
                mode: 0,
                data: link,
                dev: (0, 0),
            },
            "3" => Item {
                kind: 'c',
                mode,
                data: vec![],
                dev,
            },
            "4" => Item {
                kind: 'b',
                mode,
                data: vec![],
                dev,
            },
            "5" => Item {
                kind: 'd',
                mode,
                data: vec![],
                dev: (0, 0),
            },
            "6" => Item {
                kind: 'p',
                mode,
                data: vec![],
                dev: (0, 0),
            },
            _ => Item {
                kind: 'f',
                mode,
                data: unhex(&s(7)),
                dev: (0, 0),
            },
        };
        own.insert(path.clone(), owner);
        m.insert(path, item);
    }
    Ok((m, own))
}

/// Whether `a` (entries as listed) is what `extracted` holds: the same non-directories, its
/// directories there with the same mode, and no directory there that is neither listed nor a
/// parent of a listed path.
fn same_tree(a: &Model, extracted: &Model) -> Result<(), String> {
    let parents: BTreeSet<Vec<u8>> = a
        .keys()
        .flat_map(|p| {
            p.iter()
                .enumerate()
                .filter(|(_, &b)| b == b'/')
                .map(|(i, _)| p[..i].to_vec())
                .collect::<Vec<_>>()
        })
        .collect();
    for (p, i) in extracted {
        match a.get(p) {
            // The extraction directory itself (an archive's "." entry).
            _ if p.is_empty() => {}
            Some(j) if j == i => {}
            None if i.kind == 'd' && parents.contains(p) => {}
            other => {
                return Err(format!(
                    "{}: {other:?} against {i:?}",
                    String::from_utf8_lossy(p)
                ))
            }
        }
    }
    if let Some(p) = a
        .keys()
        .find(|p| !p.is_empty() && !extracted.contains_key(*p))
    {
        return Err(format!("{} missing", String::from_utf8_lossy(p)));
    }
    Ok(())
}

#[test]
fn ociboot_accepts_only_what_gnu_tar_and_tarfile_accept_with_the_same_content() {
    let t0 = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (objects, tmp) = objects_dir(dir.path());
    let cases = corpus();
    eprintln!("corpus in {:?}", t0.elapsed());
    let names: BTreeSet<_> = cases.iter().map(|c| c.0.clone()).collect();
    assert_eq!(names.len(), cases.len(), "case names must be unique");
    let paths: Vec<PathBuf> = cases
        .iter()
        .enumerate()
        .map(|(i, (_, blob))| {
            let p = dir.path().join(format!("{i}.tar"));
            std::fs::write(&p, blob).unwrap();
            p
        })
        .collect();
    let tp = std::time::Instant::now();
    let py = python(&paths);
    let tp = tp.elapsed();
    let mut problems = Vec::new();
    let mut deliberate = BTreeSet::new();
    let mut accepted = 0;
    let (mut tg, mut to) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for (i, (name, blob)) in cases.iter().enumerate() {
        let t0 = std::time::Instant::now();
        let x = dir.path().join("x");
        let g = gnu(&paths[i], &x);
        std::fs::remove_dir_all(&x).unwrap();
        let t1 = std::time::Instant::now();
        let o = ociboot(blob, &objects, &tmp);
        tg += t1 - t0;
        to += t1.elapsed();
        let p = &py[i];
        match (&o, &g, p) {
            (Ok((om, oown)), Ok(gm), Ok((pm, pown))) => {
                accepted += 1;
                if om != pm || oown != pown {
                    problems.push(format!(
                        "{name}: ociboot {om:?} {oown:?}\n  tarfile {pm:?} {pown:?}"
                    ));
                }
                if let Err(e) = same_tree(om, gm) {
                    problems.push(format!("{name}: ociboot and GNU tar differ: {e}"));
                }
            }
            (Ok(_), _, _) => problems.push(format!(
                "{name}: ociboot accepts, GNU tar {}, tarfile {}",
                g.as_ref().err().map_or("accepts", |e| e.trim()),
                p.as_ref().err().map_or("accepts", |e| e.as_str())
            )),
            (Err(e), Ok(gm), Ok((pm, _))) if same_tree(pm, gm).is_ok() => {
                let hit = DELIBERATE.iter().find(|(n, _)| name.contains(n));
                if let Some((n, _)) = hit {
                    deliberate.insert(*n);
                } else {
                    problems.push(format!(
                        "{name}: both references accept the same content, ociboot refuses: {e}"
                    ));
                }
            }
            _ => {}
        }
    }
    for (n, _) in DELIBERATE {
        if !deliberate.contains(n) {
            problems.push(format!(
                "{n}: listed as a deliberate difference, but it is not one"
            ));
        }
    }
    eprintln!(
        "{} cases; GNU tar {tg:?}, tarfile {tp:?}, ociboot {to:?}",
        cases.len()
    );
    eprintln!("checked in {:?}", t0.elapsed());
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // The baselines (and more) are read alike by all three: the test compares content.
    assert!(
        accepted >= 20,
        "only {accepted} cases accepted by all three"
    );
    eprintln!("{} cases, {accepted} accepted by all three", cases.len());
}
