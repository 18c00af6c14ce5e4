//! Issue 10, finding 6 (registries): a registry that lies. A fake registry on
//! 127.0.0.1, written here, answers with a config far larger than its
//! descriptor says, a 256 MiB manifest (with and without a Content-Length), and
//! a layer blob that never ends. Each pull is refused with a clear message and
//! the manager's memory stays bounded.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

use berth_testutil::require_root;

use crate::{http_raw, peak_rss, serial, Stack};

const MIB: u64 = 1 << 20;

fn sha256_hex(data: &[u8]) -> String {
    // The manager's own hashing is not ours to borrow: sha256sum does it.
    let mut c = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(data).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Writes `len` bytes of zeros (or forever with None) as the body; stops when
/// the client goes away.
fn stream_zeros(s: &mut TcpStream, len: Option<u64>, chunked: bool) {
    let zeros = vec![b'0'; 256 * 1024];
    let mut sent = 0u64;
    loop {
        let n = match len {
            Some(l) if sent >= l => break,
            Some(l) => zeros.len().min((l - sent) as usize),
            None => zeros.len(),
        };
        let r = if chunked {
            s.write_all(format!("{n:x}\r\n").as_bytes())
                .and_then(|_| s.write_all(&zeros[..n]))
                .and_then(|_| s.write_all(b"\r\n"))
        } else {
            s.write_all(&zeros[..n])
        };
        if r.is_err() {
            return;
        }
        sent += n as u64;
    }
    if chunked {
        let _ = s.write_all(b"0\r\n\r\n");
    }
}

/// The `layer` case's config: valid, one layer.
fn layer_config(layer_digest: &str) -> String {
    format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["sha256:{layer_digest}"]}}}}"#
    )
}

fn serve(mut s: TcpStream, config_digest: &str, layer_digest: &str) {
    let good_config = layer_config(layer_digest);
    let good_digest = sha256_hex(good_config.as_bytes());
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let small = |s: &mut TcpStream, ctype: &str, body: &[u8]| {
        let _ = s.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nDocker-Distribution-Api-Version: registry/2.0\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        let _ = s.write_all(body);
    };
    let manifest = |digest: &str, config_size: usize, layers: &str| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{digest}","size":{config_size}}},"layers":[{layers}]}}"#
        )
    };
    let mt = "application/vnd.oci.image.manifest.v1+json";
    match path.as_str() {
        "/v2/" => small(&mut s, "application/json", b"{}"),
        // A config whose descriptor says 79 bytes; its blob never ends.
        "/v2/lie/config/manifests/latest" => {
            small(&mut s, mt, manifest(config_digest, 79, "").as_bytes())
        }
        // A sane config, a layer of 1000 bytes that never ends.
        "/v2/lie/layer/manifests/latest" => {
            let l = format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{layer_digest}","size":1000}}"#
            );
            small(
                &mut s,
                mt,
                manifest(&good_digest, good_config.len(), &l).as_bytes(),
            )
        }
        "/v2/lie/manifest/manifests/latest" => {
            let _ = s.write_all(
                format!("HTTP/1.1 200 OK\r\nContent-Type: {mt}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", 256 * MIB).as_bytes(),
            );
            stream_zeros(&mut s, Some(256 * MIB), false);
        }
        "/v2/lie/chunked/manifests/latest" => {
            let _ = s.write_all(
                format!("HTTP/1.1 200 OK\r\nContent-Type: {mt}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").as_bytes(),
            );
            stream_zeros(&mut s, Some(256 * MIB), true);
        }
        p if p.ends_with(&good_digest) => {
            small(&mut s, "application/octet-stream", good_config.as_bytes())
        }
        p if p.contains("/blobs/") => {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            );
            stream_zeros(&mut s, None, true);
        }
        _ => {
            let _ = s.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    }
}

#[test]
fn a_lying_registry_is_refused_with_bounded_memory() {
    require_root!();
    let _serial = serial();
    let stack = Stack::start();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Digests that only need to look right: their blobs never end.
    let config_digest = "ab".repeat(32);
    let layer_digest = "cd".repeat(32);
    {
        let (c, l) = (config_digest.clone(), layer_digest.clone());
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let (c, l) = (c.clone(), l.clone());
                std::thread::spawn(move || serve(s, &c, &l));
            }
        });
    }
    let pid = stack.manager_pid();
    for (repo, says) in [
        ("config", "config"),
        ("manifest", "manifest larger than 4194304"),
        ("chunked", "manifest larger than 4194304"),
        ("layer", "layer"),
    ] {
        let (code, body) = http_raw(
            &stack.engine_socket(),
            "POST",
            &format!("/v1.47/images/create?fromImage=127.0.0.1:{port}/lie/{repo}&tag=latest"),
            "application/json",
            b"",
        );
        let body = String::from_utf8_lossy(&body);
        eprintln!("{repo}: {code} {body}");
        assert!(
            code == 400 || body.contains("error"),
            "{repo}: {code} {body}"
        );
        assert!(
            body.contains("larger than") && body.contains(says),
            "{repo}: {body}"
        );
        let peak = peak_rss(pid);
        assert!(
            peak < 200 * MIB,
            "{repo}: the manager peaked at {} MiB",
            peak / MIB
        );
    }
}
