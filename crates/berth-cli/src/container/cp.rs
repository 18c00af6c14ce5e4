//! `cp` both ways, through `GET`/`HEAD`/`PUT /containers/{id}/archive`, with docker's
//! rules for where the copy lands (into a directory that exists, else as the named
//! path) and `-` for a tar on stdin or stdout.

use std::io::Write;

use anyhow::{bail, Context, Result};
use http::Method;
use http_body_util::BodyExt;
use serde_json::Value;

use super::CpArgs;
use crate::client::{enc, Client};

pub async fn cp(c: &Client, a: CpArgs) -> Result<i32> {
    match (split_container_path(&a.src), split_container_path(&a.dest)) {
        (Some((ctr, path)), None) => copy_from(c, ctr, path, &a.dest, a.follow_link).await?,
        (None, Some((ctr, path))) => {
            copy_to(c, &a.src, ctr, path, a.archive, a.follow_link).await?
        }
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source"),
    }
    Ok(0)
}

/// `CONTAINER:PATH` as (container, path); a local path (absolute, relative with a
/// slash before any colon, or `-`) is `None`.
fn split_container_path(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') || arg == "-" {
        return None;
    }
    let (ctr, path) = arg.split_once(':')?;
    (!ctr.is_empty() && !ctr.contains('/')).then_some((ctr, path))
}

/// The path names of a tar entry, refusing anything that could climb out.
fn safe_rel(path: &std::path::Path) -> Result<std::path::PathBuf> {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => bail!("refusing the archive entry {}", path.display()),
        }
    }
    Ok(out)
}

/// `cp CONTAINER:SRC DEST`: the container's tar of SRC unpacked at DEST as docker
/// does: into DEST when it is a directory, else as DEST.
async fn copy_from(c: &Client, ctr: &str, path: &str, dest: &str, follow: bool) -> Result<()> {
    let mut path = path.to_string();
    if follow {
        // -L: copy what a symbolic link points at, not the link.
        let stat_path = format!("/containers/{}/archive?path={}", enc(ctr), enc(&path));
        if let Ok(resp) = c.send(Method::HEAD, &stat_path, None, false).await {
            let target = resp
                .headers()
                .get("X-Docker-Container-Path-Stat")
                .and_then(|v| v.to_str().ok())
                .and_then(decode_stat)
                .and_then(|st| st["linkTarget"].as_str().map(str::to_string))
                .filter(|t| !t.is_empty());
            if let Some(t) = target {
                path = t;
            }
        }
    }
    let path = path.as_str();
    let resp = c
        .send(
            Method::GET,
            &format!("/containers/{}/archive?path={}", enc(ctr), enc(path)),
            None,
            false,
        )
        .await?;
    let data = resp.into_body().collect().await?.to_bytes();
    if dest == "-" {
        std::io::stdout().write_all(&data)?;
        return Ok(());
    }
    let dest = std::path::Path::new(dest);
    let (base, rename) = if dest.is_dir() {
        (dest.to_path_buf(), None)
    } else {
        let parent = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !parent.is_dir() {
            bail!("no such directory: {}", parent.display());
        }
        (
            parent.to_path_buf(),
            dest.file_name().map(|n| n.to_os_string()),
        )
    };
    let mut archive = tar::Archive::new(&data[..]);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let rel = safe_rel(&entry.path()?)?;
        let rel = match &rename {
            // The archive's top entry is SRC's own name: it becomes DEST's.
            Some(name) => {
                let mut parts = rel.components();
                parts.next();
                let rest = parts.as_path();
                // join("") would add a trailing slash, making a file look like a dir.
                if rest.as_os_str().is_empty() {
                    std::path::PathBuf::from(name)
                } else {
                    std::path::Path::new(name).join(rest)
                }
            }
            None => rel,
        };
        let target = base.join(&rel);
        if target.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
            std::fs::remove_file(&target)
                .with_context(|| format!("replacing {}", target.display()))?;
        }
        entry
            .unpack(&target)
            .with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(())
}

/// `cp SRC CONTAINER:DEST`: SRC as a tar, unpacked by berthd into DEST when it is a
/// directory in the container, else into DEST's directory as DEST's name.
async fn copy_to(
    c: &Client,
    src: &str,
    ctr: &str,
    dest: &str,
    keep_ids: bool,
    follow: bool,
) -> Result<()> {
    let put = |dir: String, data: Vec<u8>| async move {
        c.send_typed(
            Method::PUT,
            &format!(
                "/containers/{}/archive?path={}&noOverwriteDirNonDir=true&copyUIDGID={}",
                enc(ctr),
                enc(&dir),
                keep_ids as u8
            ),
            bytes::Bytes::from(data),
            "application/x-tar",
            false,
        )
        .await
    };
    if src == "-" {
        // A tar on stdin, unpacked into DEST (which must be a directory).
        let mut data = vec![];
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut data).context("reading stdin")?;
        put(dest.to_string(), data).await?;
        return Ok(());
    }
    let src_path = std::path::Path::new(src);
    let meta = std::fs::symlink_metadata(src_path).with_context(|| format!("cannot copy {src}"))?;
    let stat_path = format!("/containers/{}/archive?path={}", enc(ctr), enc(dest));
    let dest_is_dir = match c.send(Method::HEAD, &stat_path, None, false).await {
        Ok(resp) => resp
            .headers()
            .get("X-Docker-Container-Path-Stat")
            .and_then(|v| v.to_str().ok())
            .and_then(decode_stat)
            .is_some_and(|st| st["mode"].as_u64().unwrap_or(0) & (1 << 31) != 0),
        Err(crate::client::CliError::Api { status, .. }) if status == 404 => false,
        Err(e) => return Err(e.into()),
    };
    let (dir, name) = if dest_is_dir {
        let name = src_path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| ".".into());
        (dest.to_string(), name)
    } else {
        let d = std::path::Path::new(dest);
        let dir = d
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".to_string());
        let name = d
            .file_name()
            .map(|n| n.to_os_string())
            .context("the destination names no file")?;
        (dir, name)
    };
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(follow);
    let is_dir = if follow {
        src_path.is_dir()
    } else {
        meta.is_dir()
    };
    if is_dir {
        b.append_dir_all(&name, src_path)?;
    } else {
        b.append_path_with_name(src_path, &name)?;
    }
    let data = b.into_inner()?;
    put(dir, data).await?;
    Ok(())
}

/// The `X-Docker-Container-Path-Stat` header's JSON (base64).
fn decode_stat(b64: &str) -> Option<Value> {
    use base64::Engine;
    let cfg = base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent);
    let engine = base64::engine::GeneralPurpose::new(&base64::alphabet::STANDARD, cfg);
    serde_json::from_slice(&engine.decode(b64).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_and_stat_headers() {
        assert_eq!(split_container_path("web:/etc"), Some(("web", "/etc")));
        assert_eq!(split_container_path("/tmp/a:b"), None);
        assert_eq!(split_container_path("./x:y"), None);
        assert_eq!(split_container_path("-"), None);
        assert_eq!(split_container_path("file"), None);
        // {"mode":2147484141} in base64
        let v = decode_stat("eyJtb2RlIjoyMTQ3NDg0MTQxfQ==").unwrap();
        assert_eq!(v["mode"], 2147484141u64);
        assert!(safe_rel(std::path::Path::new("../x")).is_err());
    }
}
