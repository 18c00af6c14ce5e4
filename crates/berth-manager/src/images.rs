//! The image model: references, manifests and indexes (OCI and Docker schema 2),
//! platform selection, chain ids, image configs and Dockerfile-style changes.
//!
//! Manifests and configs are kept as the exact bytes they came as (their digest is
//! their identity); `oci-spec` types are used to read them, and configs are edited as
//! JSON values so that fields Docker adds beyond the OCI spec survive a commit.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use oci_spec::distribution::Reference;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use crate::content::Digest;

pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MT_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MT_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const MT_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const MT_DOCKER_LAYER_FOREIGN: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Every manifest media type a pull accepts.
pub const MANIFEST_TYPES: &[&str] = &[
    MT_OCI_MANIFEST,
    MT_OCI_INDEX,
    MT_DOCKER_MANIFEST,
    MT_DOCKER_LIST,
];

/// Errors of the image model.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A reference that does not parse.
    #[error("invalid reference {reference:?}: {source}")]
    Reference {
        reference: String,
        #[source]
        source: oci_spec::distribution::ParseError,
    },
    /// A manifest or index that does not parse.
    #[error("invalid manifest {digest}: {why}")]
    Manifest { digest: String, why: String },
    /// A config that does not parse.
    #[error("invalid image config {digest}: {why}")]
    Config { digest: String, why: String },
    /// A media type this store does not handle.
    #[error("unsupported media type {0:?}")]
    MediaType(String),
    /// No manifest in an index matches the wanted platform.
    #[error("no manifest for platform {platform} in index {digest}")]
    NoPlatform { platform: String, digest: String },
    /// A platform string that is not `os/arch[/variant]`.
    #[error("invalid platform {0:?}: expected os/arch[/variant]")]
    Platform(String),
    /// A `--change` line that is not understood.
    #[error("invalid change {line:?}: {why}")]
    Change { line: String, why: String },
}

/// Normalize a reference the way Docker does: `busybox` →
/// `docker.io/library/busybox:latest`.
pub fn normalize(reference: &str) -> Result<String, ImageError> {
    Ok(parse_reference(reference)?.whole())
}

/// Parse a reference (with Docker Hub defaults).
pub fn parse_reference(reference: &str) -> Result<Reference, ImageError> {
    reference
        .parse::<Reference>()
        .map_err(|source| ImageError::Reference {
            reference: reference.to_string(),
            source,
        })
}

/// The repository part of a normalized name (`docker.io/library/busybox`).
pub fn repository_of(reference: &Reference) -> String {
    format!("{}/{}", reference.registry(), reference.repository())
}

/// The short form Docker shows: `docker.io/library/busybox:latest` → `busybox:latest`,
/// `docker.io/x/y:t` → `x/y:t`; other registries are kept.
pub fn familiar(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("docker.io/library/") {
        rest.to_string()
    } else if let Some(rest) = name.strip_prefix("docker.io/") {
        rest.to_string()
    } else {
        name.to_string()
    }
}

/// Progress of one blob during pull, push or load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerProgress {
    pub digest: String,
    pub status: ProgressStatus,
    /// Bytes done.
    pub current: u64,
    /// Bytes in all (0 when unknown).
    pub total: u64,
}

/// What is happening to a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressStatus {
    Waiting,
    Downloading,
    Verifying,
    Extracting,
    Done,
    Exists,
    Pushing,
    Pushed,
    Loading,
}

impl ProgressStatus {
    /// The word the manager API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ProgressStatus::Waiting => "waiting",
            ProgressStatus::Downloading => "downloading",
            ProgressStatus::Verifying => "verifying",
            ProgressStatus::Extracting => "extracting",
            ProgressStatus::Done => "done",
            ProgressStatus::Exists => "exists",
            ProgressStatus::Pushing => "pushing",
            ProgressStatus::Pushed => "pushed",
            ProgressStatus::Loading => "loading",
        }
    }
}

/// A progress callback; called from any thread.
pub type ProgressFn = std::sync::Arc<dyn Fn(LayerProgress) + Send + Sync>;

/// A manifest as parsed.
#[derive(Debug, Clone)]
pub enum Manifest {
    Image(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

/// Parse manifest bytes, telling an index from an image manifest by its media type
/// (or, when absent, by its fields).
pub fn parse_manifest(digest: &str, bytes: &[u8]) -> Result<Manifest, ImageError> {
    let bad = |why: String| ImageError::Manifest {
        digest: digest.to_string(),
        why,
    };
    let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    let mt = v.get("mediaType").and_then(Value::as_str).unwrap_or("");
    let is_index = mt == MT_OCI_INDEX
        || mt == MT_DOCKER_LIST
        || (mt.is_empty() && v.get("manifests").is_some());
    if is_index {
        serde_json::from_value::<ImageIndex>(v)
            .map(|i| Manifest::Index(Box::new(i)))
            .map_err(|e| bad(e.to_string()))
    } else if mt.is_empty() || mt == MT_OCI_MANIFEST || mt == MT_DOCKER_MANIFEST {
        if v.get("schemaVersion").and_then(Value::as_u64) == Some(1) {
            return Err(ImageError::MediaType(
                "application/vnd.docker.distribution.manifest.v1+json (schema 1)".to_string(),
            ));
        }
        serde_json::from_value::<ImageManifest>(v)
            .map(|m| Manifest::Image(Box::new(m)))
            .map_err(|e| bad(e.to_string()))
    } else {
        Err(ImageError::MediaType(mt.to_string()))
    }
}

/// The media type a manifest declares (or the one implied by its shape).
pub fn manifest_media_type(bytes: &[u8]) -> String {
    let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    match v.get("mediaType").and_then(Value::as_str) {
        Some(mt) => mt.to_string(),
        None if v.get("manifests").is_some() => MT_OCI_INDEX.to_string(),
        None => MT_OCI_MANIFEST.to_string(),
    }
}

/// Whether a layer media type is one this store can unpack.
pub fn is_layer_type(mt: &str) -> bool {
    matches!(
        mt,
        MT_OCI_LAYER
            | MT_OCI_LAYER_GZIP
            | MT_OCI_LAYER_ZSTD
            | MT_DOCKER_LAYER
            | MT_DOCKER_LAYER_GZIP
            | MT_DOCKER_LAYER_FOREIGN
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
    )
}

/// Convert an oci-spec digest into ours.
pub fn digest_of(d: &oci_spec::image::Digest) -> Result<Digest, ImageError> {
    d.as_ref()
        .parse::<Digest>()
        .map_err(|e| ImageError::MediaType(format!("digest {d}: {e}")))
}

/// `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Default for PlatformSpec {
    /// linux and the host's architecture in Go's spelling.
    fn default() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        PlatformSpec {
            os: "linux".to_string(),
            arch: arch.to_string(),
            variant: None,
        }
    }
}

impl FromStr for PlatformSpec {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Ok(PlatformSpec::default());
        }
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(PlatformSpec {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() => Ok(PlatformSpec {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(ImageError::Platform(s.to_string())),
        }
    }
}

impl fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Pick the manifest for `platform` from an index (variant must match when asked for).
pub fn select_manifest<'a>(
    index: &'a ImageIndex,
    platform: &PlatformSpec,
) -> Option<&'a Descriptor> {
    index.manifests().iter().find(|d| {
        let Some(p) = d.platform() else { return false };
        p.os().to_string() == platform.os
            && p.architecture().to_string() == platform.arch
            && match &platform.variant {
                Some(v) => p.variant().as_deref() == Some(v.as_str()),
                None => true,
            }
    })
}

/// Chain ids of a layer stack: chain(0) = diff(0), chain(n) = sha256(chain(n-1) + " " + diff(n)).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = chain_id(out.last(), d);
        out.push(next);
    }
    out
}

/// The chain id of a layer with diff id `diff` on the layer whose chain id is
/// `parent` (None for the bottom one).
pub fn chain_id(parent: Option<&Digest>, diff: &Digest) -> Digest {
    match parent {
        None => diff.clone(),
        Some(prev) => {
            let mut h = Sha256::new();
            h.update(format!("{prev} {diff}").as_bytes());
            Digest::from_hasher(h)
        }
    }
}

/// The `rootfs.diff_ids` of a config.
pub fn config_diff_ids(config_digest: &Digest, config: &Value) -> Result<Vec<Digest>, ImageError> {
    let bad = |why: &str| ImageError::Config {
        digest: config_digest.to_string(),
        why: why.to_string(),
    };
    let ids = config
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no rootfs.diff_ids"))?;
    ids.iter()
        .map(|v| {
            v.as_str()
                .and_then(|s| s.parse::<Digest>().ok())
                .ok_or_else(|| bad("a diff id is not a sha256 digest"))
        })
        .collect()
}

/// Parse config bytes as JSON.
pub fn parse_config(digest: &Digest, bytes: &[u8]) -> Result<Value, ImageError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| ImageError::Config {
        digest: digest.to_string(),
        why: e.to_string(),
    })?;
    if !v.is_object() {
        return Err(ImageError::Config {
            digest: digest.to_string(),
            why: "not a JSON object".to_string(),
        });
    }
    Ok(v)
}

/// The config's labels (`config.Labels`).
pub fn config_labels(config: &Value) -> BTreeMap<String, String> {
    config
        .get("config")
        .and_then(|c| c.get("Labels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Now, RFC 3339 with nanoseconds, as Docker writes `created`.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A fresh config for a one-layer image (what `docker import` makes).
pub fn new_import_config(diff_id: &Digest, message: &str) -> Value {
    let p = PlatformSpec::default();
    let created = now_rfc3339();
    let mut history = json!({"created": created, "created_by": "berth import"});
    if !message.is_empty() {
        history["comment"] = Value::String(message.to_string());
    }
    json!({
        "architecture": p.arch,
        "os": p.os,
        "created": created,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.as_str()]},
        "history": [history],
    })
}

/// Split a change's arguments into words, honouring double and single quotes and
/// backslash escapes.
fn words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (Some(_), c) => cur.push(c),
            (None, '"') | (None, '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".to_string());
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `K=V K2=V2` pairs, or the legacy `K V...` form.
fn pairs(args: &str) -> Result<Vec<(String, String)>, String> {
    let w = words(args)?;
    if w.is_empty() {
        return Err("needs at least one key".to_string());
    }
    if !w[0].contains('=') {
        let rest = args.trim_start()[args
            .trim_start()
            .find(char::is_whitespace)
            .unwrap_or(args.trim_start().len())..]
            .trim();
        let value = words(rest)?.join(" ");
        return Ok(vec![(w[0].clone(), value)]);
    }
    w.into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("{kv:?} is not KEY=VALUE")),
        })
        .collect()
}

/// JSON array form (`["a","b"]`) or shell form (wrapped in `/bin/sh -c`).
fn command(args: &str) -> Result<Value, String> {
    let t = args.trim();
    if t.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(t) {
            return Ok(json!(v));
        }
    }
    if t.is_empty() {
        return Err("needs a command".to_string());
    }
    Ok(json!(["/bin/sh", "-c", t]))
}

/// Apply Dockerfile-style changes (`ENV`, `CMD`, `ENTRYPOINT`, `WORKDIR`, `USER`,
/// `EXPOSE`, `LABEL`, `VOLUME`, `STOPSIGNAL`, `ONBUILD`) to an image config's
/// `config` object, as `docker import --change` and `docker commit --change` do.
pub fn apply_changes(image_config: &mut Value, changes: &[String]) -> Result<(), ImageError> {
    if !image_config.get("config").is_some_and(Value::is_object) {
        image_config["config"] = json!({});
    }
    let Some(cfg) = image_config
        .get_mut("config")
        .and_then(Value::as_object_mut)
    else {
        return Ok(());
    };
    for line in changes {
        apply_change(cfg, line).map_err(|why| ImageError::Change {
            line: line.clone(),
            why,
        })?;
    }
    Ok(())
}

fn apply_change(cfg: &mut Map<String, Value>, line: &str) -> Result<(), String> {
    let t = line.trim();
    if t.is_empty() {
        return Ok(());
    }
    let (instr, args) = match t.find(char::is_whitespace) {
        Some(i) => (&t[..i], t[i..].trim()),
        None => (t, ""),
    };
    match instr.to_ascii_uppercase().as_str() {
        "ENV" => {
            let mut env: Vec<String> = cfg
                .get("Env")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            for (k, v) in pairs(args)? {
                let entry = format!("{k}={v}");
                match env
                    .iter_mut()
                    .find(|e| e.split('=').next() == Some(k.as_str()))
                {
                    Some(e) => *e = entry,
                    None => env.push(entry),
                }
            }
            cfg.insert("Env".into(), json!(env));
        }
        "LABEL" => {
            let labels = cfg.entry("Labels").or_insert_with(|| json!({}));
            if !labels.is_object() {
                *labels = json!({});
            }
            for (k, v) in pairs(args)? {
                labels[k] = Value::String(v);
            }
        }
        "CMD" => {
            cfg.insert("Cmd".into(), command(args)?);
        }
        "ENTRYPOINT" => {
            cfg.insert("Entrypoint".into(), command(args)?);
        }
        "WORKDIR" => {
            if args.is_empty() {
                return Err("needs a path".to_string());
            }
            let cur = cfg.get("WorkingDir").and_then(Value::as_str).unwrap_or("/");
            let wd = if args.starts_with('/') {
                args.to_string()
            } else {
                format!("{}/{}", cur.trim_end_matches('/'), args)
            };
            cfg.insert("WorkingDir".into(), Value::String(wd));
        }
        "USER" => {
            if args.is_empty() {
                return Err("needs a user".to_string());
            }
            cfg.insert("User".into(), Value::String(args.to_string()));
        }
        "EXPOSE" => {
            let ports = cfg.entry("ExposedPorts").or_insert_with(|| json!({}));
            if !ports.is_object() {
                *ports = json!({});
            }
            let w = words(args)?;
            if w.is_empty() {
                return Err("needs a port".to_string());
            }
            for p in w {
                let (port, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                let ok = port.split('-').all(|n| n.parse::<u16>().is_ok());
                if !ok || !matches!(proto, "tcp" | "udp" | "sctp") {
                    return Err(format!("{p:?} is not PORT[/tcp|udp|sctp]"));
                }
                ports[format!("{port}/{proto}")] = json!({});
            }
        }
        "VOLUME" => {
            let vols = cfg.entry("Volumes").or_insert_with(|| json!({}));
            if !vols.is_object() {
                *vols = json!({});
            }
            let list: Vec<String> = if args.trim_start().starts_with('[') {
                serde_json::from_str(args).map_err(|e| e.to_string())?
            } else {
                words(args)?
            };
            for v in list {
                vols[v] = json!({});
            }
        }
        "STOPSIGNAL" => {
            cfg.insert("StopSignal".into(), Value::String(args.to_string()));
        }
        "ONBUILD" => {
            let ob = cfg.entry("OnBuild").or_insert_with(|| json!([]));
            if !ob.is_array() {
                *ob = json!([]);
            }
            if let Some(a) = ob.as_array_mut() {
                a.push(Value::String(args.to_string()));
            }
        }
        other => return Err(format!("{other} is not a supported instruction")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalize_like_docker() {
        assert_eq!(
            normalize("busybox").unwrap(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize("127.0.0.1:5000/x/y:z").unwrap(),
            "127.0.0.1:5000/x/y:z"
        );
    }

    #[test]
    fn changes_apply() {
        let mut c = new_import_config(&Digest::of(b""), "");
        apply_changes(
            &mut c,
            &[
                "ENV A=1 B=\"two words\"".into(),
                "ENV A 3".into(),
                "CMD [\"/bin/sh\",\"-c\",\"echo hi\"]".into(),
                "ENTRYPOINT /bin/true".into(),
                "WORKDIR /w".into(),
                "WORKDIR sub".into(),
                "USER nobody".into(),
                "EXPOSE 80 53/udp".into(),
                "LABEL a=b c=\"d e\"".into(),
            ],
        )
        .unwrap();
        let cfg = &c["config"];
        assert_eq!(cfg["Env"], json!(["A=3", "B=two words"]));
        assert_eq!(cfg["Cmd"], json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(cfg["Entrypoint"], json!(["/bin/sh", "-c", "/bin/true"]));
        assert_eq!(cfg["WorkingDir"], "/w/sub");
        assert_eq!(cfg["User"], "nobody");
        assert_eq!(cfg["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(cfg["Labels"], json!({"a": "b", "c": "d e"}));
        assert!(apply_changes(&mut c, &["FROB x".into()]).is_err());
        assert!(apply_changes(&mut c, &["EXPOSE http".into()]).is_err());
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        assert_eq!(c[1], Digest::of(format!("{a} {b}").as_bytes()));
    }
}
