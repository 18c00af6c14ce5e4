//! Docker's stdio stream formats and the pump behind a hijacked connection.
//!
//! Without a TTY, stdout and stderr travel multiplexed: each frame is an 8-byte header
//! (stream type 1 stdout / 2 stderr, three zero bytes, the payload length as a
//! big-endian u32) followed by the payload. With a TTY the bytes travel raw. After a
//! `101 Switching Protocols` the connection carries stdin one way and the output the
//! other; [`pump`] moves bytes between it and an [`AttachStreams`] (the manager's
//! `Tasks.Attach`, or any in-memory source in tests) and copes with the client
//! half-closing its write side, which the docker CLI does at once when it has no stdin.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::manager::{AttachStreams, OutputChunk, StdStream, StdinMsg};

/// `Content-Type` of a raw (TTY) stream.
pub const RAW_STREAM: &str = "application/vnd.docker.raw-stream";
/// `Content-Type` of a multiplexed (non-TTY) stream.
pub const MULTIPLEXED_STREAM: &str = "application/vnd.docker.multiplexed-stream";

/// The largest payload one frame carries; longer chunks are split.
const MAX_FRAME: usize = u32::MAX as usize;

/// Docker's stream type byte.
pub fn stream_type(stream: StdStream) -> u8 {
    match stream {
        StdStream::Stdout => 1,
        StdStream::Stderr => 2,
    }
}

/// Appends `data` to `out` as one or more multiplexed frames for `stream`.
pub fn encode_frame(stream: StdStream, data: &[u8], out: &mut BytesMut) {
    for piece in data.chunks(MAX_FRAME) {
        out.reserve(8 + piece.len());
        out.put_u8(stream_type(stream));
        out.put_slice(&[0, 0, 0]);
        // chunks() keeps each piece at most MAX_FRAME == u32::MAX bytes.
        out.put_u32(u32::try_from(piece.len()).unwrap_or(u32::MAX));
        out.put_slice(piece);
    }
}

/// One chunk of output as it goes on the wire: framed without a TTY, raw with one.
pub fn encode_output(chunk: &OutputChunk, tty: bool) -> Bytes {
    if tty {
        return chunk.data.clone();
    }
    let mut out = BytesMut::new();
    encode_frame(chunk.stream, &chunk.data, &mut out);
    out.freeze()
}

/// A decoder for multiplexed streams (used by the CLI side and by tests): feed bytes,
/// take whole frames.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
}

/// A frame's stream type byte was not 0, 1 or 2.
#[derive(Debug, thiserror::Error)]
#[error("bad stream type {0} in a multiplexed stream")]
pub struct BadFrame(pub u8);

impl FrameDecoder {
    /// Adds bytes read from the connection.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame: (stream type, payload).
    pub fn next_frame(&mut self) -> Result<Option<(u8, Bytes)>, BadFrame> {
        if self.buf.len() < 8 {
            return Ok(None);
        }
        let kind = self.buf[0];
        if kind > 2 {
            return Err(BadFrame(kind));
        }
        let len = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
        if self.buf.len() < 8 + len {
            return Ok(None);
        }
        let mut frame = self.buf.split_to(8 + len);
        Ok(Some((kind, frame.split_off(8).freeze())))
    }
}

/// How a pump ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PumpEnd {
    /// Bytes of output written to the client.
    pub output_bytes: u64,
    /// Whether the client closed its write side (or the whole connection).
    pub client_closed_input: bool,
}

/// The keys that detach a client from a TTY container when none are given (dockerd's).
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// Docker's detach keys (`ctrl-p,ctrl-q`, `a,ctrl-@`...) as the bytes to watch for.
pub fn parse_detach_keys(spec: &str) -> Result<Vec<u8>, String> {
    let bad = || format!("Invalid detach keys ({spec}) provided");
    let mut out = vec![];
    for key in spec.split(',') {
        let k = key.trim();
        match k.strip_prefix("ctrl-") {
            Some(c) if c.len() == 1 => {
                let b = c.as_bytes()[0].to_ascii_lowercase();
                out.push(match b {
                    b'a'..=b'z' => b - b'a' + 1,
                    b'@' => 0,
                    b'[' => 27,
                    b'\\' => 28,
                    b']' => 29,
                    b'^' => 30,
                    b'_' => 31,
                    _ => return Err(bad()),
                });
            }
            None if k.len() == 1 => out.push(k.as_bytes()[0]),
            _ => return Err(bad()),
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// Finds the detach sequence in stdin: bytes that may start it are held back until
/// it is clear they do not, then passed on.
#[derive(Debug)]
struct Escape {
    keys: Vec<u8>,
    held: usize,
}

impl Escape {
    /// What of `data` goes to the process, and whether the sequence was completed.
    fn feed(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        let mut pass = vec![];
        for &b in data {
            if b == self.keys[self.held] {
                self.held += 1;
                if self.held == self.keys.len() {
                    return (pass, true);
                }
                continue;
            }
            pass.extend_from_slice(&self.keys[..self.held]);
            self.held = 0;
            if b == self.keys[0] {
                self.held = 1;
                if self.keys.len() == 1 {
                    return (pass, true);
                }
            } else {
                pass.push(b);
            }
        }
        (pass, false)
    }
}

/// What the end of a client's input (a half-close, a detach, a client gone) does to
/// the process's stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEof {
    /// The process's stdin is closed: `echo x | docker run -i ... cat` ends.
    ClosesStdin,
    /// The process's stdin stays open for the next client: a shell left with
    /// ctrl-p ctrl-q takes input again from the next `attach`.
    KeepsStdin,
}

impl ClientEof {
    /// dockerd's rule for a container's attach: only a container made with
    /// `StdinOnce` and no TTY has its stdin closed by its client.
    pub fn for_container(stdin_once: bool, tty: bool) -> ClientEof {
        if stdin_once && !tty {
            ClientEof::ClosesStdin
        } else {
            ClientEof::KeepsStdin
        }
    }

    /// dockerd's rule for an exec: its client closes its stdin unless it has a TTY.
    pub fn for_exec(tty: bool) -> ClientEof {
        ClientEof::for_container(true, tty)
    }
}

/// Moves bytes both ways until the process's output ends and `finished` is ready,
/// then shuts the write side of the connection so the client sees EOF.
///
/// Stdin from the client goes to `streams.stdin` (when the process has one); when the
/// client's input ends, `on_eof` says whether the process's stdin is closed, and
/// output keeps flowing either way. Output chunks are written framed or raw per
/// `tty`. `finished` lets an exec hold the connection until its exit code is
/// recorded (a client reads it as soon as the stream ends).
pub async fn pump<IO, F>(
    io: IO,
    streams: AttachStreams,
    tty: bool,
    on_eof: ClientEof,
    finished: F,
) -> std::io::Result<PumpEnd>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    F: std::future::Future<Output = ()>,
{
    pump_detachable(io, streams, tty, on_eof, finished, None).await
}

/// [`pump`], and when `detach` holds keys, their sequence in stdin detaches the
/// client: the connection ends, the process goes on (dockerd's escape proxy).
pub async fn pump_detachable<IO, F>(
    io: IO,
    streams: AttachStreams,
    tty: bool,
    on_eof: ClientEof,
    finished: F,
    detach: Option<Vec<u8>>,
) -> std::io::Result<PumpEnd>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    F: std::future::Future<Output = ()>,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let AttachStreams { mut output, stdin } = streams;
    let mut escape = detach
        .filter(|k| !k.is_empty())
        .map(|keys| Escape { keys, held: 0 });

    // Ends with whether the client detached.
    let mut input = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        let mut detached = false;
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let data = match escape.as_mut() {
                Some(e) => {
                    let (pass, hit) = e.feed(&buf[..n]);
                    detached = hit;
                    Bytes::from(pass)
                }
                None => Bytes::copy_from_slice(&buf[..n]),
            };
            if let Some(tx) = stdin.as_ref().filter(|_| !data.is_empty()) {
                // A process whose stdin is gone: keep draining so the client does not
                // block, as dockerd does.
                let _ = tx.send(StdinMsg::Data(data)).await;
            }
            if detached {
                break;
            }
        }
        if !detached && on_eof == ClientEof::ClosesStdin {
            if let Some(tx) = &stdin {
                let _ = tx.send(StdinMsg::Close).await;
            }
        }
        detached
    });

    let mut written = 0u64;
    let mut input_done = None;
    loop {
        tokio::select! {
            chunk = output.recv() => {
                let Some(chunk) = chunk else { break };
                let bytes = encode_output(&chunk, tty);
                if let Err(e) = wr.write_all(&bytes).await {
                    input.abort();
                    return Err(e);
                }
                written += bytes.len() as u64;
                wr.flush().await?;
            }
            res = &mut input, if input_done.is_none() => {
                let detached = res.unwrap_or(false);
                input_done = Some(detached);
                if detached {
                    let _ = wr.shutdown().await;
                    return Ok(PumpEnd {
                        output_bytes: written,
                        client_closed_input: true,
                    });
                }
            }
        }
    }
    finished.await;
    let _ = wr.shutdown().await;
    let client_closed_input = match input_done {
        Some(_) => true,
        None if input.is_finished() => input.await.is_ok(),
        None => {
            // The process is done; nobody needs more stdin.
            input.abort();
            false
        }
    };
    Ok(PumpEnd {
        output_bytes: written,
        client_closed_input,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    #[test]
    fn detach_keys_parse_and_match_across_reads() {
        assert_eq!(
            parse_detach_keys(DEFAULT_DETACH_KEYS).unwrap(),
            vec![16, 17]
        );
        assert_eq!(
            parse_detach_keys("a,ctrl-@,ctrl-[").unwrap(),
            vec![b'a', 0, 27]
        );
        for bad in ["", "ctrl-", "ctrl-1", "ab", "ctrl-p,"] {
            assert!(parse_detach_keys(bad).is_err(), "{bad}");
        }
        let mut e = Escape {
            keys: vec![16, 17],
            held: 0,
        };
        assert_eq!(e.feed(b"ab\x10"), (b"ab".to_vec(), false));
        // A held byte that turns out not to start the sequence is passed on.
        assert_eq!(e.feed(b"c\x10"), (b"\x10c".to_vec(), false));
        assert_eq!(e.feed(b"\x10\x10"), (b"\x10\x10".to_vec(), false));
        assert_eq!(e.feed(b"\x11rest"), (vec![], true));
    }

    #[test]
    fn frame_header_is_type_three_zeros_and_big_endian_length() {
        let mut out = BytesMut::new();
        encode_frame(StdStream::Stdout, b"hello", &mut out);
        encode_frame(StdStream::Stderr, &[7u8; 300], &mut out);
        assert_eq!(&out[..8], &[1, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(&out[8..13], b"hello");
        assert_eq!(&out[13..21], &[2, 0, 0, 0, 0, 0, 1, 44]);
        assert_eq!(out.len(), 13 + 8 + 300);
    }

    #[test]
    fn decoder_reassembles_split_frames() {
        let mut wire = BytesMut::new();
        encode_frame(StdStream::Stdout, b"abc", &mut wire);
        encode_frame(StdStream::Stderr, b"de", &mut wire);
        let mut dec = FrameDecoder::default();
        let mut got = vec![];
        for b in wire.iter() {
            dec.push(&[*b]);
            while let Some(f) = dec.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![
                (1, Bytes::from_static(b"abc")),
                (2, Bytes::from_static(b"de"))
            ]
        );
        let mut bad = FrameDecoder::default();
        bad.push(&[9, 0, 0, 0, 0, 0, 0, 0]);
        assert!(bad.next_frame().is_err());
    }

    #[test]
    fn tty_output_is_raw() {
        let c = OutputChunk {
            stream: StdStream::Stdout,
            data: Bytes::from_static(b"x\r\n"),
        };
        assert_eq!(&encode_output(&c, true)[..], b"x\r\n");
        assert_eq!(encode_output(&c, false).len(), 11);
    }

    fn streams() -> (
        AttachStreams,
        mpsc::Sender<OutputChunk>,
        mpsc::Receiver<StdinMsg>,
    ) {
        let (out_tx, out_rx) = mpsc::channel(8);
        let (in_tx, in_rx) = mpsc::channel(8);
        (
            AttachStreams {
                output: out_rx,
                stdin: Some(in_tx),
            },
            out_tx,
            in_rx,
        )
    }

    #[tokio::test]
    async fn half_close_closes_stdin_and_output_keeps_flowing() {
        let (client, server) = tokio::io::duplex(1024);
        let (s, out_tx, mut in_rx) = streams();
        let task = tokio::spawn(pump(server, s, false, ClientEof::ClosesStdin, async {}));
        let (mut crd, mut cwr) = tokio::io::split(client);
        cwr.write_all(b"input").await.unwrap();
        cwr.shutdown().await.unwrap();
        assert_eq!(
            in_rx.recv().await,
            Some(StdinMsg::Data(Bytes::from_static(b"input")))
        );
        assert_eq!(in_rx.recv().await, Some(StdinMsg::Close));
        // after the half-close, output still arrives
        out_tx
            .send(OutputChunk {
                stream: StdStream::Stderr,
                data: Bytes::from_static(b"late"),
            })
            .await
            .unwrap();
        drop(out_tx);
        let mut all = vec![];
        crd.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, [&[2u8, 0, 0, 0, 0, 0, 0, 4][..], b"late"].concat());
        let end = task.await.unwrap().unwrap();
        assert_eq!(end.output_bytes, 12);
    }

    #[tokio::test]
    async fn tty_pump_is_raw_and_ends_with_eof() {
        let (client, server) = tokio::io::duplex(1024);
        let (s, out_tx, _in_rx) = streams();
        let task = tokio::spawn(pump(server, s, true, ClientEof::KeepsStdin, async {}));
        out_tx
            .send(OutputChunk {
                stream: StdStream::Stdout,
                data: Bytes::from_static(b"/dev/pts/0\r\n"),
            })
            .await
            .unwrap();
        drop(out_tx);
        let (mut crd, _cwr) = tokio::io::split(client);
        let mut all = vec![];
        crd.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"/dev/pts/0\r\n");
        assert!(!task.await.unwrap().unwrap().client_closed_input);
    }

    #[tokio::test]
    async fn a_client_leaving_keeps_stdin_open_unless_told() {
        let (client, server) = tokio::io::duplex(1024);
        let (s, out_tx, mut in_rx) = streams();
        let task = tokio::spawn(pump(server, s, true, ClientEof::KeepsStdin, async {}));
        let (_crd, mut cwr) = tokio::io::split(client);
        cwr.write_all(b"ls\r").await.unwrap();
        cwr.shutdown().await.unwrap();
        assert_eq!(
            in_rx.recv().await,
            Some(StdinMsg::Data(Bytes::from_static(b"ls\r")))
        );
        // The pump lets go of stdin without closing it.
        assert_eq!(in_rx.recv().await, None);
        drop(out_tx);
        assert!(task.await.unwrap().unwrap().client_closed_input);
    }

    #[test]
    fn only_stdin_once_without_a_tty_closes_a_containers_stdin() {
        assert_eq!(
            ClientEof::for_container(true, false),
            ClientEof::ClosesStdin
        );
        assert_eq!(ClientEof::for_container(true, true), ClientEof::KeepsStdin);
        assert_eq!(
            ClientEof::for_container(false, false),
            ClientEof::KeepsStdin
        );
        assert_eq!(ClientEof::for_exec(false), ClientEof::ClosesStdin);
        assert_eq!(ClientEof::for_exec(true), ClientEof::KeepsStdin);
    }
}
