//! Downloads for `ADD <url>` and `remote=`: plain HTTP/1.1 GET with a bounded number
//! of redirects and a bounded size. TLS is not spoken (builds here reach hosts on the
//! machine and its networks); an https URL is refused with a clear message. A body
//! goes to a file as it arrives, never into memory whole: concurrent builds must not
//! be able to hold a gigabyte each in the daemon.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

/// The largest download taken (1 GiB).
const MAX_BYTES: u64 = 1 << 30;
const MAX_REDIRECTS: usize = 10;

/// What a download brought.
#[derive(Debug, Clone)]
pub struct Download {
    /// The file the body was written to (the `to` of [`get`]).
    pub path: PathBuf,
    /// `Last-Modified`, as Unix seconds.
    pub modified: Option<i64>,
    /// The last path segment of the final URL ("" when it has none).
    pub file_name: String,
}

fn split(url: &str) -> Result<(String, u16, String), String> {
    if url.starts_with("https://") {
        return Err(format!(
            "{url}: https downloads are not supported by berth's builder (use http, or COPY the file from the context)"
        ));
    }
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: not an http URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || p.chars().all(|c| c.is_ascii_digit()) => (
            h.to_string(),
            p.parse::<u16>().map_err(|_| format!("{url}: bad port"))?,
        ),
        _ => (authority.to_string(), 80),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((host, port, path.to_string()))
}

/// GETs `url`, following redirects, into the new file `to` (removed again when
/// the download fails).
pub async fn get(url: &str, to: &Path) -> Result<Download, String> {
    let r = get_inner(url, to).await;
    if r.is_err() {
        let _ = tokio::fs::remove_file(to).await;
    }
    r
}

async fn get_inner(url: &str, to: &Path) -> Result<Download, String> {
    let mut url = url.to_string();
    for _ in 0..MAX_REDIRECTS {
        let (host, port, path) = split(&url)?;
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = http::Request::get(&path)
            .header(http::header::HOST, format!("{host}:{port}"))
            .header(http::header::USER_AGENT, "berth-builder")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        if status.is_redirection() {
            let loc = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| format!("{url}: redirect without a location"))?;
            url = if loc.starts_with("http://") || loc.starts_with("https://") {
                loc.to_string()
            } else {
                format!("http://{host}:{port}{loc}")
            };
            continue;
        }
        if !status.is_success() {
            return Err(format!("{url}: {status}"));
        }
        let modified = resp
            .headers()
            .get(http::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| chrono::DateTime::parse_from_rfc2822(s).ok())
            .map(|t| t.timestamp());
        let mut body = resp.into_body();
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(to)
            .await
            .map_err(|e| format!("creating {}: {e}", to.display()))?;
        let mut size: u64 = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("{url}: {e}"))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            size += data.len() as u64;
            if size > MAX_BYTES {
                return Err(format!("{url}: larger than {MAX_BYTES} bytes"));
            }
            file.write_all(&data)
                .await
                .map_err(|e| format!("writing {}: {e}", to.display()))?;
        }
        file.flush()
            .await
            .map_err(|e| format!("writing {}: {e}", to.display()))?;
        let file_name = path
            .split(['?', '#'])
            .next()
            .unwrap_or("")
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string();
        return Ok(Download {
            path: to.to_path_buf(),
            modified,
            file_name,
        });
    }
    Err(format!("{url}: too many redirects"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            split("http://127.0.0.1:8080/a/b.tar?x").unwrap(),
            ("127.0.0.1".into(), 8080, "/a/b.tar?x".into())
        );
        assert_eq!(split("http://h").unwrap(), ("h".into(), 80, "/".into()));
        assert!(split("https://h/x").is_err());
        assert!(split("ftp://h/x").is_err());
    }
}
