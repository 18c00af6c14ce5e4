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

    /// Queue `f` if there is room: for what the peer can do without (a window
    /// update), so that the reader never waits on the writer for it.
    fn offer(&self, f: Frame) {
        let _ = self.tx.try_send(Out::Frame(f));
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
                            out.offer(Frame::WindowUpdate { stream_id, delta });
                        }
                        if let Some(delta) = session_window.received(n) {
                            out.offer(Frame::WindowUpdate {
                                stream_id: 0,
                                delta,
                            });
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A client on the other end of an in-memory connection: frames in, frames
    /// out, with its own compression contexts.
    struct Client {
        io: tokio::io::DuplexStream,
        enc: Encoder,
        dec: Decoder,
        buf: BytesMut,
    }

    impl Client {
        async fn send(&mut self, f: Frame) {
            let mut out = Vec::new();
            self.enc.encode(&f, &mut out).unwrap();
            self.io.write_all(&out).await.unwrap();
        }

        /// The next frame, or `None` at the end of the connection.
        async fn next(&mut self) -> Option<Frame> {
            loop {
                if let Some(f) = self.dec.decode(&mut self.buf).unwrap() {
                    return Some(f);
                }
                if self.io.read_buf(&mut self.buf).await.unwrap() == 0 {
                    return None;
                }
            }
        }
    }

    fn start() -> (Session, Client) {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let (rd, wr) = tokio::io::split(ours);
        let session = Session::start(rd, wr, BytesMut::new()).unwrap();
        let client = Client {
            io: theirs,
            enc: Encoder::new().unwrap(),
            dec: Decoder::new(),
            buf: BytesMut::new(),
        };
        (session, client)
    }

    fn syn(id: u32, kind: &str, flags: u8) -> Frame {
        Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            flags,
            headers: vec![("streamtype".to_string(), kind.to_string())],
        }
    }

    fn data(id: u32, d: &'static [u8], flags: u8) -> Frame {
        Frame::Data {
            stream_id: id,
            flags,
            data: Bytes::from_static(d),
        }
    }

    #[tokio::test]
    async fn streams_are_accepted_fed_and_closed() {
        let (mut s, mut c) = start();
        c.send(syn(1, "stdin", 0)).await;
        assert!(matches!(
            c.next().await,
            Some(Frame::SynReply { stream_id: 1, .. })
        ));
        let mut stdin = s.streams.recv().await.unwrap();
        assert_eq!(stdin.header("streamType"), Some("stdin"));
        c.send(data(1, b"hello", 0)).await;
        c.send(data(1, b"", spdy::FLAG_FIN)).await;
        assert_eq!(stdin.rx.recv().await.unwrap(), &b"hello"[..]);
        assert!(
            stdin.rx.recv().await.is_none(),
            "FIN ends what the client sends"
        );

        // Our half: data, then FIN.
        stdin.writer.write(b"out").await.unwrap();
        stdin.writer.finish().await.unwrap();
        assert_eq!(c.next().await, Some(data(1, b"out", 0)));
        assert_eq!(c.next().await, Some(data(1, b"", spdy::FLAG_FIN)));

        // A client's ping comes back; a reset stream says so.
        c.send(Frame::Ping { id: 7 }).await;
        assert_eq!(c.next().await, Some(Frame::Ping { id: 7 }));
        c.send(syn(3, "data", 0)).await;
        assert!(matches!(
            c.next().await,
            Some(Frame::SynReply { stream_id: 3, .. })
        ));
        let d = s.streams.recv().await.unwrap();
        c.send(Frame::RstStream {
            stream_id: 3,
            status: spdy::RST_REFUSED_STREAM,
        })
        .await;
        reset_or_gone(d.reset.clone()).await;

        // Bad ids are refused; data for an unknown stream is answered with RST.
        c.send(syn(2, "even", 0)).await;
        assert!(matches!(
            c.next().await,
            Some(Frame::RstStream {
                stream_id: 2,
                status: spdy::RST_PROTOCOL_ERROR
            })
        ));
        c.send(syn(3, "again", 0)).await;
        assert!(matches!(
            c.next().await,
            Some(Frame::RstStream { stream_id: 3, .. })
        ));
        c.send(data(99, b"x", 0)).await;
        assert!(matches!(
            c.next().await,
            Some(Frame::RstStream {
                stream_id: 99,
                status: spdy::RST_INVALID_STREAM
            })
        ));

        // The end: GOAWAY naming the last stream, then our side closes.
        let gone = s.client_gone();
        let end = tokio::spawn(s.end(Duration::from_secs(30)));
        assert_eq!(
            c.next().await,
            Some(Frame::GoAway {
                last_good_stream_id: 3,
                status: spdy::GOAWAY_OK
            })
        );
        assert_eq!(c.next().await, None);
        drop(c);
        gone.await;
        end.await.unwrap();
    }

    #[tokio::test]
    async fn windows_are_given_back_and_big_writes_are_split() {
        let (mut s, mut c) = start();
        c.send(syn(1, "stdin", 0)).await;
        c.next().await;
        let mut stdin = s.streams.recv().await.unwrap();
        static CHUNK: [u8; 16 << 10] = [7; 16 << 10];
        for _ in 0..2 {
            c.send(data(1, &CHUNK, 0)).await;
            assert_eq!(stdin.rx.recv().await.unwrap().len(), CHUNK.len());
        }
        // Half the 64 KiB window used: the stream's and the session's come back.
        let mut updates = vec![c.next().await.unwrap(), c.next().await.unwrap()];
        updates.sort_by_key(|f| match f {
            Frame::WindowUpdate { stream_id, .. } => *stream_id,
            _ => u32::MAX,
        });
        assert_eq!(
            updates,
            [
                Frame::WindowUpdate {
                    stream_id: 0,
                    delta: 32 << 10
                },
                Frame::WindowUpdate {
                    stream_id: 1,
                    delta: 32 << 10
                },
            ]
        );
        stdin.writer.write(&[1u8; 80 << 10]).await.unwrap();
        let mut sizes = Vec::new();
        for _ in 0..3 {
            match c.next().await {
                Some(Frame::Data { data, .. }) => sizes.push(data.len()),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(sizes, [32 << 10, 32 << 10, 16 << 10]);
    }
}
