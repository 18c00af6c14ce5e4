//! Bridges between gRPC streams and the storage library's blocking readers and
//! writers: a client's upload becomes a [`ChannelReader`] for import and load, and
//! a [`ChannelWriter`] turns save, export and blob reads into answer chunks. Both
//! are bounded, so a slow side holds the other back instead of filling memory.

use std::io::{self, Read, Write};

use tokio::sync::mpsc;
use tonic::{Status, Streaming};

/// Size of the chunks sent to clients.
pub const CHUNK: usize = 256 * 1024;
/// Chunks in flight between the two sides.
const DEPTH: usize = 8;

/// A blocking reader over chunks that an async task receives from a client.
#[derive(Debug)]
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Err(e)) => return Err(e),
                Some(Ok(b)) => {
                    self.buf = b;
                    self.pos = 0;
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A reader over the data of a client stream: `first` (data already taken from
/// the first message) then `data(msg)` of every later message. A client that
/// breaks off makes the reader fail rather than end, so nothing half-sent is
/// taken for a whole upload.
pub fn reader<M, F>(first: Vec<u8>, mut stream: Streaming<M>, data: F) -> ChannelReader
where
    M: Send + 'static,
    F: Fn(M) -> Vec<u8> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(DEPTH);
    tokio::spawn(async move {
        if !first.is_empty() && tx.send(Ok(first)).await.is_err() {
            return;
        }
        loop {
            match stream.message().await {
                Ok(Some(m)) => {
                    let d = data(m);
                    if !d.is_empty() && tx.send(Ok(d)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(s) => {
                    let _ = tx
                        .send(Err(io::Error::other(format!(
                            "the client stream failed: {}",
                            s.message()
                        ))))
                        .await;
                    return;
                }
            }
        }
    });
    ChannelReader {
        rx,
        buf: Vec::new(),
        pos: 0,
    }
}

/// A blocking writer whose bytes go to a client as answer messages of `CHUNK`
/// bytes; fails with BrokenPipe once the client has gone.
#[derive(Debug)]
pub struct ChannelWriter<T> {
    tx: mpsc::Sender<Result<T, Status>>,
    wrap: fn(Vec<u8>) -> T,
    buf: Vec<u8>,
}

impl<T> ChannelWriter<T> {
    pub fn new(tx: mpsc::Sender<Result<T, Status>>, wrap: fn(Vec<u8>) -> T) -> Self {
        ChannelWriter {
            tx,
            wrap,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok((self.wrap)(chunk)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client has gone"))
    }

    /// Send what is buffered; the stream ends when the writer is dropped.
    pub fn finish(mut self) -> io::Result<()> {
        self.send_buf()
    }
}

impl<T> Write for ChannelWriter<T> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The sending half of an answer stream.
pub type AnswerSender<T> = mpsc::Sender<Result<T, Status>>;
/// An answer stream, as a service method returns it.
pub type AnswerStream<T> = tokio_stream::wrappers::ReceiverStream<Result<T, Status>>;

/// The sending half for an answer stream, and the stream to return.
pub fn answer<T: Send + 'static>() -> (AnswerSender<T>, AnswerStream<T>) {
    let (tx, rx) = mpsc::channel(DEPTH);
    (tx, tokio_stream::wrappers::ReceiverStream::new(rx))
}
