//! `docker import`: a root filesystem tarball (plain, gzip or zstd; from a file or a
//! stream) becomes a one-layer image, with Dockerfile-style changes applied to its
//! config.
//!
//! The tarball is stored as it came (so gzip input stays a gzip layer), then unpacked,
//! which yields its diff id; the config, an OCI manifest and the image record follow,
//! the record last.

use std::io::{BufRead, BufReader, Read};

use crate::images;
use crate::metadata::LayerRecord;
use crate::store::{Image, Store, StoreError};
use crate::unpack::{sniff, Compression};

/// Errors specific to import.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The stream could not be read.
    #[error("reading the import stream: {0}")]
    Read(#[source] std::io::Error),
}

/// What `import` records.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Name for the image (None = untagged).
    pub reference: Option<String>,
    /// `ENV`, `CMD`, `ENTRYPOINT`, `WORKDIR`, `USER`, `EXPOSE`, `LABEL`, ...
    pub changes: Vec<String>,
    /// History comment.
    pub message: String,
}

impl Store {
    /// Import a root filesystem tarball as a one-layer image.
    pub fn import(&self, reader: impl Read, opts: &ImportOptions) -> Result<Image, StoreError> {
        let names = match &opts.reference {
            Some(r) => vec![images::normalize(r)?],
            None => Vec::new(),
        };
        let lease = self.lease()?;
        let mut buf = BufReader::with_capacity(256 * 1024, reader);
        let head = buf
            .fill_buf()
            .map_err(|e| StoreError::Import(ImportError::Read(e)))?;
        let media_type = match sniff(head) {
            Compression::Gzip => images::MT_OCI_LAYER_GZIP,
            Compression::Zstd => images::MT_OCI_LAYER_ZSTD,
            Compression::None => images::MT_OCI_LAYER,
        };
        let (digest, size) = crate::store::ingest_stream(self, &lease, &mut buf)?;
        let (diff_id, _, _) = self.unpack_layer(&lease, &digest, None, None)?;
        let mut config = images::new_import_config(&diff_id, &opts.message);
        images::apply_changes(&mut config, &opts.changes)?;
        let config_bytes = serde_json::to_vec(&config).map_err(|e| images::ImageError::Config {
            digest: String::new(),
            why: e.to_string(),
        })?;
        let layers = vec![LayerRecord {
            digest,
            diff_id,
            size,
            media_type: media_type.to_string(),
        }];
        self.finish_new_image(&lease, &config_bytes, &layers, &names)
    }
}
