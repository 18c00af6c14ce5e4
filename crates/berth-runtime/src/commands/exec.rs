//! `berth-runtime exec [-t --console-socket S] [-d] [--pid-file P] [--cwd D]
//! [-e K=V]... [-u uid[:gid]] [-g gid]... [--cap CAP]... [--no-new-privs]
//! [-p process.json] ID [cmd...]`: run a new process in a running container.
//!
//! The process is the `-p` file as given, or the container's own
//! `config.process` with the command line's changes (runc's rules): args from the
//! command, env appended (replacing by key), cwd, user and additional gids
//! replaced, capabilities added to the bounding, effective and permitted sets
//! (and ambient when the inheritable set is not empty), a terminal with -t.
//! AppArmor and SELinux flags are accepted and ignored.

use std::path::PathBuf;

use anyhow::Context;
use oci_spec::runtime::{Capability, LinuxCapabilities, Process};

use crate::cli::{Cli, ExecArgs};
use crate::process::exec::ExecOptions;
use crate::process::ProcessError;
use crate::{capabilities, identity, logger, Container};

/// runc's exit code for an exec that failed in the runtime (not in the process).
pub const EXEC_FAILED: i32 = 255;

pub fn run(cli: &Cli, args: &ExecArgs) -> anyhow::Result<i32> {
    // As runc: the process's own exit code, or 255 for anything that kept it
    // from running (a missing program included), with "exec failed: ...".
    match exec(cli, args) {
        Ok(code) => Ok(code),
        Err(e) => {
            logger::error(&format!("exec failed: {}", crate::logger::one_line(&*e)));
            Ok(EXEC_FAILED)
        }
    }
}

fn exec(cli: &Cli, args: &ExecArgs) -> anyhow::Result<i32> {
    let c = Container::load(&cli.root, &args.id)?;
    let process = build_process(&c, args)?;
    let opts = ExecOptions {
        root: cli.root.clone(),
        id: args.id.clone(),
        process,
        console_socket: args.console_socket.clone(),
        detach: args.detach,
        pid_file: args.pid_file.clone(),
        preserve_fds: args.preserve_fds,
        ignore_paused: args.ignore_paused,
        cgroups: args.cgroup.clone(),
    };
    Ok(c.exec(opts)?)
}

fn build_process(c: &Container, args: &ExecArgs) -> anyhow::Result<Process> {
    if let Some(path) = &args.process {
        let data = std::fs::read(path).map_err(|source| ProcessError::ProcessJson {
            path: path.clone(),
            source,
        })?;
        let parse_err = |source| ProcessError::ProcessJsonParse {
            path: path.clone(),
            source,
        };
        let mut raw: serde_json::Value = serde_json::from_slice(&data).map_err(parse_err)?;
        // runc reads a process without a user as uid 0, gid 0 (Go's zero
        // value); the spec's type insists on the field.
        if let Some(obj) = raw.as_object_mut() {
            obj.entry("user")
                .or_insert_with(|| serde_json::json!({"uid": 0, "gid": 0}));
        }
        let p: Process = serde_json::from_value(raw).map_err(parse_err)?;
        return Ok(p);
    }
    if args.command.is_empty() {
        anyhow::bail!("exec needs a command to run (or --process process.json)");
    }
    let mut p = c.state().config.process().clone().unwrap_or_default();
    p.set_args(Some(args.command.clone()));
    p.set_terminal(Some(args.tty));
    p.set_console_size(None);
    if let Some(cwd) = &args.cwd {
        p.set_cwd(PathBuf::from(cwd));
    }
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &args.env {
        let Some((key, _)) = kv.split_once('=') else {
            return Err(ProcessError::BadEnv(kv.clone()).into());
        };
        env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(u) = &args.user {
        identity::apply_user_override(p.user_mut(), u)?;
    }
    if !args.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(args.additional_gids.clone()));
    }
    if args.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !args.cap.is_empty() {
        let mut caps = p
            .capabilities()
            .clone()
            .unwrap_or_else(crate::process::attrs::no_capabilities);
        for name in &args.cap {
            add_cap(&mut caps, oci_cap(name)?);
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

/// A capability name as runc accepts it (`SYS_ADMIN`, `cap_sys_admin`, ...).
fn oci_cap(name: &str) -> anyhow::Result<Capability> {
    let kernel = capabilities::parse_cap(name)?;
    kernel
        .to_string()
        .parse::<Capability>()
        .ok()
        .with_context(|| format!("capability {name} is not known to the runtime spec"))
}

fn add_cap(caps: &mut LinuxCapabilities, cap: Capability) {
    let add = |set: Option<std::collections::HashSet<Capability>>| {
        let mut s = set.unwrap_or_default();
        s.insert(cap);
        Some(s)
    };
    caps.set_bounding(add(caps.bounding().clone()));
    caps.set_effective(add(caps.effective().clone()));
    caps.set_permitted(add(caps.permitted().clone()));
    // Ambient capabilities need the inheritable bit; runc adds them only when
    // the spec already has inheritable ones.
    if caps.inheritable().as_ref().is_some_and(|i| !i.is_empty()) {
        caps.set_ambient(add(caps.ambient().clone()));
    }
}
