//! The verbs that attach to a container or wait for it: `run`, `create`, `start`,
//! `attach`, `exec` and `wait`, with docker's exit codes (the container's; 125 when
//! the engine refuses `run`; 126/127 when the command cannot be run).

use anyhow::{bail, Context, Result};
use http::Method;
use serde_json::json;

use super::opts::create_body;
use super::{AttachArgs, Containers, CreateArgs, CreateFlags, ExecArgs, RunArgs, StartArgs};
use crate::cli::StatusError;
use crate::client::{enc, CliError, Client};
use crate::stream::{self, Ended, SignalProxy, Streams, WindowSize};

/// docker's `withHelp`: "berth: <error>\n\nRun 'berth run --help' for more information".
fn with_help(err: impl std::fmt::Display, verb: &str) -> String {
    format!("berth: {err}\n\nRun 'berth {verb} --help' for more information")
}

/// docker's `toStatusError` for `run`: 127 when the command was not found, 126 when
/// it could not be executed, else 125.
fn run_status(err: &anyhow::Error) -> StatusError {
    let msg = format!("{err:#}");
    let code = if msg.contains("executable file not found")
        || msg.contains("no such file or directory")
        || msg.contains("system cannot find the file specified")
    {
        127
    } else if msg.contains("permission denied") || msg.contains("is a directory") {
        126
    } else {
        125
    };
    StatusError {
        code,
        message: with_help(msg, "run"),
    }
}

/// Creates the container, pulling its image first when `--pull` says so or when it
/// is missing; writes `--cidfile`. Returns the id.
async fn create_container(c: &Client, o: &CreateFlags, detach: bool) -> Result<String> {
    let mut body = create_body(o)?;
    if detach {
        // Nothing is attached to a detached container.
        for k in ["AttachStdin", "AttachStdout", "AttachStderr", "StdinOnce"] {
            body[k] = json!(false);
        }
    }
    if let Some(path) = &o.cidfile {
        if std::path::Path::new(path).exists() {
            bail!("container ID file found, make sure the other container isn't running or delete {path}");
        }
    }
    let mut query = vec![];
    if let Some(n) = &o.name {
        query.push(format!("name={}", enc(n)));
    }
    if let Some(p) = &o.platform {
        query.push(format!("platform={}", enc(p)));
    }
    let path = if query.is_empty() {
        "/containers/create".to_string()
    } else {
        format!("/containers/create?{}", query.join("&"))
    };
    let pull_opts = crate::pull::PullOpts {
        quiet: o.quiet,
        platform: o.platform.clone(),
        to_stderr: true,
        all_tags: false,
    };
    if o.pull == "always" {
        crate::pull::pull(c, &o.image, &pull_opts).await?;
    }
    let v = match c.json(Method::POST, &path, Some(body.clone())).await {
        Err(CliError::Api { status, message })
            if status == 404 && message.starts_with("No such image") && o.pull == "missing" =>
        {
            eprintln!(
                "Unable to find image '{}' locally",
                crate::pull::with_tag(&o.image)
            );
            crate::pull::pull(c, &o.image, &pull_opts).await?;
            c.json(Method::POST, &path, Some(body)).await?
        }
        other => other?,
    };
    for w in v["Warnings"].as_array().into_iter().flatten() {
        eprintln!("WARNING: {}", w.as_str().unwrap_or_default());
    }
    let id = v["Id"]
        .as_str()
        .map(str::to_string)
        .context("berthd gave no container id")?;
    if let Some(path) = &o.cidfile {
        std::fs::write(path, &id)
            .with_context(|| format!("failed to write the container ID to the file {path}"))?;
    }
    Ok(id)
}

/// `POST /containers/{id}/wait?condition=...`: the exit code, or the engine's error.
pub async fn wait_code(c: &Client, id: &str, condition: &str) -> Result<i64> {
    let v = c
        .json(
            Method::POST,
            &format!("/containers/{}/wait?condition={condition}", enc(id)),
            None,
        )
        .await?;
    if let Some(e) = v["Error"]["Message"].as_str().filter(|m| !m.is_empty()) {
        bail!("{e}");
    }
    Ok(v["StatusCode"].as_i64().unwrap_or(0))
}

/// `create`: unlike `run`, docker's `create` reports the engine's error as it is
/// and exits 1.
pub async fn create(c: &Client, a: CreateArgs) -> Result<i32> {
    let id = create_container(c, &a.create, false).await?;
    println!("{id}");
    Ok(0)
}

pub async fn run(c: &Client, a: RunArgs) -> Result<i32> {
    let o = &a.create;
    if !a.detach {
        stream::check_tty(
            o.interactive || o.attach.iter().any(|x| x == "stdin"),
            o.tty,
        )?;
    }
    if a.detach && !o.attach.is_empty() {
        return Err(StatusError {
            code: 125,
            message: with_help(
                "conflicting options: cannot specify both --attach and --detach",
                "run",
            ),
        }
        .into());
    }
    let id = match create_container(c, o, a.detach).await {
        Ok(id) => id,
        Err(e) => return Err(run_status(&e).into()),
    };
    let _proxy = (a.sig_proxy && !a.detach).then(|| SignalProxy::start(c, &id));
    let attach_stdin = o.interactive || o.attach.iter().any(|x| x == "stdin");
    let attach_stdout = o.attach.is_empty() || o.attach.iter().any(|x| x == "stdout");
    let attach_stderr = o.attach.is_empty() || o.attach.iter().any(|x| x == "stderr");
    if a.detach {
        if let Err(e) = c
            .json(Method::POST, &format!("/containers/{id}/start"), None)
            .await
        {
            return Err(run_status(&e.into()).into());
        }
        println!("{id}");
        return Ok(0);
    }
    let (keys_text, keys) = stream::detach_keys(a.detach_keys.as_deref());
    let mut q = format!(
        "/containers/{id}/attach?stream=1&stdin={}&stdout={}&stderr={}",
        attach_stdin as u8, attach_stdout as u8, attach_stderr as u8
    );
    if !keys_text.is_empty() {
        q.push_str(&format!("&detachKeys={}", enc(&keys_text)));
    }
    let conn = c
        .hijack(&q, None)
        .await
        .map_err(|e| run_status(&e.into()))?;
    // Listening for the exit before the start, so no exit can be missed.
    let condition = if o.rm { "removed" } else { "next-exit" };
    let waiter = {
        let c = c.clone();
        let id = id.clone();
        tokio::spawn(async move { wait_code(&c, &id, condition).await })
    };
    if let Err(e) = c
        .json(Method::POST, &format!("/containers/{id}/start"), None)
        .await
    {
        if o.rm {
            // A failed start removes an --rm container: let that finish first, and
            // remove it ourselves if the engine does not (bounded: never hang here).
            let waited = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
            if waited.is_err() {
                let _ = c
                    .send(
                        Method::DELETE,
                        &format!("/containers/{id}?force=1&v=1"),
                        None,
                        false,
                    )
                    .await;
            }
        }
        return Err(run_status(&e.into()).into());
    }
    let _size = WindowSize::forward(c, format!("/containers/{id}"), o.tty);
    let ended = stream::attach(
        conn,
        Streams {
            tty: o.tty,
            stdin: attach_stdin,
            output: attach_stdout || attach_stderr,
            detach_keys: keys,
        },
    )
    .await?;
    if ended == Ended::Detached {
        return Ok(0);
    }
    let code = waiter.await.context("waiting for the container")??;
    Ok(code as i32)
}

pub async fn start(c: &Client, a: StartArgs) -> Result<i32> {
    if !(a.attach || a.interactive) {
        let mut failed = vec![];
        for n in &a.containers {
            match c
                .json(Method::POST, &format!("/containers/{}/start", enc(n)), None)
                .await
            {
                Ok(_) => println!("{n}"),
                Err(e) => {
                    eprintln!("{e}");
                    failed.push(n.clone());
                }
            }
        }
        if !failed.is_empty() {
            return Err(StatusError {
                code: 1,
                message: format!("Error: failed to start containers: {}", failed.join(", ")),
            }
            .into());
        }
        return Ok(0);
    }
    if a.containers.len() > 1 {
        bail!("you cannot start and attach multiple containers at once");
    }
    let v = c
        .json(
            Method::GET,
            &format!("/containers/{}/json", enc(&a.containers[0])),
            None,
        )
        .await?;
    let id = v["Id"].as_str().unwrap_or(&a.containers[0]).to_string();
    let tty = v["Config"]["Tty"].as_bool().unwrap_or(false);
    let stdin = a.interactive && v["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    let auto_remove = v["HostConfig"]["AutoRemove"].as_bool().unwrap_or(false);
    stream::check_tty(stdin, tty)?;
    let _proxy = (!tty).then(|| SignalProxy::start(c, &id));
    let (keys_text, keys) = stream::detach_keys(a.detach_keys.as_deref());
    let mut q = format!(
        "/containers/{id}/attach?stream=1&stdout=1&stderr=1&stdin={}",
        stdin as u8
    );
    if !keys_text.is_empty() {
        q.push_str(&format!("&detachKeys={}", enc(&keys_text)));
    }
    let conn = c.hijack(&q, None).await?;
    let condition = if auto_remove { "removed" } else { "next-exit" };
    let waiter = {
        let c = c.clone();
        let id = id.clone();
        tokio::spawn(async move { wait_code(&c, &id, condition).await })
    };
    c.json(Method::POST, &format!("/containers/{id}/start"), None)
        .await?;
    let _size = WindowSize::forward(c, format!("/containers/{id}"), tty);
    let ended = stream::attach(
        conn,
        Streams {
            tty,
            stdin,
            output: true,
            detach_keys: keys,
        },
    )
    .await?;
    if ended == Ended::Detached {
        return Ok(0);
    }
    Ok(waiter.await.context("waiting for the container")?? as i32)
}

pub async fn attach(c: &Client, a: AttachArgs) -> Result<i32> {
    let v = c
        .json(
            Method::GET,
            &format!("/containers/{}/json", enc(&a.container)),
            None,
        )
        .await?;
    let id = v["Id"].as_str().unwrap_or(&a.container).to_string();
    if v["State"]["Running"] != json!(true) {
        bail!("You cannot attach to a stopped container, start it first");
    }
    if v["State"]["Paused"] == json!(true) {
        bail!("You cannot attach to a paused container, unpause it first");
    }
    if v["State"]["Restarting"] == json!(true) {
        bail!("You cannot attach to a restarting container, wait until it is running");
    }
    // Waiting from before the attach, so the exit is not missed.
    let waiter = {
        let c = c.clone();
        let id = id.clone();
        tokio::spawn(async move { wait_code(&c, &id, "not-running").await })
    };
    let tty = v["Config"]["Tty"].as_bool().unwrap_or(false);
    let stdin = !a.no_stdin && v["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    stream::check_tty(!a.no_stdin, tty)?;
    let _proxy = (a.sig_proxy && !tty).then(|| SignalProxy::start(c, &id));
    let (keys_text, keys) = stream::detach_keys(a.detach_keys.as_deref());
    let mut q = format!(
        "/containers/{id}/attach?stream=1&stdout=1&stderr=1&stdin={}",
        stdin as u8
    );
    if !keys_text.is_empty() {
        q.push_str(&format!("&detachKeys={}", enc(&keys_text)));
    }
    let conn = c.hijack(&q, None).await?;
    let _size = WindowSize::forward(c, format!("/containers/{id}"), tty);
    let ended = stream::attach(
        conn,
        Streams {
            tty,
            stdin,
            output: true,
            detach_keys: keys,
        },
    )
    .await?;
    if ended == Ended::Detached {
        // What docker's attach says (and exits 1 with) on the detach sequence.
        return Err(StatusError {
            code: 1,
            message: "read escape sequence".into(),
        }
        .into());
    }
    Ok(waiter.await.context("waiting for the container")?? as i32)
}

pub async fn exec(c: &Client, a: ExecArgs) -> Result<i32> {
    let mut env = vec![];
    for f in &a.env_file {
        for line in std::fs::read_to_string(f)
            .with_context(|| format!("open {f}: no such file or directory"))?
            .lines()
        {
            let l = line.trim_start();
            if !l.is_empty() && !l.starts_with('#') {
                env.push(l.to_string());
            }
        }
    }
    env.extend(a.env.iter().cloned());
    if !a.detach {
        stream::check_tty(a.interactive, a.tty)?;
    }
    let (keys_text, keys) = stream::detach_keys(a.detach_keys.as_deref());
    let mut body = json!({
        "AttachStdin": a.interactive && !a.detach,
        "AttachStdout": !a.detach,
        "AttachStderr": !a.detach,
        "Tty": a.tty,
        "Env": env,
        "Cmd": a.command,
        "Privileged": a.privileged,
    });
    if !keys_text.is_empty() {
        body["DetachKeys"] = json!(keys_text);
    }
    if let Some(u) = &a.user {
        body["User"] = json!(u);
    }
    if let Some(w) = &a.workdir {
        body["WorkingDir"] = json!(w);
    }
    let v = c
        .json(
            Method::POST,
            &format!("/containers/{}/exec", enc(&a.container)),
            Some(body),
        )
        .await?;
    let eid = v["Id"]
        .as_str()
        .context("berthd gave no exec id")?
        .to_string();
    let start = json!({"Detach": a.detach, "Tty": a.tty});
    if a.detach {
        c.json(Method::POST, &format!("/exec/{eid}/start"), Some(start))
            .await?;
        return Ok(0);
    }
    let conn = c.hijack(&format!("/exec/{eid}/start"), Some(start)).await?;
    let _size = WindowSize::forward(c, format!("/exec/{eid}"), a.tty);
    let ended = stream::attach(
        conn,
        Streams {
            tty: a.tty,
            stdin: a.interactive,
            output: true,
            detach_keys: keys,
        },
    )
    .await?;
    if ended == Ended::Detached {
        return Ok(0);
    }
    // The output has ended; the exit code follows at once, or soon after when the
    // process closed its output before exiting (bounded: about 40 s).
    let mut pause = std::time::Duration::from_millis(5);
    for _ in 0..200 {
        let i = c
            .json(Method::GET, &format!("/exec/{eid}/json"), None)
            .await?;
        if i["Running"] != json!(true) {
            let code = i["ExitCode"]
                .as_i64()
                .with_context(|| format!("exec {eid} ended without an exit code"))?;
            return Ok(i32::try_from(code).unwrap_or(-1));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(200));
    }
    bail!("exec {eid}: its output ended but the process is still running; its exit code is unknown")
}

/// `wait`: prints each exit code; exits 0 (docker's), 1 if any wait failed.
pub async fn wait(c: &Client, a: Containers) -> Result<i32> {
    let mut failed = false;
    for n in &a.containers {
        match wait_code(c, n, "not-running").await {
            Ok(code) => println!("{code}"),
            Err(e) => {
                eprintln!("{e:#}");
                failed = true;
            }
        }
    }
    Ok(failed as i32)
}
