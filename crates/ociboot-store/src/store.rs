//! The store: pulling images into it, listing, inspecting, removing, pruning and checking.
//!
//! ```text
//! <sysroot>/ociboot/
//!   lock                        flock: exclusive for writers, shared for readers
//!   store/
//!     objects/ab/cdef…          file objects (content + owner/mode/xattrs), by ObjectId
//!     layers/<blob hex>         layer records: the layer's operations, by compressed digest
//!     images/<manifest hex>/    manifest.json config.json tree image.json
//!     refs/<escaped reference>  JSON: reference -> manifest digest
//!     tmp/                      staging; emptied whenever the exclusive lock is taken
//! ```

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use ociboot_oci::{
    fetch_image, layer_compression, open_source, FetchedImage, ImageReference, LayerInfo,
    RegistryOptions, Sha256Digest,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::failpoint;
use crate::fsutil::{ensure_dir, fsync_dir, remove_any, syncfs, write_atomic};
use crate::import::{import_layer, ProgressReader};
use crate::lock::{self, Lock};
use crate::objects::{ImportStats, ObjectId, Staging};
use crate::record::{self, LAYER_MAGIC};
use crate::tree::{Content, LayerOp, Tree};

/// What a pull reports while it runs; the CLI draws progress bars from it.
pub trait PullProgress {
    /// Someone else holds the store lock; we wait.
    fn waiting_for_lock(&self, _holder: &str) {}
    /// The manifest and config are known.
    fn resolved(&self, _image: &str, _digest: &Sha256Digest, _layers: usize) {}
    /// A layer is already in the store.
    fn layer_cached(&self, _index: usize, _layer: &LayerInfo) {}
    fn layer_start(&self, _index: usize, _layer: &LayerInfo) {}
    /// Compressed bytes of the layer read so far.
    fn layer_progress(&self, _index: usize, _bytes: u64) {}
    fn layer_done(&self, _index: usize, _stats: &ImportStats) {}
}

/// A progress sink that reports nothing.
pub struct NoProgress;
impl PullProgress for NoProgress {}

/// The metadata of a layer record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LayerMeta {
    pub digest: Sha256Digest,
    pub diff_id: Sha256Digest,
    pub size: u64,
    pub media_type: String,
    pub uncompressed_size: u64,
}

/// `image.json`: what the store knows of an image besides manifest, config and tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    pub manifest_digest: Sha256Digest,
    pub config_digest: Sha256Digest,
    pub layers: Vec<LayerMeta>,
    pub files: u64,
    pub unpacked_size: u64,
    pub architecture: String,
    pub version: Option<String>,
    pub created: Option<String>,
    pub pulled_at: String,
}

/// A reference file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefRecord {
    pub reference: ImageReference,
    pub manifest_digest: Sha256Digest,
    pub updated_at: String,
}

/// One row of `image list`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageSummary {
    pub reference: String,
    pub transport: String,
    pub digest: Sha256Digest,
    pub version: Option<String>,
    pub created: Option<String>,
    pub architecture: String,
    /// Sum of the compressed layer sizes.
    pub size: u64,
    /// Sum of the regular files' sizes in the merged tree.
    pub unpacked_size: u64,
}

/// The result of a pull.
#[derive(Debug, Clone)]
pub struct PullOutcome {
    pub reference: ImageReference,
    pub manifest_digest: Sha256Digest,
    pub already_present: bool,
    pub layers_fetched: usize,
    pub layers_cached: usize,
    pub stats: ImportStats,
}

/// What garbage collection removed.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    pub images: u64,
    pub layers: u64,
    pub objects: u64,
    pub bytes: u64,
}

/// A store inside a sysroot. Opening it for writing holds the exclusive lock until dropped.
pub struct Store {
    root: PathBuf,
    _lock: Lock,
    writable: bool,
}

/// `transport:image`, percent-escaped into one file name.
fn ref_file_name(r: &ImageReference) -> String {
    let s = format!("{}:{}", r.transport, r.image);
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Store {
    /// The store directory of a sysroot.
    pub fn path_in(sysroot: &Path) -> PathBuf {
        sysroot.join("ociboot/store")
    }

    /// Open for reading (shared lock). Creates nothing: a sysroot without a store reads as empty.
    pub fn open_read(sysroot: &Path, waiting: &dyn Fn(&str)) -> Result<Store> {
        let base = sysroot.join("ociboot");
        if !base.exists() {
            return Err(Error::NotFound(format!(
                "no ociboot store in {} (nothing has been pulled yet)",
                sysroot.display()
            )));
        }
        let l = lock::acquire(&base.join("lock"), false, waiting)?;
        Ok(Store {
            root: Self::path_in(sysroot),
            _lock: l,
            writable: false,
        })
    }

    /// Open for writing: creates the layout, takes the exclusive lock, clears stale staging.
    pub fn open_write(sysroot: &Path, waiting: &dyn Fn(&str)) -> Result<Store> {
        if !sysroot.is_dir() {
            return Err(Error::NotFound(format!(
                "sysroot {} is not a directory",
                sysroot.display()
            )));
        }
        let base = sysroot.join("ociboot");
        ensure_dir(&base)?;
        let l = lock::acquire(&base.join("lock"), true, waiting)?;
        let root = Self::path_in(sysroot);
        let fresh = !root.join("objects").exists();
        for d in ["objects", "layers", "images", "refs", "tmp"] {
            ensure_dir(&root.join(d))?;
        }
        if fresh || !root.join("objects/ff").exists() {
            for i in 0..256 {
                ensure_dir(&root.join(format!("objects/{i:02x}")))?;
            }
            fsync_dir(&root.join("objects"))?;
        }
        // Anything in tmp/ belongs to a process that died while holding this lock: its content
        // may not even be on disk. Nothing refers to it.
        let tmp = root.join("tmp");
        for e in std::fs::read_dir(&tmp).ctx(|| format!("reading {}", tmp.display()))? {
            let e = e.ctx(|| format!("reading {}", tmp.display()))?;
            remove_any(&e.path())?;
        }
        let store = Store {
            root,
            _lock: l,
            writable: true,
        };
        if store.dirty_marker().exists() {
            // A writer died between writing objects and recording them: some objects may be
            // torn. Only those some layer record refers to were synced; drop the others.
            let removed = store.remove_unrecorded_objects()?;
            tracing::info!(
                "recovered from an interrupted pull: removed {removed} unrecorded objects"
            );
            std::fs::remove_file(store.dirty_marker())
                .ctx(|| "removing the dirty marker".to_string())?;
            fsync_dir(&store.root)?;
        }
        Ok(store)
    }

    fn dirty_marker(&self) -> PathBuf {
        self.root.join("dirty")
    }

    /// Every object some layer record refers to.
    fn recorded_objects(&self, only: Option<&BTreeSet<Sha256Digest>>) -> Result<HashSet<ObjectId>> {
        let layers_dir = self.root.join("layers");
        let mut live = HashSet::new();
        for e in
            std::fs::read_dir(&layers_dir).ctx(|| format!("reading {}", layers_dir.display()))?
        {
            let e = e.ctx(|| format!("reading {}", layers_dir.display()))?;
            let n = e.file_name().to_string_lossy().to_string();
            let Some(d) = Sha256Digest::from_hex(&n) else {
                continue;
            };
            if only.is_some_and(|o| !o.contains(&d)) {
                continue;
            }
            for op in self.read_layer(&d)?.1 {
                if let LayerOp::Put(_, n) = op {
                    if let Content::File { object, .. } = n.content {
                        live.insert(object);
                    }
                }
            }
        }
        Ok(live)
    }

    fn remove_unrecorded_objects(&self) -> Result<u64> {
        let live = self.recorded_objects(None)?;
        let mut removed = 0;
        self.for_each_object(&mut |id, path, _| {
            if !live.contains(&id) {
                std::fs::remove_file(path).ctx(|| format!("removing {}", path.display()))?;
                removed += 1;
            }
            Ok(())
        })?;
        syncfs(&self.root)?;
        Ok(removed)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn objects_dir(&self) -> PathBuf {
        self.root.join("objects")
    }

    /// The path of an object's file.
    pub fn object_path(&self, id: &ObjectId) -> PathBuf {
        self.root.join("objects").join(id.rel_path())
    }

    fn layer_path(&self, d: &Sha256Digest) -> PathBuf {
        self.root.join("layers").join(d.hex())
    }

    fn image_dir(&self, d: &Sha256Digest) -> PathBuf {
        self.root.join("images").join(d.hex())
    }

    fn ensure_writable(&self) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(Error::Usage("store opened read-only".into()))
        }
    }

    /// Read a layer record.
    pub fn read_layer(&self, d: &Sha256Digest) -> Result<(LayerMeta, Vec<LayerOp>)> {
        let p = self.layer_path(d);
        let data = std::fs::read(&p).ctx(|| format!("reading layer record {}", p.display()))?;
        let what = format!("layer record {}", p.display());
        let (header, ops) = record::decode(&data, LAYER_MAGIC, &what)?;
        let meta: LayerMeta = serde_json::from_slice(&header)
            .map_err(|e| Error::Corrupt(format!("{what}: header: {e}")))?;
        Ok((meta, ops))
    }

    /// Pull `r` into the store. Layers already present are not downloaded again. On a refused
    /// image (bad digest, bad tar, …) everything this pull added is removed again.
    pub fn pull(
        &self,
        r: &ImageReference,
        opts: &RegistryOptions,
        progress: &dyn PullProgress,
    ) -> Result<PullOutcome> {
        self.ensure_writable()?;
        let mut src = open_source(r, opts)?;
        let fetched = fetch_image(src.as_mut())?;
        failpoint::hit("pull-manifest-fetched");
        let layers = fetched.layers()?;
        progress.resolved(&r.to_string(), &fetched.manifest_digest, layers.len());
        let name = src.name();

        // Nothing to write when the image is complete here and the ref already names it (an
        // image directory exists only once all its layers do, invariant 1).
        if self.image_dir(&fetched.manifest_digest).exists()
            && self.resolve(r)? == Some(fetched.manifest_digest)
        {
            for (i, l) in layers.iter().enumerate() {
                progress.layer_cached(i, l);
            }
            return Ok(PullOutcome {
                reference: r.clone(),
                manifest_digest: fetched.manifest_digest,
                already_present: true,
                layers_fetched: 0,
                layers_cached: layers.len(),
                stats: Default::default(),
            });
        }
        let mut added: Vec<(PathBuf, Vec<ObjectId>)> = Vec::new();
        if !self.dirty_marker().exists() {
            write_atomic(&self.dirty_marker(), b"objects are being written\n")?;
        }
        let res = self.pull_layers(src.as_mut(), &name, &layers, progress, &mut added);
        let (fetched_n, cached_n, stats) = match res {
            Ok(v) => v,
            Err(e) => {
                self.roll_back(&added);
                return Err(e);
            }
        };
        let already = self.image_dir(&fetched.manifest_digest).exists();
        let t = std::time::Instant::now();
        if !already {
            if let Err(e) = self.write_image(&fetched, &layers) {
                self.roll_back(&added);
                return Err(e);
            }
        }
        tracing::debug!("image record written in {:?}", t.elapsed());
        failpoint::hit("pull-image-committed");
        self.write_ref(r, &fetched.manifest_digest)?;
        std::fs::remove_file(self.dirty_marker())
            .ctx(|| "removing the dirty marker".to_string())?;
        fsync_dir(&self.root)?;
        failpoint::hit("pull-ref-committed");
        Ok(PullOutcome {
            reference: r.clone(),
            manifest_digest: fetched.manifest_digest,
            already_present: already && fetched_n == 0,
            layers_fetched: fetched_n,
            layers_cached: cached_n,
            stats,
        })
    }

    /// Undo what a refused pull added: its layer records, then their new objects, then the
    /// dirty marker (only when all of that worked).
    fn roll_back(&self, added: &[(PathBuf, Vec<ObjectId>)]) {
        let mut ok = true;
        for (rec, objs) in added.iter().rev() {
            ok &= std::fs::remove_file(rec).is_ok();
            for o in objs {
                ok &= std::fs::remove_file(self.object_path(o)).is_ok();
            }
        }
        if ok && syncfs(&self.root).is_ok() {
            let _ = std::fs::remove_file(self.dirty_marker());
        }
    }

    fn pull_layers(
        &self,
        src: &mut dyn ociboot_oci::ImageSource,
        name: &str,
        layers: &[LayerInfo],
        progress: &dyn PullProgress,
        added: &mut Vec<(PathBuf, Vec<ObjectId>)>,
    ) -> Result<(usize, usize, ImportStats)> {
        let mut total = ImportStats::default();
        let (mut fetched_n, mut cached_n) = (0, 0);
        for (i, l) in layers.iter().enumerate() {
            let rec = self.layer_path(&l.digest);
            if rec.exists() {
                let (meta, _) = self.read_layer(&l.digest)?;
                if meta.diff_id != l.diff_id {
                    return Err(Error::Source(ociboot_oci::Error::Invalid(format!(
                        "{name}: layer {} has diff_id {} but the config says {}",
                        l.digest, meta.diff_id, l.diff_id
                    ))));
                }
                cached_n += 1;
                progress.layer_cached(i, l);
                continue;
            }
            let compression = layer_compression(&l.media_type).ok_or_else(|| {
                Error::Source(ociboot_oci::Error::Invalid(format!(
                    "{name}: layer {} has unsupported media type {}",
                    l.digest, l.media_type
                )))
            })?;
            progress.layer_start(i, l);
            let what = format!("{name}: layer {}", l.digest);
            // Verified (digest, size) as it streams, inside import_layer.
            let blob = src.blob_stream(&l.digest, l.size)?;
            let blob = ProgressReader::new(blob, |n| progress.layer_progress(i, n));
            let mut staging = Staging::new(&self.root.join("tmp"), &self.objects_dir())?;
            let t0 = std::time::Instant::now();
            let imported =
                match import_layer(blob, l.digest, l.size, compression, &mut staging, &what) {
                    Ok(x) => x,
                    Err(e) => {
                        staging.abort();
                        return Err(e);
                    }
                };
            let diff_id = imported.diff_id.unwrap_or(l.digest);
            if diff_id != l.diff_id {
                staging.abort();
                return Err(Error::Source(ociboot_oci::Error::Invalid(format!(
                    "{what}: uncompressed digest {diff_id} does not match the config's diff_id {}",
                    l.diff_id
                ))));
            }
            let new_objects: Vec<ObjectId> = staging.new_ids();
            let t1 = std::time::Instant::now();
            failpoint::hit("pull-layer-staged");
            let stats = match staging.commit() {
                Ok(s) => s,
                Err(e) => {
                    for o in &new_objects {
                        let _ = std::fs::remove_file(self.object_path(o));
                    }
                    return Err(e);
                }
            };
            tracing::debug!(
                "layer {}: imported in {:?}, committed in {:?}",
                l.digest,
                t1 - t0,
                t1.elapsed()
            );
            added.push((rec.clone(), new_objects));
            failpoint::hit("pull-layer-objects-committed");
            let meta = LayerMeta {
                digest: l.digest,
                diff_id: l.diff_id,
                size: l.size,
                media_type: l.media_type.clone(),
                uncompressed_size: imported.uncompressed_size,
            };
            let header = serde_json::to_vec(&meta).map_err(|e| Error::Corrupt(e.to_string()))?;
            write_atomic(&rec, &record::encode_layer(&imported.ops, &header))?;
            failpoint::hit("pull-layer-committed");
            progress.layer_done(i, &stats);
            fetched_n += 1;
            total.files += stats.files;
            total.new_objects += stats.new_objects;
            total.new_bytes += stats.new_bytes;
            total.reused_objects += stats.reused_objects;
        }
        Ok((fetched_n, cached_n, total))
    }

    /// Merge the layers into a tree.
    pub fn merge_layers(&self, layers: &[Sha256Digest]) -> Result<Tree> {
        let mut tree = Tree::new();
        for d in layers {
            let (_, ops) = self.read_layer(d)?;
            tree.apply_layer(&ops).map_err(|e| match e {
                Error::Layer(m) => Error::Layer(format!("layer {d}: {m}")),
                o => o,
            })?;
        }
        Ok(tree)
    }

    fn write_image(&self, f: &FetchedImage, layers: &[LayerInfo]) -> Result<()> {
        let digests: Vec<Sha256Digest> = layers.iter().map(|l| l.digest).collect();
        let tree = self.merge_layers(&digests)?;
        let (files, unpacked_size) = tree.stats();
        let mut metas = Vec::new();
        for l in layers {
            metas.push(self.read_layer(&l.digest)?.0);
        }
        let rec = ImageRecord {
            manifest_digest: f.manifest_digest,
            config_digest: f.config_digest,
            layers: metas,
            files,
            unpacked_size,
            architecture: f.config.architecture().to_string(),
            version: ociboot_oci::manifest::version_label(&f.config),
            created: ociboot_oci::manifest::created_timestamp(&f.config),
            pulled_at: crate::time::now(),
        };
        let tmp = self
            .root
            .join("tmp")
            .join(format!("image-{}", f.manifest_digest.hex()));
        remove_any(&tmp)?;
        ensure_dir(&tmp)?;
        let files: [(&str, Vec<u8>); 4] = [
            ("manifest.json", f.manifest_bytes.clone()),
            ("config.json", f.config_bytes.clone()),
            ("tree", record::encode_tree(&tree)),
            (
                "image.json",
                serde_json::to_vec_pretty(&rec).map_err(|e| Error::Corrupt(e.to_string()))?,
            ),
        ];
        for (n, data) in &files {
            let p = tmp.join(n);
            let mut fh = std::fs::File::create(&p).ctx(|| format!("creating {}", p.display()))?;
            std::io::Write::write_all(&mut fh, data).ctx(|| format!("writing {}", p.display()))?;
            fh.sync_all().ctx(|| format!("fsync {}", p.display()))?;
        }
        fsync_dir(&tmp)?;
        failpoint::hit("pull-image-written");
        let dest = self.image_dir(&f.manifest_digest);
        std::fs::rename(&tmp, &dest)
            .ctx(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
        fsync_dir(&self.root.join("images"))
    }

    fn write_ref(&self, r: &ImageReference, d: &Sha256Digest) -> Result<()> {
        let rec = RefRecord {
            reference: r.clone(),
            manifest_digest: *d,
            updated_at: crate::time::now(),
        };
        let data = serde_json::to_vec_pretty(&rec).map_err(|e| Error::Corrupt(e.to_string()))?;
        write_atomic(&self.root.join("refs").join(ref_file_name(r)), &data)
    }

    /// All references, sorted.
    pub fn refs(&self) -> Result<Vec<RefRecord>> {
        let dir = self.root.join("refs");
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::path(&dir, e)),
        };
        for e in rd {
            let e = e.ctx(|| format!("reading {}", dir.display()))?;
            let name = e.file_name();
            if name.to_string_lossy().starts_with(".tmp-") {
                continue;
            }
            let p = e.path();
            let data = std::fs::read(&p).ctx(|| format!("reading {}", p.display()))?;
            let r: RefRecord = serde_json::from_slice(&data)
                .map_err(|err| Error::Corrupt(format!("{}: {err}", p.display())))?;
            out.push(r);
        }
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    /// The manifest digest a reference points to, if it was pulled.
    pub fn resolve(&self, r: &ImageReference) -> Result<Option<Sha256Digest>> {
        let p = self.root.join("refs").join(ref_file_name(r));
        match std::fs::read(&p) {
            Ok(data) => {
                let rec: RefRecord = serde_json::from_slice(&data)
                    .map_err(|e| Error::Corrupt(format!("{}: {e}", p.display())))?;
                Ok(Some(rec.manifest_digest))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::path(p, e)),
        }
    }

    /// Find an image by reference, or by manifest digest (`sha256:…`, or a unique hex prefix).
    pub fn find(&self, what: &str) -> Result<Sha256Digest> {
        if let Ok(r) = what.parse::<ImageReference>() {
            if let Some(d) = self.resolve(&r)? {
                return Ok(d);
            }
        }
        let hex = what.strip_prefix("sha256:").unwrap_or(what);
        if hex.len() >= 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut found = Vec::new();
            let dir = self.root.join("images");
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().to_string();
                    if n.starts_with(hex) {
                        if let Some(d) = Sha256Digest::from_hex(&n) {
                            found.push(d);
                        }
                    }
                }
            }
            match found.as_slice() {
                [d] => return Ok(*d),
                [] => {}
                _ => {
                    return Err(Error::Usage(format!(
                        "{what} matches several images; give more digits"
                    )))
                }
            }
        }
        Err(Error::NotFound(format!(
            "image {what} is not in the store (pull it first)"
        )))
    }

    pub fn image_record(&self, d: &Sha256Digest) -> Result<ImageRecord> {
        let p = self.image_dir(d).join("image.json");
        let data = std::fs::read(&p).ctx(|| format!("reading {}", p.display()))?;
        serde_json::from_slice(&data).map_err(|e| Error::Corrupt(format!("{}: {e}", p.display())))
    }

    /// The raw manifest and config of an image.
    pub fn manifest_and_config(&self, d: &Sha256Digest) -> Result<(Vec<u8>, Vec<u8>)> {
        let dir = self.image_dir(d);
        let m = std::fs::read(dir.join("manifest.json"))
            .ctx(|| format!("reading {}/manifest.json", dir.display()))?;
        let c = std::fs::read(dir.join("config.json"))
            .ctx(|| format!("reading {}/config.json", dir.display()))?;
        Ok((m, c))
    }

    /// The merged tree of an image.
    pub fn tree(&self, d: &Sha256Digest) -> Result<Tree> {
        let p = self.image_dir(d).join("tree");
        let data = std::fs::read(&p).ctx(|| format!("reading {}", p.display()))?;
        record::decode_tree(&data, &p.display().to_string())
    }

    /// Summaries of every referenced image.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let mut out = Vec::new();
        for r in self.refs()? {
            let rec = self.image_record(&r.manifest_digest)?;
            out.push(ImageSummary {
                reference: r.reference.to_string(),
                transport: r.reference.transport.to_string(),
                digest: r.manifest_digest,
                version: rec.version.clone(),
                created: rec.created.clone(),
                architecture: rec.architecture.clone(),
                size: rec.layers.iter().map(|l| l.size).sum(),
                unpacked_size: rec.unpacked_size,
            });
        }
        Ok(out)
    }

    /// Remove references (by reference or digest: every reference to that image).
    pub fn remove(&self, what: &str) -> Result<Vec<ImageReference>> {
        self.ensure_writable()?;
        // A stored reference removes just itself; a digest removes every reference to it.
        if let Ok(r) = what.parse::<ImageReference>() {
            if self.resolve(&r)?.is_some() {
                self.remove_ref(&r)?;
                return Ok(vec![r]);
            }
        }
        let d = self.find(what)?;
        let mut removed = Vec::new();
        for r in self.refs()? {
            if r.manifest_digest == d {
                self.remove_ref(&r.reference)?;
                removed.push(r.reference);
            }
        }
        Ok(removed)
    }

    /// Remove one reference (the image stays until [`Store::prune`]).
    pub fn remove_ref(&self, r: &ImageReference) -> Result<()> {
        self.ensure_writable()?;
        let p = self.root.join("refs").join(ref_file_name(r));
        std::fs::remove_file(&p).ctx(|| format!("removing {}", p.display()))?;
        fsync_dir(&self.root.join("refs"))
    }

    /// Drop images no reference (and no `keep` root) points to, layers no image uses and
    /// objects no layer uses. Each removal only ever removes unreferenced things, in the
    /// order images → layers → objects, so a crash in between leaves a consistent store.
    pub fn prune(&self, keep: &[Sha256Digest]) -> Result<PruneReport> {
        self.ensure_writable()?;
        let mut report = PruneReport::default();
        let mut live_images: BTreeSet<Sha256Digest> = keep.iter().copied().collect();
        for r in self.refs()? {
            live_images.insert(r.manifest_digest);
        }
        let images_dir = self.root.join("images");
        let mut live_layers: BTreeSet<Sha256Digest> = BTreeSet::new();
        for e in
            std::fs::read_dir(&images_dir).ctx(|| format!("reading {}", images_dir.display()))?
        {
            let e = e.ctx(|| format!("reading {}", images_dir.display()))?;
            let n = e.file_name().to_string_lossy().to_string();
            match Sha256Digest::from_hex(&n) {
                Some(d) if live_images.contains(&d) => {
                    for l in self.image_record(&d)?.layers {
                        live_layers.insert(l.digest);
                    }
                }
                _ => {
                    report.bytes += crate::fsutil::disk_usage(&e.path());
                    remove_any(&e.path())?;
                    report.images += 1;
                }
            }
        }
        fsync_dir(&images_dir)?;
        let layers_dir = self.root.join("layers");
        for e in
            std::fs::read_dir(&layers_dir).ctx(|| format!("reading {}", layers_dir.display()))?
        {
            let e = e.ctx(|| format!("reading {}", layers_dir.display()))?;
            let n = e.file_name().to_string_lossy().to_string();
            if !Sha256Digest::from_hex(&n).is_some_and(|d| live_layers.contains(&d)) {
                report.bytes += crate::fsutil::disk_usage(&e.path());
                remove_any(&e.path())?;
                report.layers += 1;
            }
        }
        fsync_dir(&layers_dir)?;
        let live_objects = self.recorded_objects(None)?;
        self.for_each_object(&mut |id, path, meta| {
            if !live_objects.contains(&id) {
                std::fs::remove_file(path).ctx(|| format!("removing {}", path.display()))?;
                report.objects += 1;
                // Count the space really freed: the last link of the file.
                if std::os::unix::fs::MetadataExt::nlink(meta) <= 1 {
                    report.bytes += std::os::unix::fs::MetadataExt::blocks(meta) * 512;
                }
            }
            Ok(())
        })?;
        syncfs(&self.root)?;
        Ok(report)
    }

    fn for_each_object(
        &self,
        f: &mut dyn FnMut(ObjectId, &Path, &std::fs::Metadata) -> Result<()>,
    ) -> Result<()> {
        let objects = self.objects_dir();
        for sub in std::fs::read_dir(&objects).ctx(|| format!("reading {}", objects.display()))? {
            let sub = sub.ctx(|| format!("reading {}", objects.display()))?;
            let subname = sub.file_name().to_string_lossy().to_string();
            for e in
                std::fs::read_dir(sub.path()).ctx(|| format!("reading {}", sub.path().display()))?
            {
                let e = e.ctx(|| format!("reading {}", sub.path().display()))?;
                let p = e.path();
                let name = e.file_name().to_string_lossy().to_string();
                let meta = std::fs::symlink_metadata(&p).ctx(|| format!("stat {}", p.display()))?;
                match ObjectId::from_rel_path(&subname, &name) {
                    Some(id) => f(id, &p, &meta)?,
                    None => return Err(Error::Corrupt(format!("unexpected file {}", p.display()))),
                }
            }
        }
        Ok(())
    }

    /// Check the store: every reference has its image, every image its tree and layers, every
    /// layer its objects; with `contents`, re-hash every object and check its metadata.
    pub fn fsck(&self, contents: bool) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let mut needed: BTreeMap<ObjectId, String> = BTreeMap::new();
        let mut images = BTreeSet::new();
        for r in self.refs()? {
            if !self.image_dir(&r.manifest_digest).is_dir() {
                problems.push(format!(
                    "reference {} points to missing image {}",
                    r.reference, r.manifest_digest
                ));
            } else {
                images.insert(r.manifest_digest);
            }
        }
        for d in &images {
            let rec = match self.image_record(d) {
                Ok(r) => r,
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            };
            if let Err(e) = self.tree(d) {
                problems.push(e.to_string());
            }
            for l in &rec.layers {
                match self.read_layer(&l.digest) {
                    Ok((_, ops)) => {
                        for op in ops {
                            if let LayerOp::Put(p, n) = op {
                                if let Content::File { object, .. } = n.content {
                                    needed.entry(object).or_insert_with(|| {
                                        format!("{} in layer {}", crate::tree::show(&p), l.digest)
                                    });
                                }
                            }
                        }
                    }
                    Err(e) => problems.push(format!("image {d}: {e}")),
                }
            }
        }
        for (id, what) in &needed {
            let p = self.object_path(id);
            if std::fs::symlink_metadata(&p).is_err() {
                problems.push(format!("object {} ({what}) is missing", id.hex()));
            }
        }
        if contents {
            // Objects no layer record refers to may be torn leftovers of an interrupted pull
            // (the next writer removes them): only the recorded ones must be intact.
            for id in needed.keys() {
                let path = self.object_path(id);
                if !path.exists() {
                    continue;
                }
                match crate::objects::verify_object(&path) {
                    Ok(actual) if actual == *id => {}
                    Ok(actual) => problems.push(format!(
                        "object {} has the content and metadata of {}",
                        id.hex(),
                        actual.hex()
                    )),
                    Err(e) => problems.push(e.to_string()),
                }
            }
        }
        Ok(problems)
    }
}
