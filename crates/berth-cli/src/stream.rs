//! Attached streams, in one place: the frame demultiplexer for non-TTY output (attach,
//! exec, logs), the copy of a hijacked connection to and from the terminal, raw mode,
//! terminal size forwarding, the detach key sequence (ctrl-p,ctrl-q by default) and
//! the signal proxy that forwards the CLI's signals to the container.

use std::io::Write;

use anyhow::{bail, Context, Result};
use http::Method;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::client::{enc, Client};

/// docker's default detach sequence: ctrl-p, ctrl-q.
pub const DEFAULT_DETACH_KEYS: &[u8] = &[16, 17];

/// Which stream a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Stdin,
    Stdout,
    Stderr,
    /// An error from the engine, sent in-band.
    System,
}

/// Splits docker's multiplexed stream (8-byte headers: stream type, three zero bytes,
/// big-endian length) into frames, across reads of any size.
#[derive(Debug, Default)]
pub struct Demux {
    pending: Vec<u8>,
}

impl Demux {
    /// Feeds bytes; calls `out` for each complete frame.
    pub fn push(
        &mut self,
        data: &[u8],
        mut out: impl FnMut(StreamKind, &[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        self.pending.extend_from_slice(data);
        let mut at = 0;
        while self.pending.len() - at >= 8 {
            let h = &self.pending[at..at + 8];
            let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
            if self.pending.len() - at - 8 < len {
                break;
            }
            let kind = match h[0] {
                0 => StreamKind::Stdin,
                2 => StreamKind::Stderr,
                3 => StreamKind::System,
                _ => StreamKind::Stdout,
            };
            out(kind, &self.pending[at + 8..at + 8 + len])?;
            at += 8 + len;
        }
        self.pending.drain(..at);
        Ok(())
    }
}

/// Writes demultiplexed frames to this process's stdout and stderr; an in-band
/// engine error becomes an error.
pub fn write_frame(kind: StreamKind, data: &[u8]) -> std::io::Result<()> {
    match kind {
        StreamKind::Stderr => {
            let mut e = std::io::stderr().lock();
            e.write_all(data)?;
            e.flush()
        }
        StreamKind::System => Err(std::io::Error::other(
            String::from_utf8_lossy(data).trim().to_string(),
        )),
        _ => {
            let mut o = std::io::stdout().lock();
            o.write_all(data)?;
            o.flush()
        }
    }
}

/// docker's `term.ToBytes`: "ctrl-p,ctrl-q", "a,b", "ctrl-@".
pub fn parse_detach_keys(keys: &str) -> Result<Vec<u8>> {
    let mut out = vec![];
    for key in keys.split(',') {
        let k = key.trim();
        if k.len() > 1 {
            let Some(c) = k.strip_prefix("ctrl-") else {
                bail!("Unknown character: '{k}'");
            };
            let mut cs = c.chars();
            let (Some(c), None) = (cs.next(), cs.next()) else {
                bail!("Unknown character: '{k}'");
            };
            let c = c.to_ascii_lowercase();
            let code = match c {
                'a'..='z' => c as u8 - b'a' + 1,
                '@' => 0,
                '[' => 27,
                '\\' => 28,
                ']' => 29,
                '^' => 30,
                '_' => 31,
                _ => bail!("Unknown character: '{k}'"),
            };
            out.push(code);
        } else if let Some(b) = k.bytes().next() {
            out.push(b);
        }
    }
    if out.is_empty() {
        bail!("invalid detach keys {keys:?}");
    }
    Ok(out)
}

/// The detach keys to use: the flag, then `detachKeys` in the config file, then
/// ctrl-p,ctrl-q (an invalid setting falls back to the default, as docker's does).
pub fn detach_keys(flag: Option<&str>) -> (String, Vec<u8>) {
    let configured = crate::config::ConfigFile::load()
        .ok()
        .and_then(|c| c.detach_keys());
    match flag.map(str::to_string).or(configured) {
        Some(k) if !k.is_empty() => match parse_detach_keys(&k) {
            Ok(b) => (k, b),
            Err(e) => {
                eprintln!("WARNING: invalid detach escape keys, using default: {e}");
                (String::new(), DEFAULT_DETACH_KEYS.to_vec())
            }
        },
        _ => (String::new(), DEFAULT_DETACH_KEYS.to_vec()),
    }
}

/// Watches input for the detach sequence, as docker's escape proxy: bytes that may
/// start the sequence are held back until it is clear whether they do.
#[derive(Debug)]
pub struct EscapeProxy {
    keys: Vec<u8>,
    matched: usize,
}

impl EscapeProxy {
    pub fn new(keys: Vec<u8>) -> EscapeProxy {
        EscapeProxy { keys, matched: 0 }
    }

    /// What to pass on from `input`, and whether the sequence was completed.
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.keys.get(self.matched) == Some(&b) {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
                continue;
            }
            // Not the sequence after all: what was held back goes through.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if self.keys.first() == Some(&b) {
                self.matched = 1;
                if self.keys.len() == 1 {
                    return (out, true);
                }
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

/// docker's `CheckTty`: a TTY with stdin attached needs a terminal on stdin.
pub fn check_tty(attach_stdin: bool, tty: bool) -> anyhow::Result<()> {
    if attach_stdin && tty && !nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
        return Err(crate::cli::StatusError {
            code: 1,
            message: "the input device is not a TTY".into(),
        }
        .into());
    }
    Ok(())
}

/// How an attached session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The output ended (the container or process exited, or closed its streams).
    Output,
    /// The user typed the detach sequence.
    Detached,
}

/// What an attached session copies.
#[derive(Debug, Clone)]
pub struct Streams {
    pub tty: bool,
    /// Copy this process's stdin to the connection.
    pub stdin: bool,
    /// The connection carries output (stdout or stderr attached).
    pub output: bool,
    pub detach_keys: Vec<u8>,
}

/// Copies a hijacked connection: the container's output to stdout/stderr (raw with a
/// TTY, demultiplexed without), and stdin to the container through the escape proxy
/// (half-closing at EOF). Puts the terminal in raw mode for `-it`. Returns when the
/// output ends or the user detaches.
pub async fn attach<S>(conn: S, s: Streams) -> Result<Ended>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(conn);
    let raw = RawTerminal::enable(s.tty && s.stdin);
    // The input side says once whether it detached or reached the end of stdin.
    let (input_tx, mut input_rx) = tokio::sync::oneshot::channel::<bool>();
    let stdin = s.stdin;
    let keys = s.detach_keys.clone();
    let input = tokio::spawn(async move {
        if stdin {
            let mut inp = tokio::io::stdin();
            let mut proxy = EscapeProxy::new(keys);
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = match inp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let (pass, detached) = proxy.feed(&buf[..n]);
                if !pass.is_empty() && wr.write_all(&pass).await.is_err() {
                    break;
                }
                let _ = wr.flush().await;
                if detached {
                    let _ = input_tx.send(true);
                    return;
                }
            }
        }
        // Half-close: the container sees EOF on its stdin.
        let _ = wr.shutdown().await;
        let _ = input_tx.send(false);
        // Keep the write half (and so the connection) alive until the output ends.
        std::future::pending::<()>().await;
    });
    let output = async {
        let mut buf = vec![0u8; 32 * 1024];
        let mut demux = Demux::default();
        loop {
            let n = rd
                .read(&mut buf)
                .await
                .context("reading from the container")?;
            if n == 0 {
                return Ok::<(), anyhow::Error>(());
            }
            if s.tty {
                let mut out = std::io::stdout().lock();
                out.write_all(&buf[..n])?;
                out.flush()?;
            } else {
                demux.push(&buf[..n], write_frame)?;
            }
        }
    };
    let ended = if s.output {
        tokio::pin!(output);
        tokio::select! {
            r = &mut output => { r?; Ended::Output }
            Ok(detached) = &mut input_rx => {
                if detached {
                    Ended::Detached
                } else {
                    // Input is done; the output decides.
                    output.await?;
                    Ended::Output
                }
            }
        }
    } else {
        // Nothing to show: the session lasts as long as the input.
        match input_rx.await {
            Ok(true) => Ended::Detached,
            _ => Ended::Output,
        }
    };
    input.abort();
    drop(raw);
    Ok(ended)
}

/// Forwards this terminal's size to a container's (or exec's) pty: once now and on
/// every SIGWINCH, until dropped. `path` is `/containers/<id>` or `/exec/<id>`.
/// Does nothing when stdout is not a terminal.
pub struct WindowSize(Option<tokio::task::JoinHandle<()>>);

impl WindowSize {
    pub fn forward(c: &Client, path: String, on: bool) -> WindowSize {
        if !on || !nix::unistd::isatty(std::io::stdout()).unwrap_or(false) {
            return WindowSize(None);
        }
        let c = c.clone();
        WindowSize(Some(tokio::spawn(async move {
            let Ok(mut winch) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
            else {
                return;
            };
            loop {
                if let Some((rows, cols)) = terminal_size() {
                    // A failed resize (the process just exited) is not worth a word.
                    let _ = c
                        .send(
                            Method::POST,
                            &format!("{path}/resize?h={rows}&w={cols}"),
                            None,
                            false,
                        )
                        .await;
                }
                if winch.recv().await.is_none() {
                    return;
                }
            }
        })))
    }
}

impl Drop for WindowSize {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
        }
    }
}

/// Rows and columns of the terminal on stdout.
fn terminal_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we pass, which lives
    // for the whole call; fd 1 is only read.
    let r = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Puts the terminal on stdin in raw mode while alive (for `-it`).
pub struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    pub fn enable(on: bool) -> RawTerminal {
        use nix::sys::termios;
        if !on || !nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
            return RawTerminal(None);
        }
        let Ok(orig) = termios::tcgetattr(std::io::stdin()) else {
            return RawTerminal(None);
        };
        let mut raw = orig.clone();
        termios::cfmakeraw(&mut raw);
        if termios::tcsetattr(std::io::stdin(), termios::SetArg::TCSANOW, &raw).is_err() {
            return RawTerminal(None);
        }
        RawTerminal(Some(orig))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(orig) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                orig,
            );
        }
    }
}

/// The signals the proxy forwards: every catchable one but SIGCHLD and SIGPIPE
/// (which concern this process) and those a handler may not be installed for.
fn proxied_signals() -> Vec<(i32, String)> {
    use nix::sys::signal::Signal;
    let mut v = vec![];
    for sig in Signal::iterator() {
        let n = sig as i32;
        if matches!(
            sig,
            Signal::SIGKILL
                | Signal::SIGSTOP
                | Signal::SIGCHLD
                | Signal::SIGPIPE
                | Signal::SIGILL
                | Signal::SIGFPE
                | Signal::SIGSEGV
        ) {
            continue;
        }
        v.push((n, sig.as_str().trim_start_matches("SIG").to_string()));
    }
    // Real-time signals go by number: the engine takes any signal number.
    for n in libc::SIGRTMIN()..=libc::SIGRTMAX() {
        v.push((n, n.to_string()));
    }
    v
}

/// Forwards every signal this process receives to the container (`--sig-proxy`),
/// through `POST /containers/{id}/kill`, until dropped.
pub struct SignalProxy(Vec<tokio::task::JoinHandle<()>>);

impl SignalProxy {
    pub fn start(c: &Client, id: &str) -> SignalProxy {
        let mut tasks = vec![];
        for (n, name) in proxied_signals() {
            let Ok(mut stream) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(n))
            else {
                continue;
            };
            let c = c.clone();
            let path = format!("/containers/{}/kill?signal={}", enc(id), enc(&name));
            tasks.push(tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    // The container may be gone already; docker only logs this too.
                    let _ = c.send(Method::POST, &path, None, false).await;
                }
            }));
        }
        SignalProxy(tasks)
    }
}

impl Drop for SignalProxy {
    fn drop(&mut self) {
        for t in self.0.drain(..) {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux_across_reads() {
        let mut d = Demux::default();
        let mut got: Vec<(StreamKind, Vec<u8>)> = vec![];
        let mut data = vec![1, 0, 0, 0, 0, 0, 0, 3];
        data.extend_from_slice(b"out");
        data.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 4]);
        data.extend_from_slice(b"err!");
        for chunk in data.chunks(5) {
            d.push(chunk, |k, b| {
                got.push((k, b.to_vec()));
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(
            got,
            vec![
                (StreamKind::Stdout, b"out".to_vec()),
                (StreamKind::Stderr, b"err!".to_vec())
            ]
        );
    }

    #[test]
    fn detach_keys_like_docker() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys("ctrl-a,x").unwrap(), vec![1, b'x']);
        assert_eq!(parse_detach_keys("ctrl-@,ctrl-[").unwrap(), vec![0, 27]);
        assert!(parse_detach_keys("ctrl-1").is_err());
        assert!(parse_detach_keys("abc").is_err());
    }

    #[test]
    fn escape_proxy_holds_back_only_the_sequence() {
        let mut p = EscapeProxy::new(vec![16, 17]);
        assert_eq!(p.feed(b"ab"), (b"ab".to_vec(), false));
        // A partial sequence is held back, then released when it turns out not to be.
        assert_eq!(p.feed(&[16]), (vec![], false));
        assert_eq!(p.feed(b"x"), (vec![16, b'x'], false));
        assert_eq!(p.feed(&[16, 16]), (vec![16], false));
        assert_eq!(p.feed(&[17, b'z']), (vec![], true));
        let mut p = EscapeProxy::new(vec![16, 17]);
        assert_eq!(p.feed(b"hi\x10\x11rest"), (b"hi".to_vec(), true));
    }

    #[test]
    fn the_proxy_leaves_chld_and_pipe_alone() {
        let sigs = proxied_signals();
        assert!(sigs.iter().any(|(_, n)| n == "INT"));
        assert!(sigs.iter().any(|(_, n)| n == "TERM"));
        assert!(!sigs
            .iter()
            .any(|(_, n)| n == "CHLD" || n == "PIPE" || n == "KILL"));
    }
}
