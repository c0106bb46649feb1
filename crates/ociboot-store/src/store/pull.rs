//! Pulling an image into the store: manifest and config from an [`ImageSource`], each missing
//! layer imported into objects and a layer record, then the image directory (merged tree,
//! `image.json`), then the reference.
//!
//! The order is the crash invariant: objects are synced before the layer record naming them is
//! written, every layer record before the image directory, the image before the reference, and
//! the `dirty` marker stays until all of that is durable. A pull must never make a layer, an
//! image or a reference visible before what it refers to is on disk, and never remove anything
//! it did not add itself (a refused image is rolled back to the store as it was).

use std::path::PathBuf;

use ociboot_oci::{
    fetch_image, layer_compression, open_source, FetchedImage, ImageReference, ImageSource,
    LayerInfo, RegistryOptions, Sha256Digest,
};

use super::{ImageRecord, LayerMeta, RefRecord, Store};
use crate::error::{Error, IoContext, Result};
use crate::failpoint;
use crate::import::{import_layer, ProgressReader};
use crate::limits::Limits;
use crate::objects::{ImportStats, ObjectId, Staging};
use crate::record;
use crate::space::{self, Margin, SpaceGuard};
use crate::tree::Tree;
use ociboot_fs::{ensure_dir, fsync_dir, remove_any, syncfs, write_atomic};

/// What a pull reports while it runs; the CLI draws progress bars from it.
pub trait PullProgress {
    /// Someone else holds a lock we need; we wait. `what` says which lock and who holds it
    /// ("the store lock, held by pid N (upgrade)").
    fn waiting_for_lock(&self, _what: &str) {}
    /// The manifest and config are known.
    fn resolved(&self, _image: &str, _digest: &Sha256Digest, _layers: usize) {}
    /// A layer is already in the store.
    fn layer_cached(&self, _index: usize, _layer: &LayerInfo) {}
    /// A layer is about to be downloaded and imported.
    fn layer_start(&self, _index: usize, _layer: &LayerInfo) {}
    /// Compressed bytes of the layer read so far.
    fn layer_progress(&self, _index: usize, _bytes: u64) {}
    /// A layer's objects are durable and its record is written; `stats` counts its files.
    fn layer_done(&self, _index: usize, _stats: &ImportStats) {}
}

/// A progress sink that reports nothing.
pub struct NoProgress;
impl PullProgress for NoProgress {}

/// The result of a pull.
#[derive(Debug, Clone)]
pub struct PullOutcome {
    /// The reference that was pulled.
    pub reference: ImageReference,
    /// The digest of the image's manifest, which names the image in the store.
    pub manifest_digest: Sha256Digest,
    /// The image was in the store already and no layer had to be downloaded (the reference
    /// may still have been written).
    pub already_present: bool,
    /// Layers downloaded and imported by this pull.
    pub layers_fetched: usize,
    /// Layers whose record the store already had.
    pub layers_cached: usize,
    /// Counters of the fetched layers' files, summed (all zero when none was fetched).
    pub stats: ImportStats,
}

impl Store {
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
        // Disk space: the layers still to fetch take at least their compressed size.
        let margin = Margin::from_env()?;
        let need: u64 = layers
            .iter()
            .filter(|l| !self.layer_path(&l.digest).exists())
            .map(|l| l.size)
            .sum();
        space::check_before(&self.root, margin, need, &name)?;
        let mut added: Vec<(PathBuf, Vec<ObjectId>)> = Vec::new();
        if !self.dirty_marker().exists() {
            write_atomic(&self.dirty_marker(), b"objects are being written\n")?;
        }
        let res = self.pull_layers(src.as_mut(), &name, &layers, margin, progress, &mut added);
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
                // A merge error names the layer and the path; say which image it is.
                return Err(match e {
                    Error::Layer(m) => Error::Layer(format!("{name}: {m}")),
                    Error::Limit(m) => Error::Limit(format!("{name}: {m}")),
                    o => o,
                });
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
        src: &mut dyn ImageSource,
        name: &str,
        layers: &[LayerInfo],
        margin: Margin,
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
            staging.watch_space(SpaceGuard::new(&self.root, margin, &what)?);
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
            let header = serde_json::to_vec(&meta).map_err(Error::serialize("layer header"))?;
            let what = format!("layer record {}", rec.display());
            write_atomic(&rec, &record::encode_layer(&imported.ops, &header, &what)?)?;
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

    /// Merge the layers into a tree, within the store's [`Limits`].
    pub fn merge_layers(&self, layers: &[Sha256Digest]) -> Result<Tree> {
        Ok(self.merge(layers)?.0)
    }

    /// Merge the layers into a tree; also returns their records' headers. Each record is read
    /// once, and its operations are freed as they are applied.
    fn merge(&self, layers: &[Sha256Digest]) -> Result<(Tree, Vec<LayerMeta>)> {
        let mut tree = Tree::new();
        let mut size = tree.size(Limits::DEFAULT);
        let mut metas = Vec::new();
        for d in layers {
            let (meta, ops) = self.read_layer(d)?;
            metas.push(meta);
            tree.apply_layer_sized(ops, &mut size)
                .map_err(|e| match e {
                    Error::Layer(m) => Error::Layer(format!("layer {d}: {m}")),
                    Error::Limit(m) => Error::Limit(format!("layer {d}: {m}")),
                    o => o,
                })?;
        }
        Ok((tree, metas))
    }

    fn write_image(&self, f: &FetchedImage, layers: &[LayerInfo]) -> Result<()> {
        let digests: Vec<Sha256Digest> = layers.iter().map(|l| l.digest).collect();
        let (tree, metas) = self.merge(&digests)?;
        let (files, unpacked_size) = tree.stats();
        let rec = ImageRecord {
            manifest_digest: f.manifest_digest,
            config_digest: f.config_digest,
            layers: metas,
            files,
            unpacked_size,
            architecture: f.config.architecture().to_string(),
            version: ociboot_oci::manifest::version_label(&f.config),
            created: ociboot_oci::manifest::created_timestamp(&f.config),
            pulled_at: ociboot_fs::time::now(),
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
            (
                "tree",
                record::encode_tree(&tree, &tmp.join("tree").display().to_string())?,
            ),
            (
                "image.json",
                serde_json::to_vec_pretty(&rec).map_err(Error::serialize("image record"))?,
            ),
        ];
        for (n, data) in &files {
            let p = tmp.join(n);
            let mut fh = std::fs::File::create(&p).at("creating", &p)?;
            std::io::Write::write_all(&mut fh, data).at("writing", &p)?;
            fh.sync_all().at("fsync", &p)?;
        }
        fsync_dir(&tmp)?;
        failpoint::hit("pull-image-written");
        let dest = self.image_dir(&f.manifest_digest);
        std::fs::rename(&tmp, &dest)
            .ctx(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
        Ok(fsync_dir(&self.root.join("images"))?)
    }

    fn write_ref(&self, r: &ImageReference, d: &Sha256Digest) -> Result<()> {
        let rec = RefRecord {
            reference: r.clone(),
            manifest_digest: *d,
            updated_at: ociboot_fs::time::now(),
        };
        let data = serde_json::to_vec_pretty(&rec).map_err(Error::serialize("reference record"))?;
        write_atomic(&self.ref_path(r), &data)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{
        image, image_with_diff_ids, object_count, options, pull, sha256, store, tar,
    };
    use super::*;

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn layers_already_stored_are_not_imported_again() {
        let dir = tempfile::tempdir().unwrap();
        let base = tar(&[("usr/lib/os-release", b"ID=test\n")]);
        let v1 = image(dir.path(), "v1", std::slice::from_ref(&base));
        let v2 = image(dir.path(), "v2", &[base, tar(&[("etc/motd", b"v2\n")])]);
        let store = store(dir.path());

        let first = pull(&store, &v1);
        assert!(!first.already_present);
        assert_eq!((first.layers_fetched, first.layers_cached), (1, 0));
        assert_eq!((first.stats.files, first.stats.new_objects), (1, 1));

        let again = pull(&store, &v1);
        assert!(again.already_present);
        assert_eq!(again.manifest_digest, first.manifest_digest);
        assert_eq!((again.layers_fetched, again.layers_cached), (0, 1));

        let second = pull(&store, &v2);
        assert_eq!((second.layers_fetched, second.layers_cached), (1, 1));
        assert_eq!(second.stats.new_objects, 1);
        assert!(!store.dirty_marker().exists());
        assert_eq!(store.refs().unwrap().len(), 2);
        let tree = store.tree(&second.manifest_digest).unwrap();
        // Nodes (root and implicit directories included) and file bytes.
        assert_eq!(tree.stats(), (6, 8 + 3));
    }

    #[test]
    fn a_refused_image_leaves_the_store_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let base = tar(&[("usr/lib/os-release", b"ID=test\n")]);
        let good = image(dir.path(), "good", std::slice::from_ref(&base));
        let store = store(dir.path());
        pull(&store, &good);
        let before: Vec<Vec<String>> = ["layers", "images", "refs", "tmp"]
            .iter()
            .map(|d| names(&store.root().join(d)))
            .collect();
        let objects_before = object_count(&store);

        // A cached layer, a new good one (committed: objects and record), then one whose
        // diff_id in the config is wrong, refused after its objects were written.
        let good_new = tar(&[("usr/bin/new", b"new content"), ("etc/new", b"more")]);
        let wrong = tar(&[("usr/bin/other", b"other content")]);
        let bad = image_with_diff_ids(
            dir.path(),
            "bad",
            &[base.clone(), good_new.clone(), wrong],
            &[sha256(&base), sha256(&good_new), sha256(b"something else")],
        );
        let err = store.pull(&bad, &options(), &NoProgress).unwrap_err();
        assert!(
            err.to_string()
                .contains("does not match the config's diff_id"),
            "{err}"
        );

        let after: Vec<Vec<String>> = ["layers", "images", "refs", "tmp"]
            .iter()
            .map(|d| names(&store.root().join(d)))
            .collect();
        assert_eq!(after, before);
        let objects_after = object_count(&store);
        assert_eq!(objects_after, objects_before);
        assert_eq!(store.resolve(&bad).unwrap(), None);
        assert!(!store.dirty_marker().exists());
        assert_eq!(store.fsck(true).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn the_image_record_describes_what_was_pulled() {
        let dir = tempfile::tempdir().unwrap();
        let layer = tar(&[("a", b"12345"), ("b/c", b"123")]);
        let r = image(dir.path(), "7.1", std::slice::from_ref(&layer));
        let store = store(dir.path());
        let d = pull(&store, &r).manifest_digest;
        let rec = store.image_record(&d).unwrap();
        assert_eq!(rec.manifest_digest, d);
        assert_eq!(rec.version.as_deref(), Some("7.1"));
        assert_eq!(rec.architecture, "amd64");
        // `files` counts every node: /, a, b, b/c.
        assert_eq!((rec.files, rec.unpacked_size), (4, 8));
        assert_eq!(rec.layers.len(), 1);
        assert_eq!(rec.layers[0].size, layer.len() as u64);
        assert_eq!(rec.layers[0].diff_id.to_string(), sha256(&layer));
        assert_eq!(rec.layers[0].uncompressed_size, layer.len() as u64);
        let (manifest, config) = store.manifest_and_config(&d).unwrap();
        assert_eq!(sha256(&manifest), d.to_string());
        assert_eq!(sha256(&config), rec.config_digest.to_string());
    }
}
