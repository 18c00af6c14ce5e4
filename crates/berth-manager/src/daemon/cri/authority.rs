//! A relay in front of the CRI server that makes kubelet's requests acceptable to
//! it: Go gRPC clients of kubelet 1.26 and cri-tools 1.26 dial a unix socket with
//! the socket's path as the HTTP/2 `:authority` (`/run/berth/cri.sock`), which is
//! not an authority, and the HTTP/2 server under tonic (h2) refuses such a request
//! with PROTOCOL_ERROR. Each connection is relayed through an in-process pipe;
//! the client's header blocks are decoded (HPACK), a path-like `:authority`
//! becomes `localhost` (what newer clients send), and the block is encoded again
//! with the relay's own table. Every other frame, and everything the server
//! sends, passes through unchanged.
//!
//! It never interprets anything but frame boundaries and header blocks, and
//! drops a connection whose framing is wrong rather than guess.

use std::io;

use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::UnixListener;
use tokio_stream::wrappers::ReceiverStream;

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame the server accepts (HTTP/2's default, which tonic keeps).
const MAX_FRAME: usize = 16 << 10;
/// The largest header block put together from HEADERS and CONTINUATION frames.
const MAX_BLOCK: usize = 1 << 20;
/// Buffer of the in-process pipe per connection.
const PIPE: usize = 256 << 10;

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

/// Connections accepted on `listener`, each relayed; what tonic serves.
pub fn incoming(listener: UnixListener) -> ReceiverStream<io::Result<DuplexStream>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let conn = match listener.accept().await {
                Ok((conn, _)) => conn,
                Err(e) => {
                    tracing::warn!("accepting a CRI connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (ours, theirs) = tokio::io::duplex(PIPE);
            if tx.send(Ok(theirs)).await.is_err() {
                return; // the server stopped
            }
            tokio::spawn(async move {
                let (client_r, mut client_w) = conn.into_split();
                let (server_r, server_w) = tokio::io::split(ours);
                let up = tokio::spawn(async move {
                    if let Err(e) = relay_requests(client_r, server_w).await {
                        tracing::debug!("CRI connection: {e}");
                    }
                });
                let mut server_r = server_r;
                let _ = tokio::io::copy(&mut server_r, &mut client_w).await;
                let _ = client_w.shutdown().await;
                up.abort();
            });
        }
    });
    ReceiverStream::new(rx)
}

/// `:authority` values that are not authorities (a socket path) become
/// `localhost`.
fn fix_authority(headers: &mut [(Vec<u8>, Vec<u8>)]) {
    for (name, value) in headers.iter_mut() {
        if name.as_slice() == b":authority" && value.iter().any(|b| matches!(b, b'/' | b'%')) {
            *value = b"localhost".to_vec();
        }
    }
}

/// Write a header block as one HEADERS frame and as many CONTINUATION frames as
/// it needs.
async fn write_block<W: AsyncWrite + Unpin>(
    to: &mut W,
    stream: u32,
    end_stream: bool,
    block: &[u8],
) -> io::Result<()> {
    let mut chunks = block.chunks(MAX_FRAME).peekable();
    let mut first = true;
    if block.is_empty() {
        let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
        return write_frame(to, HEADERS, flags, stream, &[]).await;
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let (kind, mut flags) = if first {
            (HEADERS, if end_stream { END_STREAM } else { 0 })
        } else {
            (CONTINUATION, 0)
        };
        if last {
            flags |= END_HEADERS;
        }
        write_frame(to, kind, flags, stream, chunk).await?;
        first = false;
    }
    Ok(())
}

async fn write_frame<W: AsyncWrite + Unpin>(
    to: &mut W,
    kind: u8,
    flags: u8,
    stream: u32,
    payload: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| bad("frame too large"))?;
    let l = len.to_be_bytes();
    let mut head = [0u8; 9];
    head[..3].copy_from_slice(&l[1..]);
    head[3] = kind;
    head[4] = flags;
    head[5..].copy_from_slice(&stream.to_be_bytes());
    to.write_all(&head).await?;
    to.write_all(payload).await
}

/// Client -> server: the preface, then frame by frame.
async fn relay_requests<R, W>(mut from: R, mut to: W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut preface = [0u8; 24];
    from.read_exact(&mut preface).await?;
    if &preface != PREFACE {
        return Err(bad("not an HTTP/2 connection"));
    }
    to.write_all(&preface).await?;
    let mut decoder = Decoder::new();
    let mut encoder = Encoder::new();
    // A header block still waiting for its CONTINUATION frames.
    let mut pending: Option<(u32, bool, Vec<u8>)> = None;
    loop {
        let mut head = [0u8; 9];
        match from.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if len > MAX_FRAME {
            return Err(bad("frame larger than the server allows"));
        }
        let mut payload = vec![0u8; len];
        from.read_exact(&mut payload).await?;
        if pending.is_some() && kind != CONTINUATION {
            return Err(bad("a header block interrupted"));
        }
        let block = match kind {
            HEADERS => {
                let mut start = 0;
                let mut end = payload.len();
                if flags & PADDED != 0 {
                    let pad =
                        usize::from(*payload.first().ok_or_else(|| bad("empty padded frame"))?);
                    start = 1;
                    end = end
                        .checked_sub(pad)
                        .ok_or_else(|| bad("padding too long"))?;
                }
                if flags & PRIORITY != 0 {
                    start += 5;
                }
                let fragment = payload
                    .get(start..end)
                    .ok_or_else(|| bad("short HEADERS frame"))?;
                let b = (stream, flags & END_STREAM != 0, fragment.to_vec());
                if flags & END_HEADERS == 0 {
                    pending = Some(b);
                    continue;
                }
                b
            }
            CONTINUATION => {
                let Some(mut b) = pending.take() else {
                    return Err(bad("CONTINUATION without HEADERS"));
                };
                if b.0 != stream || b.2.len() + payload.len() > MAX_BLOCK {
                    return Err(bad("bad CONTINUATION"));
                }
                b.2.extend_from_slice(&payload);
                if flags & END_HEADERS == 0 {
                    pending = Some(b);
                    continue;
                }
                b
            }
            _ => {
                to.write_all(&head).await?;
                to.write_all(&payload).await?;
                continue;
            }
        };
        let (stream, end_stream, fragment) = block;
        let mut headers = decoder
            .decode(&fragment)
            .map_err(|e| bad(&format!("undecodable header block: {e:?}")))?;
        fix_authority(&mut headers);
        let encoded = encoder.encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        write_block(&mut to, stream, end_stream, &encoded).await?;
    }
    to.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(mut data: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut out = Vec::new();
        while data.len() >= 9 {
            let len = usize::from(data[0]) << 16 | usize::from(data[1]) << 8 | usize::from(data[2]);
            let stream = u32::from_be_bytes([data[5], data[6], data[7], data[8]]);
            out.push((data[3], data[4], stream, data[9..9 + len].to_vec()));
            data = &data[9 + len..];
        }
        out
    }

    #[tokio::test]
    async fn a_path_authority_becomes_localhost_and_other_frames_pass() {
        let mut client = Encoder::new();
        let headers: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":authority", b"/run/berth/cri.sock"),
            (b":path", b"/runtime.v1.RuntimeService/Version"),
        ];
        let block = client.encode(headers.clone());
        let mut input = PREFACE.to_vec();
        // HEADERS split over a CONTINUATION, padded, then a DATA frame.
        let (a, b) = block.split_at(5);
        let mut first = vec![2u8];
        first.extend_from_slice(a);
        first.extend_from_slice(&[0, 0]);
        write_frame(&mut input, HEADERS, PADDED, 1, &first)
            .await
            .unwrap();
        write_frame(&mut input, CONTINUATION, END_HEADERS, 1, b)
            .await
            .unwrap();
        write_frame(&mut input, 0x0, END_STREAM, 1, b"data")
            .await
            .unwrap();
        // The same request again: the client's encoder now indexes it.
        write_frame(
            &mut input,
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
            &client.encode(headers),
        )
        .await
        .unwrap();

        let mut out = Vec::new();
        relay_requests(input.as_slice(), &mut out).await.unwrap();
        assert_eq!(&out[..24], PREFACE);
        let f = frames(&out[24..]).await;
        assert_eq!(f.len(), 3);
        let mut server = Decoder::new();
        for (i, stream, end_stream) in [(0, 1, false), (2, 3, true)] {
            assert_eq!(f[i].0, HEADERS);
            assert_eq!(f[i].2, stream);
            assert_eq!(f[i].1 & END_STREAM != 0, end_stream);
            let got = server.decode(&f[i].3).unwrap();
            assert_eq!(got[1], (b":authority".to_vec(), b"localhost".to_vec()));
            assert_eq!(got[2].1, b"/runtime.v1.RuntimeService/Version".to_vec());
        }
        assert_eq!((f[1].0, f[1].3.as_slice()), (0x0, &b"data"[..]));
    }

    #[tokio::test]
    async fn bad_framing_is_refused() {
        let mut input = PREFACE.to_vec();
        write_frame(&mut input, CONTINUATION, END_HEADERS, 1, b"x")
            .await
            .unwrap();
        assert!(relay_requests(input.as_slice(), Vec::new()).await.is_err());
        assert!(
            relay_requests(&b"GET / HTTP/1.1\r\n\r\n\r\n\r\n\r\n"[..], Vec::new())
                .await
                .is_err()
        );
        let mut input = PREFACE.to_vec();
        write_frame(&mut input, HEADERS, PADDED | END_HEADERS, 1, &[9, 1])
            .await
            .unwrap();
        assert!(relay_requests(input.as_slice(), Vec::new()).await.is_err());
    }

    #[test]
    fn only_path_like_authorities_change() {
        let mut h = vec![
            (b":authority".to_vec(), b"localhost:1234".to_vec()),
            (b"x".to_vec(), b"/a".to_vec()),
        ];
        fix_authority(&mut h);
        assert_eq!(h[0].1, b"localhost:1234".to_vec());
        assert_eq!(h[1].1, b"/a".to_vec());
    }
}
