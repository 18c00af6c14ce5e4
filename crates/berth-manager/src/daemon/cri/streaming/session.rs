//! A SPDY/3.1 session on an upgraded connection, server side: the client opens the
//! streams (odd ids), each is accepted at once with SYN_REPLY and handed to the
//! request's handler as a [`Stream`]: its headers, what the client sends on it
//! (ending at the client's FIN or RST), a writer for our half.
//!
//! One task reads and one writes, each owning its zlib context; handlers send
//! frames to the writer through a bounded queue, so a client that stops reading
//! holds its handler back instead of filling memory. Data for a stream whose
//! handler is slow holds the reader back the same way (as spdystream does).

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::spdy::{self, Decoder, Encoder, Frame, Headers, Window};

/// Frames queued towards the writer.
const OUT_QUEUE: usize = 64;
/// Chunks queued towards a stream's handler.
const IN_QUEUE: usize = 16;
/// Largest DATA frame we send.
const MAX_DATA: usize = 32 << 10;
/// Streams a client may have open at once on one connection.
const MAX_STREAMS: usize = 256;

enum Out {
    Frame(Frame),
    /// Flush, end our side of the connection, stop.
    Close,
}

/// Where a handler sends frames.
#[derive(Debug, Clone)]
pub struct Sender {
    tx: mpsc::Sender<Out>,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Out::Frame(fr) => write!(f, "{fr:?}"),
            Out::Close => f.write_str("Close"),
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the streaming connection is closed",
    )
}

impl Sender {
    async fn send(&self, f: Frame) -> io::Result<()> {
        self.tx.send(Out::Frame(f)).await.map_err(|_| gone())
    }

    /// GOAWAY: no more streams will be accepted.
    pub async fn go_away(&self, last_good_stream_id: u32) {
        let _ = self
            .send(Frame::GoAway {
                last_good_stream_id,
                status: spdy::GOAWAY_OK,
            })
            .await;
    }

    /// Flush what is queued and end our side of the TCP connection.
    pub async fn close(&self) {
        let _ = self.tx.send(Out::Close).await;
    }
}

/// Our half of one stream.
#[derive(Debug, Clone)]
pub struct StreamWriter {
    pub id: u32,
    out: Sender,
}

impl StreamWriter {
    /// Send `data` (in frames of at most 32 KiB).
    pub async fn write(&self, data: &[u8]) -> io::Result<()> {
        for chunk in data.chunks(MAX_DATA) {
            self.out
                .send(Frame::Data {
                    stream_id: self.id,
                    flags: 0,
                    data: Bytes::copy_from_slice(chunk),
                })
                .await?;
        }
        Ok(())
    }

    /// FIN: we send nothing more on this stream.
    pub async fn finish(&self) -> io::Result<()> {
        self.out
            .send(Frame::Data {
                stream_id: self.id,
                flags: spdy::FLAG_FIN,
                data: Bytes::new(),
            })
            .await
    }

    /// RST_STREAM: the stream is over both ways.
    pub async fn reset(&self, status: u32) {
        let _ = self
            .out
            .send(Frame::RstStream {
                stream_id: self.id,
                status,
            })
            .await;
    }
}

/// A stream the client opened.
#[derive(Debug)]
pub struct Stream {
    pub headers: Headers,
    /// What the client sends; `None` after its FIN or RST, or when the connection
    /// ends.
    pub rx: mpsc::Receiver<Bytes>,
    pub writer: StreamWriter,
    /// Becomes true (or its sender goes away) when the client resets the stream or
    /// the connection ends: our half is no use any more.
    pub reset: watch::Receiver<bool>,
}

impl Stream {
    pub fn header(&self, name: &str) -> Option<&str> {
        spdy::header(&self.headers, name)
    }
}

/// Waits until the stream is reset or the connection gone.
pub async fn reset_or_gone(mut r: watch::Receiver<bool>) {
    let _ = r.wait_for(|v| *v).await;
}

/// The session's handle for the request handler.
#[derive(Debug)]
pub struct Session {
    /// Streams as the client opens them; ends when the connection does.
    pub streams: mpsc::Receiver<Stream>,
    pub out: Sender,
    /// Ends when the reader has stopped (the client closed the connection).
    reader_done: watch::Receiver<bool>,
    /// The highest stream id the client opened.
    last_id: watch::Receiver<u32>,
}

impl Session {
    /// Start the session on `io`, whose first bytes (read along with the HTTP
    /// request) are `leftover`.
    pub fn start<R, W>(read: R, write: W, leftover: BytesMut) -> io::Result<Session>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let encoder = Encoder::new().map_err(io::Error::other)?;
        let (tx, rx) = mpsc::channel(OUT_QUEUE);
        let out = Sender { tx };
        let (streams_tx, streams) = mpsc::channel(MAX_STREAMS);
        let (done_tx, reader_done) = watch::channel(false);
        let (id_tx, last_id) = watch::channel(0);
        tokio::spawn(write_loop(write, encoder, rx));
        tokio::spawn(read_loop(
            read,
            leftover,
            out.clone(),
            streams_tx,
            done_tx,
            id_tx,
        ));
        Ok(Session {
            streams,
            out,
            reader_done,
            last_id,
        })
    }

    /// Resolves once the client has closed the connection (or it broke).
    pub fn client_gone(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut done = self.reader_done.clone();
        async move {
            let _ = done.wait_for(|d| *d).await;
        }
    }

    /// End the session as kubelet's server does when a request is done: GOAWAY,
    /// our side closed, then (bounded by `linger`) wait for the client to close
    /// its side, so that nothing it has not read yet is lost to a TCP reset.
    pub async fn end(mut self, linger: Duration) {
        self.streams.close();
        let last = *self.last_id.borrow();
        self.out.go_away(last).await;
        self.out.close().await;
        let _ = tokio::time::timeout(linger, self.reader_done.wait_for(|d| *d)).await;
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut enc: Encoder,
    mut rx: mpsc::Receiver<Out>,
) {
    let mut buf = Vec::with_capacity(MAX_DATA + 64);
    while let Some(first) = rx.recv().await {
        // Whatever else is queued goes out in the same write.
        let mut next = Some(first);
        let mut close = false;
        while let Some(o) = next.take() {
            match o {
                Out::Frame(f) => {
                    if let Err(e) = enc.encode(&f, &mut buf) {
                        tracing::debug!("CRI streaming: encoding a frame: {e}");
                        return;
                    }
                }
                Out::Close => {
                    close = true;
                    break;
                }
            }
            if buf.len() < 256 << 10 {
                next = rx.try_recv().ok();
            }
        }
        if !buf.is_empty() {
            if let Err(e) = w.write_all(&buf).await {
                tracing::debug!("CRI streaming: writing: {e}");
                return;
            }
            buf.clear();
        }
        if close {
            break;
        }
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
}

/// A stream as the reader knows it.
struct Open {
    data: Option<mpsc::Sender<Bytes>>,
    reset: watch::Sender<bool>,
    window: Window,
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut r: R,
    mut buf: BytesMut,
    out: Sender,
    streams_tx: mpsc::Sender<Stream>,
    done: watch::Sender<bool>,
    last_id: watch::Sender<u32>,
) {
    let mut dec = Decoder::new();
    let mut open: HashMap<u32, Open> = HashMap::new();
    let mut session_window = Window::default();
    let mut highest = 0u32;
    let mut going_away = false;
    'conn: loop {
        loop {
            let frame = match dec.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!("CRI streaming: {e}");
                    out.go_away(highest).await;
                    break 'conn;
                }
            };
            match frame {
                Frame::SynStream {
                    stream_id,
                    flags,
                    headers,
                    ..
                } => {
                    // Client streams have odd, rising ids.
                    let status = if stream_id % 2 == 0 || stream_id <= highest {
                        Some(spdy::RST_PROTOCOL_ERROR)
                    } else if open.contains_key(&stream_id) {
                        Some(spdy::RST_STREAM_IN_USE)
                    } else if going_away || {
                        // Forget streams both sides are done with.
                        open.retain(|_, s| s.data.is_some() || s.reset.receiver_count() > 0);
                        open.len() >= MAX_STREAMS
                    } {
                        Some(spdy::RST_REFUSED_STREAM)
                    } else {
                        None
                    };
                    if let Some(status) = status {
                        let _ = out.send(Frame::RstStream { stream_id, status }).await;
                        continue;
                    }
                    highest = stream_id;
                    last_id.send_replace(stream_id);
                    let (data_tx, rx) = mpsc::channel(IN_QUEUE);
                    let (reset_tx, reset) = watch::channel(false);
                    // The reply goes out before anything a handler writes.
                    if out
                        .send(Frame::SynReply {
                            stream_id,
                            flags: 0,
                            headers: vec![],
                        })
                        .await
                        .is_err()
                    {
                        break 'conn;
                    }
                    let fin = flags & spdy::FLAG_FIN != 0;
                    open.insert(
                        stream_id,
                        Open {
                            data: (!fin).then_some(data_tx),
                            reset: reset_tx,
                            window: Window::default(),
                        },
                    );
                    let s = Stream {
                        headers,
                        rx,
                        writer: StreamWriter {
                            id: stream_id,
                            out: out.clone(),
                        },
                        reset,
                    };
                    if streams_tx.send(s).await.is_err() {
                        // Nobody takes streams any more.
                        open.remove(&stream_id);
                        let _ = out
                            .send(Frame::RstStream {
                                stream_id,
                                status: spdy::RST_REFUSED_STREAM,
                            })
                            .await;
                    }
                }
                Frame::Data {
                    stream_id,
                    flags,
                    data,
                } => {
                    let n = data.len();
                    let Some(s) = open.get_mut(&stream_id) else {
                        let _ = out
                            .send(Frame::RstStream {
                                stream_id,
                                status: spdy::RST_INVALID_STREAM,
                            })
                            .await;
                        continue;
                    };
                    if !data.is_empty() {
                        if let Some(tx) = &s.data {
                            if tx.send(data).await.is_err() {
                                // The handler has stopped reading this stream.
                                s.data = None;
                            }
                        }
                        if let Some(delta) = s.window.received(n) {
                            let _ = out.send(Frame::WindowUpdate { stream_id, delta }).await;
                        }
                        if let Some(delta) = session_window.received(n) {
                            let _ = out
                                .send(Frame::WindowUpdate {
                                    stream_id: 0,
                                    delta,
                                })
                                .await;
                        }
                    }
                    if flags & spdy::FLAG_FIN != 0 {
                        s.data = None;
                    }
                }
                Frame::RstStream { stream_id, .. } => {
                    if let Some(s) = open.remove(&stream_id) {
                        s.reset.send_replace(true);
                    }
                }
                Frame::Ping { id } => {
                    // Ours are even; a client's is echoed.
                    if id % 2 == 1 {
                        let _ = out.send(Frame::Ping { id }).await;
                    }
                }
                Frame::GoAway { .. } => going_away = true,
                // Our streams need no more headers; windows are not enforced
                // (see spdy::Window); SYN_REPLY is for streams we never open.
                Frame::Headers { .. }
                | Frame::Settings { .. }
                | Frame::WindowUpdate { .. }
                | Frame::SynReply { .. }
                | Frame::Other { .. } => {}
            }
        }
        match r.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!("CRI streaming: reading: {e}");
                break;
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 << 10);
        }
    }
    for (_, s) in open.drain() {
        s.reset.send_replace(true);
    }
    done.send_replace(true);
}
