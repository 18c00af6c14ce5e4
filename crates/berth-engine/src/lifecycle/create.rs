//! Making a container: its name, its config merged with the image's, the checks
//! dockerd makes at create time, its record and /etc files, and the manager's
//! record (which prepares the writable snapshot).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bollard_stubs::models::{
    ContainerConfig, HostConfig, ImageConfig, Mount, MountBindOptions, MountTypeEnum,
    NetworkingConfig,
};
use serde::Deserialize;

use super::state;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::manager::{self, SnapshotInfo};
use crate::spec::{self, SpecInput};
use crate::store::{ContainerRecord, StoreError};

/// What `POST /containers/create` asks for.
#[derive(Debug, Default)]
pub struct CreateRequest {
    /// `?name=`; generated when empty.
    pub name: Option<String>,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    /// The endpoints to connect at create (`NetworkingConfig`).
    pub networking: Option<NetworkingConfig>,
}

/// RFC 3339 with nanoseconds, as dockerd writes times.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Takes the image's `config` object out of an image config JSON.
pub fn image_config(raw: &[u8]) -> Result<ImageConfig, EngineError> {
    #[derive(Deserialize)]
    struct Outer {
        #[serde(default)]
        config: Option<ImageConfig>,
    }
    let outer: Outer = serde_json::from_slice(raw)
        .map_err(|e| EngineError::io("reading the image config", std::io::Error::other(e)))?;
    Ok(outer.config.unwrap_or_default())
}

/// Maps the manager's "not found" for an image to dockerd's "No such image: X".
pub async fn get_image(engine: &Engine, reference: &str) -> Result<manager::Image, EngineError> {
    match engine.manager.images_get(reference).await {
        Err(EngineError::Manager {
            code: tonic::Code::NotFound,
            ..
        }) => Err(EngineError::NoSuchImage(reference.to_string())),
        other => other,
    }
}

/// The directory to read /etc/passwd from before the rootfs is mounted: the first of
/// the snapshot's upper and lower directories that has one.
pub fn passwd_root(info: &SnapshotInfo) -> PathBuf {
    std::iter::once(info.upper_dir.as_str())
        .chain(info.lower_dir.split(':'))
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .find(|d| d.join("etc/passwd").is_file())
        .unwrap_or_else(|| PathBuf::from(&info.merged_dir))
}

/// Volumes by name only, for what create does before they exist: a bad name is
/// refused (start would refuse it), the path is a stand-in.
struct NoVolumes;

impl spec::VolumeResolver for NoVolumes {
    fn resolve(&self, name: &str) -> Result<PathBuf, spec::SpecError> {
        crate::api::volumes::check_name(name).map_err(|e| spec::SpecError::Invalid(e.message()))?;
        Ok(PathBuf::from("/").join(name))
    }
}

fn validate(
    engine: &Engine,
    id: &str,
    config: &ContainerConfig,
    hc: &HostConfig,
) -> Result<(), EngineError> {
    // Everything except the user (which needs the image's files) is checked now, so
    // a bad HostConfig is a 400 at create time as with dockerd.
    let mut c = config.clone();
    c.user = None;
    let mut h = hc.clone();
    h.group_add = None;
    spec::build_spec(&SpecInput {
        id,
        config: &c,
        host_config: &h,
        image: &ImageConfig::default(),
        rootfs: Path::new("/nonexistent"),
        container_dir: &engine.store.container_dir(id),
        init_path: &engine.config.init_path,
        volumes: &NoVolumes,
        host: &engine.host,
    })?;
    Ok(())
}

/// Marks the manager's containers that berthd makes for its own containers (not a
/// build's, not CRI's): one without an engine record is what a create cut short by a
/// crash left, deleted at the next reconcile (`link::drop_unrecorded`).
pub const ENGINE_LABEL: &str = "berth.engine.container";

/// The labels of the manager's container: the user's, berthd's mark
/// ([`ENGINE_LABEL`]), and for `--rm` the one that has its writable layer mounted
/// volatile (berth-manager's `VOLATILE_LABEL`: the layer is thrown away at the exit,
/// so its unmount need not sync the disk), where overlayfs has that option (Linux
/// 5.10 and later; older kernels refuse every mount that names it).
fn manager_labels(config: &ContainerConfig, hc: &HostConfig) -> HashMap<String, String> {
    let mut labels = config.labels.clone().unwrap_or_default();
    labels.insert(ENGINE_LABEL.to_string(), "true".to_string());
    if hc.auto_remove == Some(true) && crate::spec::seccomp::kernel_version() >= (5, 10) {
        labels.insert("berth.rootfs.volatile".to_string(), "true".to_string());
    }
    labels
}

/// Makes a container in state `created`; returns its id and the warnings of its
/// network settings. Nothing is left behind when it fails.
pub async fn create(
    engine: &Arc<Engine>,
    req: CreateRequest,
) -> Result<(String, Vec<String>), EngineError> {
    let mut config = req.config;
    let mut hc = req.host_config;
    // As dockerd (SetDefaultNetModeIfBlank): inspect and templates read `default`.
    if hc.network_mode.as_deref().unwrap_or("").is_empty() {
        hc.network_mode = Some("default".to_string());
    }
    let image_ref = config.image.clone().unwrap_or_default();
    if image_ref.is_empty() {
        return Err(EngineError::BadParameter("no image specified".to_string()));
    }
    let generated = req.name.as_deref().is_none_or(str::is_empty);
    let name = match req.name.filter(|n| !n.is_empty()) {
        Some(n) => n,
        None => engine.store.generate_name()?,
    };
    if !crate::store::valid_name(&name) {
        return Err(StoreError::InvalidName(name).into());
    }
    if engine.store.name_taken(&name) {
        let id = engine.store.resolve(&name)?;
        return Err(StoreError::NameConflict {
            name: format!("/{}", name.trim_start_matches('/')),
            id,
        }
        .into());
    }
    let image = get_image(engine, &image_ref).await?;
    spec::merge_image_config(&mut config, &image_config(&image.config)?);
    let id = crate::fsutil::random_id().map_err(|e| EngineError::io("reading /dev/urandom", e))?;
    if spec::namespaces::uts_is_host(&hc) && !config.hostname.as_deref().unwrap_or("").is_empty() {
        return Err(EngineError::BadParameter(
            "Conflicting options: hostname and the UTS mode".to_string(),
        ));
    }
    if config.hostname.as_deref().unwrap_or("").is_empty() {
        config.hostname = Some(spec::hostname(&id, &config, &hc, &engine.host));
    }
    check_volume_driver(&config, &hc)?;
    add_volumes_from(engine, &mut hc)?;
    validate(engine, &id, &config, &hc)?;
    let weight_discarded = spec::devices::asks_for_weight(&hc) && !engine.host.blkio_weight;
    let args = spec::command(&config)?;
    let Some((path, args)) = args.split_first() else {
        return Err(EngineError::BadParameter(
            "No command specified".to_string(),
        ));
    };
    let log_warnings = check_log_config(&mut hc)?;
    let runtime = check_runtime(&mut hc)?;
    let anonymous = add_anonymous_volumes(engine, &config, &mut hc)?;
    let dir = engine.store.container_dir(&id);
    // The `none` driver keeps no log, as dockerd: no path, so the shim writes none
    // (attached clients still get the output) and `logs` has nothing to read.
    let no_log = hc.log_config.as_ref().and_then(|l| l.typ.as_deref()) == Some("none");
    let log_path = if no_log {
        String::new()
    } else {
        dir.join(format!("{id}-json.log"))
            .to_string_lossy()
            .into_owned()
    };
    let labels = manager_labels(&config, &hc);
    let rec = ContainerRecord {
        id: id.clone(),
        name,
        created: now_rfc3339(),
        path: path.clone(),
        args: args.to_vec(),
        config,
        host_config: hc,
        state: state::created(),
        image: image.id.clone(),
        log_path: log_path.clone(),
        snapshot_key: id.clone(),
        ..ContainerRecord::default()
    };
    // The manager's container (a redb commit) and the engine's own files (the
    // record and network.json, fsynced, and the /etc files) are written at the same
    // time: the manager's request goes out on the first poll, the files are written
    // on a blocking thread (inline they would hold this worker, and with it the task
    // that sends the request). A crash between the two commits leaves a record
    // without a manager container (its start fails, `rm` works) or a marked manager
    // container without a record (deleted at the next reconcile).
    let remote = engine.manager.containers_create(manager::Container {
        id: id.clone(),
        image: image.id.clone(),
        snapshot_key: String::new(),
        labels,
        runtime: runtime.clone(),
        log_path,
        created_at: now_rfc3339(),
        ..manager::Container::default()
    });
    let local = {
        let engine = engine.clone();
        let networking = req.networking;
        async move {
            tokio::task::spawn_blocking(move || {
                record(&engine, &rec, generated)?;
                let (id, config, hc) = (&rec.id, &rec.config, &rec.host_config);
                let files = (|| {
                    let warnings = crate::network::container::container_created(
                        &engine,
                        id,
                        config,
                        hc,
                        networking.as_ref(),
                    )?;
                    crate::network::container::write_base_etc(&engine, id, config, hc)?;
                    Ok::<_, EngineError>(warnings)
                })();
                if files.is_err() {
                    let _ = engine.store.remove(id);
                }
                files
            })
            .await
            .map_err(|e| {
                EngineError::io("writing the container's files", std::io::Error::other(e))
            })?
        }
    };
    let result = match tokio::join!(remote, local) {
        (Ok(c), Ok(warnings)) => Ok((c, warnings)),
        (made, Err(e)) => {
            if made.is_ok() {
                if let Err(e) = engine.manager.containers_delete(&id, false).await {
                    tracing::warn!(container = %id, error = %e, "removing the manager's container of a failed create");
                }
            }
            Err(e)
        }
        (Err(e), Ok(_)) => {
            let _ = engine.store.remove(&id);
            Err(e)
        }
    };
    match result {
        Ok((c, mut warnings)) => {
            warnings.extend(log_warnings);
            if weight_discarded {
                warnings.push(
                    "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."
                        .to_string(),
                );
            }
            if c.snapshot_key != id {
                engine
                    .store
                    .update(&id, |r| r.snapshot_key = c.snapshot_key.clone())?;
            }
            Ok((id, warnings))
        }
        Err(e) => {
            for v in &anonymous {
                crate::api::volumes::remove_quietly(engine, v);
            }
            Err(e)
        }
    }
}

/// Adds the record. A generated name another create took in the meantime
/// (parallel `run`s) is drawn again, as docker does. Its name is made durable by
/// the `network.json` written next in the same directory (one directory sync
/// for both); a create that fails before that removes the record.
fn record(engine: &Engine, rec: &ContainerRecord, generated: bool) -> Result<(), EngineError> {
    let mut created = engine.store.create_name_synced_later(rec.clone());
    for _ in 0..10 {
        match created {
            Err(StoreError::NameConflict { .. }) if generated => {
                let mut again = rec.clone();
                again.name = engine.store.generate_name()?;
                created = engine.store.create_name_synced_later(again);
            }
            _ => break,
        }
    }
    created.map(|_| ()).map_err(EngineError::from)
}

/// Docker's logging drivers; berth writes json-file logs whichever of the first three
/// is asked for (`none` and `local` are recorded, so clients that read the type, as
/// docker-py's `containers.run`, behave as with dockerd).
const LOG_DRIVERS_SERVED: &[&str] = &["json-file", "local", "none"];
const LOG_DRIVERS_DOCKER: &[&str] = &[
    "syslog",
    "journald",
    "gelf",
    "fluentd",
    "awslogs",
    "splunk",
    "etwlogs",
    "gcplogs",
    "logentries",
];

/// `HostConfig.LogConfig`: an empty type is json-file (dockerd's default); an unknown
/// driver is refused with dockerd's message, a docker driver berth lacks with 501.
/// Returns the create's warnings for options kept but not applied.
fn check_log_config(hc: &mut HostConfig) -> Result<Vec<String>, EngineError> {
    let lc = hc.log_config.get_or_insert_with(Default::default);
    let typ = lc.typ.clone().unwrap_or_default();
    if typ.is_empty() {
        lc.typ = Some("json-file".to_string());
    } else if LOG_DRIVERS_DOCKER.contains(&typ.as_str()) {
        return Err(EngineError::NotImplemented(format!(
            "logging driver {typ} is not supported by berth (json-file, local and none are)"
        )));
    } else if !LOG_DRIVERS_SERVED.contains(&typ.as_str()) {
        return Err(EngineError::BadParameter(format!(
            "logger: no log driver named '{typ}' is registered"
        )));
    }
    let config = lc.config.get_or_insert_with(HashMap::new);
    // Kept (inspect shows them) but not applied; said at create rather than not at all.
    let mut unapplied: Vec<&str> = ROTATION_OPTS
        .iter()
        .copied()
        .filter(|o| config.contains_key(*o))
        .collect();
    unapplied.sort_unstable();
    Ok(unapplied
        .iter()
        .map(|o| {
            format!("berth does not apply the log option {o} yet: rotated logs stay uncompressed")
        })
        .collect())
}

/// json-file's options that berth's shim does not apply yet (it rotates by
/// `max-size` and `max-file`, uncompressed).
const ROTATION_OPTS: &[&str] = &["compress"];

/// `HostConfig.Runtime`: berth's own runtime by default (the manager's `--runtime`),
/// or `runc`/`crun` when installed; anything else is dockerd's 400. Returns the name
/// the manager runs the task with ("" for its default).
fn check_runtime(hc: &mut HostConfig) -> Result<String, EngineError> {
    let name = hc.runtime.clone().unwrap_or_default();
    match name.as_str() {
        "" | DEFAULT_RUNTIME => {
            hc.runtime = Some(DEFAULT_RUNTIME.to_string());
            Ok(String::new())
        }
        other if OTHER_RUNTIMES.contains(&other) && on_path(other) => Ok(other.to_string()),
        other => Err(EngineError::BadParameter(format!(
            "Unknown runtime specified {other}"
        ))),
    }
}

/// The name of the runtime the manager is started with.
pub const DEFAULT_RUNTIME: &str = "berth-runtime";
/// The other OCI runtimes a container may ask for, when installed.
pub const OTHER_RUNTIMES: &[&str] = &["runc", "crun"];

/// Whether an executable of that name is on `$PATH`.
pub fn on_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            std::fs::metadata(d.join(name))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// A mount destination as compared between mounts: without its trailing slashes.
fn norm_dest(d: &str) -> String {
    let t = d.trim_end_matches('/');
    if t.is_empty() { "/" } else { t }.to_string()
}

/// `VolumeDriver` (`--volume-driver`) names the driver of the volumes this
/// container makes; berth has only `local`. As dockerd, a container that makes no
/// volume (no named volume among its binds or mounts, no `Config.Volumes` place
/// left to an anonymous one) keeps any name there; one that would make one with
/// another driver is refused, as dockerd refuses a plugin it cannot find.
fn check_volume_driver(config: &ContainerConfig, hc: &HostConfig) -> Result<(), EngineError> {
    let Some(driver) = hc
        .volume_driver
        .as_deref()
        .filter(|d| !d.is_empty() && *d != "local")
    else {
        return Ok(());
    };
    let mut named = false;
    for b in hc.binds.iter().flatten() {
        named |= spec::mounts::parse_bind(b, &NoVolumes)?.kind == "volume";
    }
    named |= hc
        .mounts
        .iter()
        .flatten()
        .any(|m| m.typ == Some(MountTypeEnum::VOLUME));
    let taken = taken_destinations(hc);
    let anonymous = config
        .volumes
        .iter()
        .flat_map(|v| v.keys())
        .any(|d| !taken.contains(&norm_dest(d)));
    if named || anonymous {
        return Err(EngineError::BadParameter(
            crate::api::volumes::plugin_not_found(driver),
        ));
    }
    Ok(())
}

/// Where the container's own binds, mounts and tmpfs go.
fn taken_destinations(hc: &HostConfig) -> std::collections::HashSet<String> {
    let binds = hc
        .binds
        .iter()
        .flatten()
        .filter_map(|b| b.split(':').nth(1));
    let mounts = hc
        .mounts
        .iter()
        .flatten()
        .filter_map(|m| m.target.as_deref());
    let tmpfs = hc.tmpfs.iter().flat_map(|t| t.keys()).map(String::as_str);
    binds.chain(mounts).chain(tmpfs).map(norm_dest).collect()
}

/// `VolumesFrom` (`<name|id>[:ro|rw]`): the binds and volumes of those containers,
/// at the same places, become mounts of this one at its create, as dockerd copies
/// their mount points then (`ro`/`rw` override each one's mode). A place this
/// container mounts something of its own keeps it, and the first container named
/// wins a place two of them use.
fn add_volumes_from(engine: &Engine, hc: &mut HostConfig) -> Result<(), EngineError> {
    let from = hc.volumes_from.clone().unwrap_or_default();
    if from.is_empty() {
        return Ok(());
    }
    let mut taken = taken_destinations(hc);
    let mut copied = vec![];
    for entry in &from {
        let (name, mode) = entry.split_once(':').unwrap_or((entry.as_str(), ""));
        let read_only = match mode {
            "" => None,
            "ro" => Some(true),
            "rw" => Some(false),
            m => {
                return Err(EngineError::BadParameter(format!(
                    "invalid mode for volumes-from: {m}"
                )))
            }
        };
        let source = engine.store.get(name)?;
        let mut theirs = vec![];
        for b in source.host_config.binds.iter().flatten() {
            let m = spec::mounts::parse_bind(b, &NoVolumes)?;
            let typ = if m.kind == "bind" {
                MountTypeEnum::BIND
            } else {
                MountTypeEnum::VOLUME
            };
            theirs.push(Mount {
                target: Some(m.destination),
                source: Some(
                    m.name
                        .unwrap_or_else(|| m.source.to_string_lossy().into_owned()),
                ),
                typ: Some(typ),
                read_only: Some(m.read_only),
                bind_options: (typ == MountTypeEnum::BIND).then(|| MountBindOptions {
                    propagation: m.propagation.parse().ok(),
                    ..MountBindOptions::default()
                }),
                ..Mount::default()
            });
        }
        theirs.extend(
            source
                .host_config
                .mounts
                .iter()
                .flatten()
                .filter(|m| matches!(m.typ, Some(MountTypeEnum::BIND | MountTypeEnum::VOLUME)))
                .cloned(),
        );
        for mut m in theirs {
            let Some(dest) = m.target.as_deref().map(norm_dest) else {
                continue;
            };
            if !taken.insert(dest) {
                continue;
            }
            if let Some(ro) = read_only {
                m.read_only = Some(ro);
            }
            copied.push(m);
        }
    }
    hc.mounts.get_or_insert_with(Vec::new).extend(copied);
    Ok(())
}

/// The destinations of `Config.Volumes` (the image's `VOLUME`s and `-v /data`) that no
/// bind, mount or tmpfs covers get an anonymous `local` volume each, as with dockerd;
/// they are kept as volume entries of `HostConfig.Mounts`, so that the spec, `Mounts`
/// in inspect and the volume's users see them like any other. Returns their names.
fn add_anonymous_volumes(
    engine: &Engine,
    config: &ContainerConfig,
    hc: &mut HostConfig,
) -> Result<Vec<String>, EngineError> {
    let taken = taken_destinations(hc);
    let mut dests: Vec<String> = config
        .volumes
        .iter()
        .flat_map(|v| v.keys())
        .map(|d| norm_dest(d))
        .filter(|d| d.starts_with('/') && d != "/" && !taken.contains(d))
        .collect();
    dests.sort();
    dests.dedup();
    let mut made = vec![];
    for dest in dests {
        match crate::api::volumes::create_local(engine, None, HashMap::new(), HashMap::new()) {
            Ok(v) => {
                hc.mounts.get_or_insert_with(Vec::new).push(Mount {
                    target: Some(dest),
                    source: Some(v.name.clone()),
                    typ: Some(MountTypeEnum::VOLUME),
                    ..Mount::default()
                });
                made.push(v.name);
            }
            Err(e) => {
                for v in &made {
                    crate::api::volumes::remove_quietly(engine, v);
                }
                return Err(e);
            }
        }
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_kept_with_a_warning() {
        let mut hc = HostConfig {
            log_config: Some(bollard_stubs::models::HostConfigLogConfig {
                typ: None,
                config: Some(HashMap::from([
                    ("max-size".to_string(), "10m".to_string()),
                    ("compress".to_string(), "true".to_string()),
                ])),
            }),
            ..HostConfig::default()
        };
        let warnings = check_log_config(&mut hc).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("compress"));
        let lc = hc.log_config.unwrap();
        assert_eq!(lc.typ.as_deref(), Some("json-file"));
        assert_eq!(lc.config.unwrap()["max-size"], "10m");
        let mut plain = HostConfig::default();
        assert!(check_log_config(&mut plain).unwrap().is_empty());
    }

    #[test]
    fn passwd_root_prefers_the_layer_with_the_file() {
        let d = tempfile::tempdir().unwrap();
        let lower = d.path().join("l2");
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::write(lower.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        let info = SnapshotInfo {
            upper_dir: d.path().join("up").to_string_lossy().into_owned(),
            lower_dir: format!("{}:{}", d.path().join("l1").display(), lower.display()),
            merged_dir: "/merged".into(),
            ..SnapshotInfo::default()
        };
        assert_eq!(passwd_root(&info), lower);
        assert_eq!(passwd_root(&SnapshotInfo::default()), PathBuf::from(""));
    }
}
