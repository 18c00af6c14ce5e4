//! `login`, `logout` and `search`. Credentials go to the docker configuration file
//! (or its credential helper) exactly as the docker CLI keeps them, so `pull` and
//! `push` (and the docker CLI) find them; the engine checks them with `POST /auth`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context, Result};
use clap::Args;
use http::Method;
use serde_json::json;

use crate::cli::StatusError;
use crate::client::{enc, filters_query, CliError, Client};
use crate::config::{hostname, AuthConfig, ConfigFile, DOCKER_HUB};
use crate::format::{self, units};
use crate::template::{Map, Value};

#[derive(Debug, Args, Clone)]
pub struct LoginArgs {
    /// Password or Personal Access Token (PAT)
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Take the Password or Personal Access Token (PAT) from stdin
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    /// Username
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct LogoutArgs {
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct SearchArgs {
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Pretty-print search using a Go template
    #[arg(long)]
    pub format: Option<String>,
    /// Max number of search results
    #[arg(long)]
    pub limit: Option<u32>,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    #[arg(value_name = "TERM")]
    pub term: String,
}

fn prompt(label: &str, hidden: bool) -> Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("Error: Cannot perform an interactive login from a non TTY device");
    }
    print!("{label}");
    std::io::stdout().flush().ok();
    let _echo = hidden.then(NoEcho::enable);
    let mut s = String::new();
    std::io::stdin().lock().read_line(&mut s)?;
    if hidden {
        println!();
    }
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

/// Turns terminal echo off while alive (for the password prompt).
struct NoEcho(Option<nix::sys::termios::Termios>);

impl NoEcho {
    fn enable() -> NoEcho {
        use nix::sys::termios;
        let Ok(orig) = termios::tcgetattr(std::io::stdin()) else {
            return NoEcho(None);
        };
        let mut t = orig.clone();
        t.local_flags.remove(termios::LocalFlags::ECHO);
        if termios::tcsetattr(std::io::stdin(), termios::SetArg::TCSANOW, &t).is_err() {
            return NoEcho(None);
        }
        NoEcho(Some(orig))
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(o) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                o,
            );
        }
    }
}

pub async fn login(c: &Client, a: LoginArgs) -> Result<i32> {
    if a.password.is_some() && a.password_stdin {
        bail!("--password and --password-stdin are mutually exclusive");
    }
    if a.password_stdin && a.username.is_none() {
        bail!("Must provide --username with --password-stdin");
    }
    let server = match a.server.as_deref() {
        None | Some("") | Some("docker.io") => DOCKER_HUB.to_string(),
        Some(s) => s.to_string(),
    };
    let mut password = a.password.clone();
    if password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    if a.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut s)
            .context("reading the password from stdin")?;
        password = Some(s.trim_end_matches(['\r', '\n']).to_string());
    }
    let username = match &a.username {
        Some(u) => u.clone(),
        None => prompt("Username: ", false)?,
    };
    if username.is_empty() {
        bail!("Error: Non-null Username Required");
    }
    let password = match password {
        Some(p) => p,
        None => prompt("Password: ", true)?,
    };
    if password.is_empty() {
        bail!("Error: Password Required");
    }
    let mut auth = AuthConfig {
        username,
        password,
        server: server.clone(),
        identity_token: String::new(),
    };
    let body =
        json!({"username": auth.username, "password": auth.password, "serveraddress": server});
    match c.json(Method::POST, "/auth", Some(body)).await {
        Ok(v) => {
            if let Some(t) = v["IdentityToken"].as_str().filter(|t| !t.is_empty()) {
                auth.identity_token = t.to_string();
                auth.password.clear();
            }
        }
        // An engine without /auth: keep the credentials; the next pull or push uses them.
        Err(CliError::Api { status, message })
            if status == 404 && message.contains("page not found") =>
        {
            eprintln!(
                "WARNING! berthd cannot check credentials (it does not serve POST /auth): they are stored unchecked."
            );
        }
        Err(e) => return Err(e.into()),
    }
    let mut cfg = ConfigFile::load()?;
    cfg.store_auth(&auth)?;
    if !std::fs::read_to_string(cfg.path())
        .unwrap_or_default()
        .contains("credsStore")
    {
        eprintln!(
            "WARNING! Your credentials are stored unencrypted in '{}'.\nConfigure a credential helper to remove this warning. See\nhttps://docs.docker.com/go/credential-store/\n",
            cfg.path().display()
        );
    }
    println!("Login Succeeded");
    Ok(0)
}

pub async fn logout(a: LogoutArgs) -> Result<i32> {
    let server = match a.server.as_deref() {
        None | Some("") | Some("docker.io") => DOCKER_HUB.to_string(),
        Some(s) => s.to_string(),
    };
    let shown = if server == DOCKER_HUB {
        server.clone()
    } else {
        hostname(&server)
    };
    let mut cfg = ConfigFile::load()?;
    println!("Removing login credentials for {shown}");
    if let Err(e) = cfg.erase_auth(&server) {
        eprintln!("WARNING: could not erase credentials:\n{server}: {e:#}");
    }
    Ok(0)
}

pub async fn search(c: &Client, a: SearchArgs) -> Result<i32> {
    let mut q = format!("term={}", enc(&a.term));
    if let Some(l) = a.limit {
        q.push_str(&format!("&limit={l}"));
    }
    let f = filters_query(&a.filter)?;
    if !f.is_empty() {
        q.push_str(&format!("&filters={f}"));
    }
    let auth = crate::pull::registry_auth(&a.term)?;
    let resp = c
        .send_bytes(
            Method::GET,
            &format!("/images/search?{q}"),
            bytes::Bytes::new(),
            &[("X-Registry-Auth", &auth)],
        )
        .await;
    let resp = match resp {
        Err(CliError::Api { status, message })
            if status == 404 && message.contains("page not found") =>
        {
            return Err(StatusError {
                code: 1,
                message: "Error: this berthd does not offer image search (GET /images/search)"
                    .into(),
            }
            .into())
        }
        other => other?,
    };
    use http_body_util::BodyExt;
    let bytes = resp.into_body().collect().await?.to_bytes();
    let results: serde_json::Value = serde_json::from_slice(&bytes)?;
    let rows: Vec<Value> = results
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let mut m = Map::structure("*formatter.searchContext");
            let desc = r["description"].as_str().unwrap_or("").replace('\n', " ");
            m.insert(
                "Description",
                if a.no_trunc {
                    desc
                } else {
                    units::ellipsis(&desc, 45)
                },
            );
            m.insert(
                "IsAutomated",
                if r["is_automated"].as_bool().unwrap_or(false) {
                    "[OK]"
                } else {
                    ""
                },
            );
            m.insert(
                "IsOfficial",
                if r["is_official"].as_bool().unwrap_or(false) {
                    "[OK]"
                } else {
                    ""
                },
            );
            m.insert("Name", r["name"].as_str().unwrap_or(""));
            m.insert(
                "StarCount",
                r["star_count"].as_i64().unwrap_or(0).to_string(),
            );
            Value::Map(m)
        })
        .collect();
    let fmt = match a.format.as_deref() {
        None | Some("") | Some("table") => {
            "table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}".to_string()
        }
        Some(f) => f.to_string(),
    };
    let header = format::header(&[
        ("Name", "NAME"),
        ("Description", "DESCRIPTION"),
        ("StarCount", "STARS"),
        ("IsOfficial", "OFFICIAL"),
        ("IsAutomated", "AUTOMATED"),
    ]);
    print!("{}", format::write(&fmt, &header, &rows)?);
    Ok(0)
}
