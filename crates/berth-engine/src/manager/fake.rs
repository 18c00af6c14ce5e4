//! An in-memory [`Manager`] for tests: images you add, container records, and tasks
//! whose "process" is a small script (print some output, optionally echo stdin back
//! on stdout, then exit with a code). No processes, no sockets.

mod images;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, watch};

use super::images::Envelope;
use super::{
    AttachStreams, ByteStream, Change, Container, ExitStatus, Image, Manager, OutputChunk,
    SnapshotInfo, StdStream, StdinMsg, Task, TaskStatus,
};
use crate::error::EngineError;
use berth_api::berth::manager::v1::{envelope::Event, TaskExit, VersionResponse};

/// What a fake process does once attached. A process with a script (output or echo)
/// exits with `exit_code` when the script ends; one without runs until made to exit.
#[derive(Debug, Clone, Default)]
pub struct Program {
    /// Written first, in order.
    pub output: Vec<OutputChunk>,
    /// Copy stdin to stdout until stdin closes.
    pub echo_stdin: bool,
    /// The code the process exits with once done.
    pub exit_code: u32,
}

impl Program {
    /// A program that prints `text` on stdout and exits 0.
    pub fn prints(text: &str) -> Program {
        Program {
            output: vec![OutputChunk {
                stream: StdStream::Stdout,
                data: Bytes::copy_from_slice(text.as_bytes()),
            }],
            ..Program::default()
        }
    }
}

#[derive(Debug)]
struct FakeTask {
    pid: u32,
    status: TaskStatus,
    exit_tx: watch::Sender<Option<ExitStatus>>,
}

#[derive(Debug, Default)]
struct State {
    images: Vec<Image>,
    containers: HashMap<String, Container>,
    /// Keyed by (container id, exec id); "" is the init.
    tasks: HashMap<(String, String), FakeTask>,
    programs: HashMap<(String, String), Program>,
    changes: HashMap<String, Vec<Change>>,
    /// What `snapshots_export` streams, by snapshot key.
    exports: HashMap<String, Vec<u8>>,
    /// What `tasks_stats` answers for every task.
    stats: Option<Vec<u8>>,
    /// Every `tasks_update`: (container id, resources JSON).
    updates: Vec<(String, Vec<u8>)>,
    next_pid: u32,
    /// `containers_delete` answers Unavailable, as a manager that is down.
    deletes_fail: bool,
    creates_unreachable: bool,
    /// What `snapshots_usage` answers, by snapshot key.
    usage: HashMap<String, i64>,
}

/// The fake manager. Cheap to create; share it in an `Arc`.
#[derive(Debug)]
pub struct FakeManager {
    state: Arc<Mutex<State>>,
    /// Task starts and exits, for `events_subscribe`.
    events: broadcast::Sender<Envelope>,
}

impl Default for FakeManager {
    fn default() -> Self {
        FakeManager {
            state: Arc::default(),
            events: broadcast::channel(256).0,
        }
    }
}

fn lock_state(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    match state.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn exit_task(
    state: &Mutex<State>,
    events: &broadcast::Sender<Envelope>,
    id: &str,
    exec_id: &str,
    code: u32,
) {
    let mut st = lock_state(state);
    if let Some(t) = st.tasks.get_mut(&(id.to_string(), exec_id.to_string())) {
        if t.status == TaskStatus::Stopped {
            return;
        }
        t.status = TaskStatus::Stopped;
        let pid = t.pid;
        let exit = ExitStatus {
            pid,
            exit_status: code,
            exited_at: "2024-01-01T00:00:01Z".to_string(),
            oom_killed: false,
        };
        t.exit_tx.send_replace(Some(exit.clone()));
        let _ = events.send(Envelope {
            timestamp: exit.exited_at.clone(),
            topic: "/tasks/exit".to_string(),
            event: Some(Event::TaskExit(TaskExit {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                pid,
                exit_status: code,
                exited_at: exit.exited_at,
                oom_killed: false,
                reason: String::new(),
            })),
        });
    }
}

fn not_found(what: &str) -> EngineError {
    tonic::Status::not_found(what.to_string()).into()
}

impl FakeManager {
    pub fn new() -> FakeManager {
        FakeManager::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock_state(&self.state)
    }

    /// Adds an image whose config JSON is `config` under the given names.
    pub fn add_image(&self, id: &str, names: &[&str], config: serde_json::Value) {
        self.lock().images.push(Image {
            id: id.to_string(),
            names: names.iter().map(|s| s.to_string()).collect(),
            config: config.to_string().into_bytes(),
            size: 4096,
            created: "2024-01-01T00:00:00Z".to_string(),
            top_snapshot: format!("{id}-top"),
            ..Image::default()
        });
    }

    /// Sets what the process `(id, exec_id)` does when attached and started; id "*"
    /// applies to every container without a program of its own.
    pub fn set_program(&self, id: &str, exec_id: &str, program: Program) {
        self.lock()
            .programs
            .insert((id.to_string(), exec_id.to_string()), program);
    }

    /// Sets what `snapshots_changes` answers for a snapshot key.
    pub fn set_changes(&self, key: &str, changes: Vec<Change>) {
        self.lock().changes.insert(key.to_string(), changes);
    }

    /// Sets what `snapshots_export` streams for a snapshot key.
    pub fn set_export(&self, key: &str, data: Vec<u8>) {
        self.lock().exports.insert(key.to_string(), data);
    }

    /// Sets the stats JSON every task reports.
    pub fn set_stats(&self, stats: serde_json::Value) {
        self.lock().stats = Some(stats.to_string().into_bytes());
    }

    /// Every resources update sent so far: (container id, resources JSON).
    pub fn updates(&self) -> Vec<(String, serde_json::Value)> {
        self.lock()
            .updates
            .iter()
            .map(|(id, r)| {
                (
                    id.clone(),
                    serde_json::from_slice(r).unwrap_or(serde_json::Value::Null),
                )
            })
            .collect()
    }

    /// The init's status now (for assertions).
    pub fn task_status(&self, id: &str) -> Option<TaskStatus> {
        self.lock()
            .tasks
            .get(&(id.to_string(), String::new()))
            .map(|t| t.status)
    }

    fn set_status(&self, id: &str, from: TaskStatus, to: TaskStatus) -> Result<(), EngineError> {
        let mut st = self.lock();
        let t = st
            .tasks
            .get_mut(&(id.to_string(), String::new()))
            .ok_or_else(|| not_found(&format!("task {id} not found")))?;
        if t.status != from {
            return Err(tonic::Status::failed_precondition(format!(
                "task {id} is {:?}, not {from:?}",
                t.status
            ))
            .into());
        }
        t.status = to;
        Ok(())
    }

    /// A container the manager holds, made by someone (for tests of what the
    /// engine does with containers it did not record).
    pub fn add_container(&self, c: Container) {
        self.lock().containers.insert(c.id.clone(), c);
    }

    /// Leaves a stopped task for container `id`, as a run whose exit's delete
    /// never reached the manager does.
    pub fn leave_stopped_task(&self, id: &str) {
        self.new_task(id, "");
        if let Some(t) = self.lock().tasks.get_mut(&(id.to_string(), String::new())) {
            t.status = TaskStatus::Stopped;
        }
    }

    /// Makes the process exit now with `code`, as if it ended by itself.
    pub fn exit(&self, id: &str, exec_id: &str, code: u32) {
        exit_task(&self.state, &self.events, id, exec_id, code);
    }

    /// The task events from now on.
    pub(crate) fn subscribe_events(&self) -> broadcast::Receiver<Envelope> {
        self.events.subscribe()
    }
    /// What `snapshots_usage` answers for `key` from now on.
    pub fn set_usage(&self, key: &str, bytes: i64) {
        self.lock().usage.insert(key.to_string(), bytes);
    }

    /// From now on `containers_delete` fails (`true`) or works again.
    pub fn fail_container_deletes(&self, fail: bool) {
        self.lock().deletes_fail = fail;
    }

    /// From now on `tasks_create` answers as a manager that cannot be reached
    /// (`true`), or works again.
    pub fn fail_task_creates_unreachable(&self, fail: bool) {
        self.lock().creates_unreachable = fail;
    }

    /// The container records the fake holds (for assertions).
    pub fn container_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().containers.keys().cloned().collect();
        ids.sort();
        ids
    }

    fn new_task(&self, id: &str, exec_id: &str) -> u32 {
        let mut st = self.lock();
        st.next_pid += 1;
        let pid = 40000 + st.next_pid;
        let (exit_tx, _) = watch::channel(None);
        st.tasks.insert(
            (id.to_string(), exec_id.to_string()),
            FakeTask {
                pid,
                status: TaskStatus::Created,
                exit_tx,
            },
        );
        pid
    }
}

#[async_trait]
impl Manager for FakeManager {
    async fn version(&self) -> Result<VersionResponse, EngineError> {
        Ok(VersionResponse {
            version: "0.0.0-fake".to_string(),
            revision: "fake".to_string(),
            runtime: "fake-runtime".to_string(),
        })
    }

    async fn images_list(&self, _filters: Vec<String>) -> Result<Vec<Image>, EngineError> {
        Ok(self.lock().images.clone())
    }

    async fn images_get(&self, reference: &str) -> Result<Image, EngineError> {
        let st = self.lock();
        let bare = reference.strip_prefix("sha256:").unwrap_or(reference);
        st.images
            .iter()
            .find(|i| {
                i.names.iter().any(|n| n == reference)
                    || i.id == reference
                    || (bare.len() >= 4
                        && i.id
                            .strip_prefix("sha256:")
                            .unwrap_or(&i.id)
                            .starts_with(bare))
            })
            .cloned()
            .ok_or_else(|| not_found(&format!("image {reference} not found")))
    }

    async fn containers_create(&self, container: Container) -> Result<Container, EngineError> {
        let mut st = self.lock();
        if st.containers.contains_key(&container.id) {
            return Err(tonic::Status::already_exists(format!(
                "container {} already exists",
                container.id
            ))
            .into());
        }
        let mut c = container;
        if c.snapshot_key.is_empty() {
            c.snapshot_key = c.id.clone();
        }
        st.containers.insert(c.id.clone(), c.clone());
        Ok(c)
    }

    async fn containers_get(&self, id: &str) -> Result<Container, EngineError> {
        self.lock()
            .containers
            .get(id)
            .cloned()
            .ok_or_else(|| not_found(&format!("container {id} not found")))
    }

    async fn containers_list(&self, filters: Vec<String>) -> Result<Vec<Container>, EngineError> {
        // Label filters only, as the engine asks.
        let wanted = |c: &Container| {
            filters.iter().all(|f| {
                let Some(label) = f.strip_prefix("label=") else {
                    return false;
                };
                match label.split_once('=') {
                    Some((k, v)) => c.labels.get(k).is_some_and(|x| x == v),
                    None => c.labels.contains_key(label),
                }
            })
        };
        let mut out: Vec<Container> = self
            .lock()
            .containers
            .values()
            .filter(|c| wanted(c))
            .map(|c| Container {
                spec: Vec::new(),
                ..c.clone()
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn containers_update(
        &self,
        container: Container,
        mask: Vec<String>,
    ) -> Result<Container, EngineError> {
        let mut st = self.lock();
        let c = st
            .containers
            .get_mut(&container.id)
            .ok_or_else(|| not_found(&format!("container {} not found", container.id)))?;
        for field in mask {
            match field.as_str() {
                "spec" => c.spec = container.spec.clone(),
                "labels" => c.labels = container.labels.clone(),
                "log_path" => c.log_path = container.log_path.clone(),
                "runtime" => c.runtime = container.runtime.clone(),
                "image" => c.image = container.image.clone(),
                other => {
                    return Err(tonic::Status::invalid_argument(format!(
                        "unknown field {other} in update_mask"
                    ))
                    .into())
                }
            }
        }
        Ok(c.clone())
    }

    async fn containers_delete(&self, id: &str, _keep_snapshot: bool) -> Result<(), EngineError> {
        let mut st = self.lock();
        if st.deletes_fail {
            return Err(tonic::Status::unavailable("the manager is down").into());
        }
        if st.tasks.contains_key(&(id.to_string(), String::new())) {
            return Err(
                tonic::Status::failed_precondition(format!("container {id} has a task")).into(),
            );
        }
        st.containers
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| not_found(&format!("container {id} not found")))
    }

    async fn tasks_create(
        &self,
        id: &str,
        _stdin: bool,
        spec: Option<Vec<u8>>,
        start: bool,
    ) -> Result<u32, EngineError> {
        {
            let mut st = self.lock();
            if st.creates_unreachable {
                return Err(EngineError::ManagerUnavailable {
                    socket: "fake".into(),
                    reason: "connection refused".into(),
                });
            }
            if !st.containers.contains_key(id) {
                return Err(not_found(&format!("container {id} not found")));
            }
            // As berth-manager: a task left by an earlier run must be deleted first.
            if st.tasks.contains_key(&(id.to_string(), String::new())) {
                return Err(
                    tonic::Status::already_exists(format!("task {id} already exists")).into(),
                );
            }
            if let (Some(spec), Some(c)) = (spec, st.containers.get_mut(id)) {
                c.spec = spec;
            }
        }
        let pid = self.new_task(id, "");
        if start {
            self.tasks_start(id, "").await?;
        }
        Ok(pid)
    }

    async fn tasks_start(&self, id: &str, exec_id: &str) -> Result<u32, EngineError> {
        let mut st = self.lock();
        let t = st
            .tasks
            .get_mut(&(id.to_string(), exec_id.to_string()))
            .ok_or_else(|| not_found(&format!("task {id}/{exec_id} not found")))?;
        t.status = TaskStatus::Running;
        Ok(t.pid)
    }

    async fn tasks_kill(
        &self,
        id: &str,
        exec_id: &str,
        signal: u32,
        _all: bool,
    ) -> Result<(), EngineError> {
        if !self
            .lock()
            .tasks
            .contains_key(&(id.to_string(), exec_id.to_string()))
        {
            return Err(not_found(&format!("task {id} not found")));
        }
        self.exit(id, exec_id, 128 + signal);
        Ok(())
    }

    async fn tasks_delete(&self, id: &str, force: bool) -> Result<ExitStatus, EngineError> {
        let mut st = self.lock();
        let key = (id.to_string(), String::new());
        let t = st
            .tasks
            .get(&key)
            .ok_or_else(|| not_found(&format!("task {id} not found")))?;
        if t.status == TaskStatus::Running && !force {
            return Err(tonic::Status::failed_precondition("task is running").into());
        }
        let exit = t.exit_tx.borrow().clone().unwrap_or_default();
        st.tasks.remove(&key);
        Ok(exit)
    }

    async fn tasks_wait(&self, id: &str, exec_id: &str) -> Result<ExitStatus, EngineError> {
        let mut rx = {
            let st = self.lock();
            st.tasks
                .get(&(id.to_string(), exec_id.to_string()))
                .ok_or_else(|| not_found(&format!("task {id} not found")))?
                .exit_tx
                .subscribe()
        };
        loop {
            if let Some(exit) = rx.borrow_and_update().clone() {
                return Ok(exit);
            }
            if rx.changed().await.is_err() {
                return Err(tonic::Status::unavailable("task deleted while waiting").into());
            }
        }
    }

    async fn tasks_get(&self, id: &str) -> Result<Task, EngineError> {
        let st = self.lock();
        let t = st
            .tasks
            .get(&(id.to_string(), String::new()))
            .ok_or_else(|| not_found(&format!("task {id} not found")))?;
        let exit = t.exit_tx.borrow().clone();
        Ok(Task {
            container_id: id.to_string(),
            pid: t.pid,
            status: t.status.into(),
            exit,
            ..Task::default()
        })
    }

    async fn tasks_list(&self) -> Result<Vec<Task>, EngineError> {
        let st = self.lock();
        Ok(st
            .tasks
            .iter()
            .filter(|((_, exec_id), _)| exec_id.is_empty())
            .map(|((id, _), t)| Task {
                container_id: id.clone(),
                pid: t.pid,
                status: t.status.into(),
                exit: t.exit_tx.borrow().clone(),
                ..Task::default()
            })
            .collect())
    }

    async fn tasks_exec(
        &self,
        id: &str,
        exec_id: &str,
        _process: Vec<u8>,
        _stdin: bool,
    ) -> Result<(), EngineError> {
        if !self
            .lock()
            .tasks
            .contains_key(&(id.to_string(), String::new()))
        {
            return Err(
                tonic::Status::failed_precondition(format!("container {id} has no task")).into(),
            );
        }
        self.new_task(id, exec_id);
        Ok(())
    }

    async fn tasks_pids(&self, id: &str) -> Result<Vec<u32>, EngineError> {
        let st = self.lock();
        Ok(st
            .tasks
            .iter()
            .filter(|((c, _), _)| c == id)
            .map(|(_, t)| t.pid)
            .collect())
    }

    async fn tasks_pause(&self, id: &str) -> Result<(), EngineError> {
        self.set_status(id, TaskStatus::Running, TaskStatus::Paused)
    }

    async fn tasks_resume(&self, id: &str) -> Result<(), EngineError> {
        self.set_status(id, TaskStatus::Paused, TaskStatus::Running)
    }

    async fn tasks_update(&self, id: &str, resources: Vec<u8>) -> Result<(), EngineError> {
        let mut st = self.lock();
        if !st.tasks.contains_key(&(id.to_string(), String::new())) {
            return Err(not_found(&format!("task {id} not found")));
        }
        st.updates.push((id.to_string(), resources));
        Ok(())
    }

    async fn tasks_stats(&self, id: &str) -> Result<Vec<u8>, EngineError> {
        let st = self.lock();
        if !st.tasks.contains_key(&(id.to_string(), String::new())) {
            return Err(not_found(&format!("task {id} not found")));
        }
        Ok(st.stats.clone().unwrap_or_else(|| b"{}".to_vec()))
    }

    async fn snapshots_export(&self, key: &str) -> Result<ByteStream, EngineError> {
        let data = self
            .lock()
            .exports
            .get(key)
            .cloned()
            .ok_or_else(|| not_found(&format!("snapshot {key} not found")))?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            for chunk in data.chunks(7) {
                if tx.send(Ok(Bytes::copy_from_slice(chunk))).await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }

    async fn tasks_resize_pty(&self, _: &str, _: &str, _: u32, _: u32) -> Result<(), EngineError> {
        Ok(())
    }

    async fn tasks_attach(&self, id: &str, exec_id: &str) -> Result<AttachStreams, EngineError> {
        let program = {
            let st = self.lock();
            st.programs
                .get(&(id.to_string(), exec_id.to_string()))
                .or_else(|| st.programs.get(&("*".to_string(), exec_id.to_string())))
                .cloned()
                .unwrap_or_default()
        };
        let (out_tx, out_rx) = mpsc::channel(16);
        let (in_tx, mut in_rx) = mpsc::channel::<StdinMsg>(16);
        let exit_rx = self
            .lock()
            .tasks
            .get(&(id.to_string(), exec_id.to_string()))
            .map(|t| t.exit_tx.subscribe());
        let state = self.state.clone();
        let events = self.events.clone();
        let (cid, eid) = (id.to_string(), exec_id.to_string());
        let scripted = !program.output.is_empty() || program.echo_stdin;
        tokio::spawn(async move {
            for chunk in program.output {
                if out_tx.send(chunk).await.is_err() {
                    return;
                }
            }
            if program.echo_stdin {
                while let Some(msg) = in_rx.recv().await {
                    match msg {
                        StdinMsg::Data(data) => {
                            let chunk = OutputChunk {
                                stream: StdStream::Stdout,
                                data,
                            };
                            if out_tx.send(chunk).await.is_err() {
                                return;
                            }
                        }
                        StdinMsg::Close => break,
                    }
                }
            }
            if scripted {
                // A scripted process exits once its script is done, but only once it
                // has been started (docker attaches before it starts).
                for _ in 0..2000 {
                    let started = lock_state(&state)
                        .tasks
                        .get(&(cid.clone(), eid.clone()))
                        .is_some_and(|t| t.status == TaskStatus::Running);
                    if started {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                exit_task(&state, &events, &cid, &eid, program.exit_code);
            } else if let Some(mut rx) = exit_rx {
                // Without a script the "process" runs until it is made to exit.
                let _ = rx.wait_for(|e| e.is_some()).await;
            }
            drop(out_tx);
        });
        Ok(AttachStreams {
            output: out_rx,
            stdin: Some(in_tx),
        })
    }

    async fn snapshots_usage(&self, key: &str) -> Result<i64, EngineError> {
        Ok(self.lock().usage.get(key).copied().unwrap_or(0))
    }

    async fn snapshots_info(&self, key: &str) -> Result<SnapshotInfo, EngineError> {
        Ok(SnapshotInfo {
            key: key.to_string(),
            kind: "active".to_string(),
            lower_dir: format!("/fake/snapshots/{key}-lower"),
            upper_dir: format!("/fake/snapshots/{key}/fs"),
            work_dir: format!("/fake/snapshots/{key}/work"),
            merged_dir: format!("/fake/run/{key}/rootfs"),
            ..SnapshotInfo::default()
        })
    }

    async fn snapshots_changes(&self, key: &str) -> Result<Vec<Change>, EngineError> {
        Ok(self.lock().changes.get(key).cloned().unwrap_or_default())
    }
}
