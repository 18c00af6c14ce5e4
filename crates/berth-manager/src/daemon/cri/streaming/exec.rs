//! Exec and attach over SPDY, as kubelet's `remotecommand` server speaks them
//! (`v4.channel.k8s.io`, `v3.` and `v2.`): the client opens an `error` stream,
//! then `stdin`, `stdout`, `stderr` as its request asked (no `stderr` with a
//! terminal) and, from v3 on with a terminal, `resize`, whose data is a JSON
//! `{"Width":..,"Height":..}` per line. Output goes to `stdout`/`stderr`; at the
//! end our halves are closed and the `error` stream says how it went: in v4 a
//! `metav1.Status` (`Success`, or `Failure` with reason `NonZeroExitCode` and an
//! `ExitCode` cause for an exit status other than 0); before v4 a text, only on
//! failure.
//!
//! Exec adds a process to the container's task through the manager (as berthd's
//! exec does), attaches to its stdio before starting it, waits for its exit and
//! forgets it. Attach joins the init's stdio; with `stdin_once` the container's
//! stdin is closed when the client's ends.

use std::sync::Arc;
use std::time::Duration;

use berth_cri_api::runtime::v1 as cri;
use berth_shim_contract::pb as shimpb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt as _;

use super::session::{Session, Stream, StreamWriter};
use super::{Cri, LINGER, STREAM_CREATION_TIMEOUT};
use crate::daemon::core::Daemon;

/// After an exec'd process has exited, how long its last output may take to
/// arrive (a child that kept its stdout open gets cut off here).
const OUTPUT_GRACE: Duration = Duration::from_secs(5);
/// Stdin chunks queued towards the shim.
const STDIN_QUEUE: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Version {
    V2,
    V3,
    V4,
}

fn version(protocol: &str) -> Version {
    match protocol {
        "v4.channel.k8s.io" => Version::V4,
        "v3.channel.k8s.io" => Version::V3,
        _ => Version::V2,
    }
}

/// The streams a request needs.
#[derive(Debug, Clone, Copy)]
struct Want {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    resize: bool,
}

#[derive(Debug, Default)]
struct Streams {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
}

impl Streams {
    fn complete(&self, w: Want) -> bool {
        self.error.is_some()
            && (!w.stdin || self.stdin.is_some())
            && (!w.stdout || self.stdout.is_some())
            && (!w.stderr || self.stderr.is_some())
            && (!w.resize || self.resize.is_some())
    }
}

/// The streams of `want`, as the client opens them; `None` when it does not in
/// time or goes away. A stream of a type not asked for, or twice, is reset.
async fn collect(session: &mut Session, want: Want) -> Option<Streams> {
    let mut got = Streams::default();
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    while !got.complete(want) {
        let s = match tokio::time::timeout_at(deadline, session.streams.recv()).await {
            Ok(Some(s)) => s,
            Ok(None) => return None,
            Err(_) => {
                tracing::debug!("CRI exec/attach: the client did not open its streams in time");
                return None;
            }
        };
        let kind = s.header("streamtype").unwrap_or_default().to_string();
        let slot = match kind.as_str() {
            "error" => Some(&mut got.error),
            "stdin" if want.stdin => Some(&mut got.stdin),
            "stdout" if want.stdout => Some(&mut got.stdout),
            "stderr" if want.stderr => Some(&mut got.stderr),
            "resize" if want.resize => Some(&mut got.resize),
            _ => None,
        };
        match slot {
            Some(slot) if slot.is_none() => *slot = Some(s),
            _ => {
                tracing::debug!(kind, "CRI exec/attach: an unexpected stream is refused");
                s.writer.reset(super::spdy::RST_REFUSED_STREAM).await;
            }
        }
    }
    Some(got)
}

/// How a request ended, for the error stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// An exec'd process's exit status.
    Exited(u32),
    /// An attach that ended with the output.
    Done,
    Failed(String),
}

/// What the error stream carries for `o` in `v` (empty: nothing).
fn error_message(v: Version, o: &Outcome) -> Vec<u8> {
    let nonzero = |code: u32| format!("command terminated with non-zero exit code {code}");
    if v < Version::V4 {
        return match o {
            Outcome::Exited(0) | Outcome::Done => Vec::new(),
            Outcome::Exited(code) => nonzero(*code).into_bytes(),
            Outcome::Failed(m) => m.clone().into_bytes(),
        };
    }
    let status = match o {
        Outcome::Exited(0) | Outcome::Done => serde_json::json!({
            "metadata": {},
            "status": "Success",
        }),
        Outcome::Exited(code) => {
            // An exit status is a byte; kubelet's client refuses more.
            let code = (*code).min(255);
            serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": nonzero(code),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            })
        }
        Outcome::Failed(m) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": m,
            "reason": "InternalError",
            "code": 500,
        }),
    };
    status.to_string().into_bytes()
}

/// Close our halves and report the outcome.
async fn finish(streams: Streams, v: Version, outcome: &Outcome) {
    for s in [
        &streams.stdout,
        &streams.stderr,
        &streams.stdin,
        &streams.resize,
    ]
    .into_iter()
    .flatten()
    {
        let _ = s.writer.finish().await;
    }
    if let Some(e) = &streams.error {
        let msg = error_message(v, outcome);
        if !msg.is_empty() {
            let _ = e.writer.write(&msg).await;
        }
        let _ = e.writer.finish().await;
    }
}

/// The exec'd process: the container's own process (user, environment, working
/// directory, capabilities...) with the request's command, as containerd does.
fn exec_process(spec: &str, cmd: &[String], tty: bool) -> Result<Vec<u8>, String> {
    let v: serde_json::Value =
        serde_json::from_str(spec).map_err(|e| format!("the container's spec: {e}"))?;
    let mut p = v
        .get("process")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    let obj = p
        .as_object_mut()
        .ok_or("the container's spec has no process object")?;
    obj.insert("args".to_string(), serde_json::json!(cmd));
    obj.insert("terminal".to_string(), serde_json::json!(tty));
    obj.remove("consoleSize");
    obj.entry("cwd").or_insert_with(|| serde_json::json!("/"));
    obj.entry("user")
        .or_insert_with(|| serde_json::json!({"uid": 0, "gid": 0}));
    serde_json::to_vec(&p).map_err(|e| e.to_string())
}

/// A process id for an exec: unique, and plain enough for the shim.
fn exec_id() -> String {
    let t = super::token().unwrap_or_else(|_| {
        format!(
            "{:x}",
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        )
    });
    format!("cri-{}", &t[..t.len().min(16)])
}

/// Terminal sizes from the resize stream, to the process's pty.
async fn copy_resizes(mut s: Stream, d: Arc<Daemon>, id: String, exec_id: String) {
    #[derive(serde::Deserialize)]
    struct Size {
        #[serde(rename = "Width", alias = "width")]
        width: u16,
        #[serde(rename = "Height", alias = "height")]
        height: u16,
    }
    let mut buf: Vec<u8> = Vec::new();
    while let Some(b) = s.rx.recv().await {
        buf.extend_from_slice(&b);
        while let Some(nl) = buf.iter().position(|c| *c == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            match serde_json::from_slice::<Size>(&line) {
                Ok(sz) if sz.width > 0 && sz.height > 0 => {
                    if let Err(e) = d
                        .resize_pty(&id, &exec_id, u32::from(sz.width), u32::from(sz.height))
                        .await
                    {
                        tracing::debug!(id, exec_id, "CRI: resizing the terminal: {e}");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(id, "CRI: a resize that is not JSON: {e}"),
            }
        }
        // No line is this long: the client is not speaking the protocol.
        if buf.len() > 4096 {
            return;
        }
    }
}

/// The client's stdin to the process; at its end, the process's stdin is closed
/// when `close_at_end`.
async fn copy_stdin(
    mut s: Stream,
    tx: mpsc::Sender<shimpb::AttachRequest>,
    exec_id: String,
    close_at_end: bool,
) {
    while let Some(b) = s.rx.recv().await {
        let req = shimpb::AttachRequest {
            exec_id: exec_id.clone(),
            stdin: b.to_vec(),
            close_stdin: false,
        };
        if tx.send(req).await.is_err() {
            return;
        }
    }
    if close_at_end {
        let _ = tx
            .send(shimpb::AttachRequest {
                exec_id,
                stdin: Vec::new(),
                close_stdin: true,
            })
            .await;
    }
}

/// The process's output to the client's streams, until it ends. Output to a stream
/// the client did not ask for is dropped.
async fn copy_output(
    mut output: berth_shim_contract::AttachStream,
    stdout: Option<StreamWriter>,
    stderr: Option<StreamWriter>,
) {
    while let Some(item) = output.next().await {
        let m = match item {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("CRI: the process's output: {}", e.message());
                return;
            }
        };
        let to = if m.stream == shimpb::Stream::Stderr as i32 {
            &stderr
        } else {
            &stdout
        };
        if let Some(w) = to {
            if w.write(&m.data).await.is_err() {
                return;
            }
        }
    }
}

/// How stdin is handled for one process.
#[derive(Debug, Clone, Copy)]
struct StdinMode {
    /// The process has a stdin to write to.
    open: bool,
    /// Close it when the client's stdin ends.
    close_at_end: bool,
}

/// Attach to process `exec_id` of container `id`, start it when `start`, and copy
/// until the output ends; the join handle of the output copy.
async fn attach_and_copy(
    cri: &Cri,
    id: &str,
    exec_id: &str,
    streams: &mut Streams,
    stdin: StdinMode,
    start: bool,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let task = cri.d.task(id).map_err(|e| e.to_string())?;
    let mut client = task.client().await.map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel(STDIN_QUEUE);
    // The first request names the process; the shim subscribes to its output
    // when it reads it, before the start below reaches it.
    tx.try_send(shimpb::AttachRequest {
        exec_id: exec_id.to_string(),
        stdin: Vec::new(),
        close_stdin: false,
    })
    .map_err(|e| format!("queueing the attach request: {e}"))?;
    let output = client
        .attach(ReceiverStream::new(rx))
        .await
        .map_err(|s| format!("attaching to the process: {}", s.message()))?
        .into_inner();
    if start {
        cri.d
            .start_task(id, exec_id)
            .await
            .map_err(|e| e.to_string())?;
    }
    if let Some(s) = streams.stdin.take() {
        if stdin.open {
            tokio::spawn(copy_stdin(s, tx, exec_id.to_string(), stdin.close_at_end));
        } else {
            // Nothing to write to: what the client sends is read and dropped.
            tokio::spawn(async move {
                let mut s = s;
                while s.rx.recv().await.is_some() {}
            });
        }
    }
    if let Some(s) = streams.resize.take() {
        tokio::spawn(copy_resizes(
            s,
            Arc::clone(&cri.d),
            id.to_string(),
            exec_id.to_string(),
        ));
    }
    let stdout = streams.stdout.as_ref().map(|s| s.writer.clone());
    let stderr = streams.stderr.as_ref().map(|s| s.writer.clone());
    Ok(tokio::spawn(copy_output(output, stdout, stderr)))
}

async fn run_exec(
    cri: &Cri,
    r: &cri::ExecRequest,
    streams: &mut Streams,
    session: &Session,
) -> Outcome {
    let id = r.container_id.as_str();
    let rec = match cri.d.container(id).await {
        Ok(rec) => rec,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let process = match exec_process(&rec.spec, &r.cmd, r.tty) {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(e),
    };
    let exec_id = exec_id();
    if let Err(e) = cri.d.exec(id, &exec_id, process, r.stdin).await {
        return Outcome::Failed(format!("exec in container {id}: {e}"));
    }
    let stdin = StdinMode {
        open: r.stdin,
        close_at_end: true,
    };
    let outcome = match attach_and_copy(cri, id, &exec_id, streams, stdin, true).await {
        Err(e) => Outcome::Failed(format!("exec in container {id}: {e}")),
        Ok(mut output) => {
            let exit = tokio::select! {
                e = cri.d.wait_task(id, &exec_id) => e,
                () = session.client_gone() => {
                    // Nobody is there to see it: the process goes, as with
                    // kubelet's runtimes.
                    tracing::debug!(id, exec_id, "CRI exec: the client went away; killing the process");
                    let _ = cri.d.kill_task(id, &exec_id, 9, false).await;
                    cri.d.wait_task(id, &exec_id).await
                }
            };
            if tokio::time::timeout(OUTPUT_GRACE, &mut output)
                .await
                .is_err()
            {
                output.abort();
            }
            match exit {
                Ok(e) => Outcome::Exited(e.exit_status),
                Err(e) => Outcome::Failed(format!("waiting for the process: {e}")),
            }
        }
    };
    if let Err(e) = cri.d.delete_process(id, &exec_id).await {
        tracing::debug!(id, exec_id, "CRI exec: forgetting the process: {e}");
    }
    outcome
}

/// Serve an exec request on its upgraded connection.
pub async fn serve_exec(cri: &Cri, r: cri::ExecRequest, protocol: &str, mut session: Session) {
    let v = version(protocol);
    let want = Want {
        stdin: r.stdin,
        stdout: r.stdout,
        stderr: r.stderr && !r.tty,
        resize: r.tty && v >= Version::V3,
    };
    if let Some(mut streams) = collect(&mut session, want).await {
        let outcome = run_exec(cri, &r, &mut streams, &session).await;
        tracing::debug!(id = %r.container_id, ?outcome, "CRI exec done");
        finish(streams, v, &outcome).await;
    }
    session.end(LINGER).await;
}

/// Serve an attach request on its upgraded connection.
pub async fn serve_attach(cri: &Cri, r: cri::AttachRequest, protocol: &str, mut session: Session) {
    let v = version(protocol);
    let want = Want {
        stdin: r.stdin,
        stdout: r.stdout,
        stderr: r.stderr && !r.tty,
        resize: r.tty && v >= Version::V3,
    };
    if let Some(mut streams) = collect(&mut session, want).await {
        let id = r.container_id.as_str();
        let has_stdin = cri.d.task(id).map(|t| t.record().stdin).unwrap_or(false);
        let stdin = StdinMode {
            open: has_stdin,
            close_at_end: has_stdin && cri.stdin_once(id).await,
        };
        let outcome = match attach_and_copy(cri, id, "", &mut streams, stdin, false).await {
            Err(e) => Outcome::Failed(format!("attach to container {id}: {e}")),
            Ok(mut output) => {
                tokio::select! {
                    _ = &mut output => {}
                    () = session.client_gone() => output.abort(),
                }
                Outcome::Done
            }
        };
        finish(streams, v, &outcome).await;
    }
    session.end(LINGER).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(v: Version, o: Outcome) -> serde_json::Value {
        serde_json::from_slice(&error_message(v, &o)).unwrap()
    }

    #[test]
    fn the_error_stream_says_what_kubelet_says() {
        assert_eq!(status(Version::V4, Outcome::Exited(0))["status"], "Success");
        assert_eq!(status(Version::V4, Outcome::Done)["status"], "Success");
        let s = status(Version::V4, Outcome::Exited(3));
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        // Exit statuses are bytes to the client.
        let s = status(Version::V4, Outcome::Exited(300));
        assert_eq!(s["details"]["causes"][0]["message"], "255");
        let s = status(Version::V4, Outcome::Failed("no such file".into()));
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["message"], "no such file");
        assert_ne!(s["reason"], "NonZeroExitCode");
        // Before v4: text, and nothing for success.
        assert!(error_message(Version::V3, &Outcome::Exited(0)).is_empty());
        assert!(!error_message(Version::V2, &Outcome::Exited(1)).is_empty());
        assert_eq!(
            error_message(Version::V2, &Outcome::Failed("x".into())),
            b"x"
        );
    }

    #[test]
    fn an_exec_runs_as_the_container_does() {
        let spec = r#"{"process":{"args":["sleep","1d"],"env":["A=1"],"cwd":"/w",
            "user":{"uid":5,"gid":6},"terminal":false,"consoleSize":{"height":1,"width":2}}}"#;
        let p: serde_json::Value = serde_json::from_slice(
            &exec_process(spec, &["sh".into(), "-c".into(), "id".into()], true).unwrap(),
        )
        .unwrap();
        assert_eq!(p["args"], serde_json::json!(["sh", "-c", "id"]));
        assert_eq!(p["env"], serde_json::json!(["A=1"]));
        assert_eq!(p["cwd"], "/w");
        assert_eq!(p["user"]["uid"], 5);
        assert_eq!(p["terminal"], true);
        assert!(p.get("consoleSize").is_none());
        let p: serde_json::Value =
            serde_json::from_slice(&exec_process("{}", &["true".into()], false).unwrap()).unwrap();
        assert_eq!(p["cwd"], "/");
        assert_eq!(p["user"]["uid"], 0);
        assert!(exec_process("[", &["true".into()], false).is_err());
        assert!(exec_process(r#"{"process":1}"#, &["true".into()], false).is_err());
    }

    #[test]
    fn exec_ids_are_plain_and_distinct() {
        let (a, b) = (exec_id(), exec_id());
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'));
        assert_eq!(version("v4.channel.k8s.io"), Version::V4);
        assert_eq!(version("v2.channel.k8s.io"), Version::V2);
    }
}
