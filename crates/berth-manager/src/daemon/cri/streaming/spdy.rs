//! SPDY/3.1 framing, as far as Kubernetes' streaming clients use it (client-go's
//! `httpstream/spdy` over moby's spdystream): the frame layout, header blocks
//! compressed with zlib and SPDY/3's shared dictionary (one compression context per
//! direction for the whole connection), and the window-update frame of SPDY/3.1's
//! flow control.
//!
//! Only the wire format lives here; streams and their life are `session.rs`'s.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;

/// Control frame types.
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// The last frame the sender sends on a stream (its half is closed).
pub const FLAG_FIN: u8 = 0x01;

/// RST_STREAM status codes used here.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_INVALID_STREAM: u32 = 2;
pub const RST_REFUSED_STREAM: u32 = 3;
pub const RST_STREAM_IN_USE: u32 = 8;

/// GOAWAY status: a normal end of the session.
pub const GOAWAY_OK: u32 = 0;

/// The frame header's length field is 24 bits.
pub const MAX_FRAME_PAYLOAD: usize = (1 << 24) - 1;
/// A control frame's payload is small in this protocol; anything much larger is
/// refused rather than buffered.
const MAX_CONTROL_PAYLOAD: usize = 1 << 20;
/// Largest decompressed header block accepted (a zlib bomb stops here).
const MAX_HEADER_BLOCK: usize = 256 << 10;
/// Largest number of name/value pairs in one header block.
const MAX_HEADER_PAIRS: usize = 1024;

/// Names and values of a header block. SPDY names are lowercase; several values of
/// one name are joined by NUL.
pub type Headers = Vec<(String, String)>;

/// The value of header `name` (case-insensitive), if any.
pub fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// One SPDY frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    /// (flags, id, value) entries.
    Settings {
        flags: u8,
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    /// Stream 0: the whole session's window (SPDY/3.1).
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
    /// A control frame of a type this server has no use for (CREDENTIAL, NOOP):
    /// read past and ignored, as the protocol asks.
    Other {
        kind: u16,
    },
}

/// Bytes that are not SPDY/3.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("SPDY: unsupported version {0}")]
    Version(u16),
    #[error("SPDY: {what} frame of {len} bytes is malformed")]
    Malformed { what: &'static str, len: usize },
    #[error("SPDY: control frame of {0} bytes is too large")]
    TooLarge(usize),
    #[error("SPDY: header block: {0}")]
    HeaderBlock(String),
}

/// SPDY/3's zlib dictionary for header blocks (section 2.6.10.1 of the draft): the
/// common header names, each with a 4-byte big-endian length, then common values.
fn dictionary() -> &'static [u8] {
    static DICT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DICT.get_or_init(|| {
        const NAMES: [&str; 65] = [
            "options",
            "head",
            "post",
            "put",
            "delete",
            "trace",
            "accept",
            "accept-charset",
            "accept-encoding",
            "accept-language",
            "accept-ranges",
            "age",
            "allow",
            "authorization",
            "cache-control",
            "connection",
            "content-base",
            "content-encoding",
            "content-language",
            "content-length",
            "content-location",
            "content-md5",
            "content-range",
            "content-type",
            "date",
            "etag",
            "expect",
            "expires",
            "from",
            "host",
            "if-match",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "last-modified",
            "location",
            "max-forwards",
            "pragma",
            "proxy-authenticate",
            "proxy-authorization",
            "range",
            "referer",
            "retry-after",
            "server",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "user-agent",
            "vary",
            "via",
            "warning",
            "www-authenticate",
            "method",
            "get",
            "status",
            "200 OK",
            "version",
            "HTTP/1.1",
            "url",
            "public",
            "set-cookie",
            "keep-alive",
            "origin",
        ];
        const VALUES: [&str; 8] = [
            // Status codes, then reason phrases.
            "100101201202205206300302303304305306307\
             402405406407408409410411412413414415416417502504505",
            "203 Non-Authoritative Information204 No Content\
             301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden\
             404 Not Found500 Internal Server Error501 Not Implemented\
             503 Service Unavailable",
            // Dates.
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
            // Content types.
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,\
             application/xhtml+xml,text/plain,text/javascript,",
            // Cache control and encodings.
            "publicprivatemax-age=gzip,deflate,sdch",
            "charset=utf-8charset=iso-8859-1,utf-,*,",
            "enq=0.",
        ];
        let mut d = Vec::with_capacity(1423);
        for n in NAMES {
            let len = u32::try_from(n.len()).unwrap_or(0);
            d.extend_from_slice(&len.to_be_bytes());
            d.extend_from_slice(n.as_bytes());
        }
        for v in VALUES {
            d.extend_from_slice(v.as_bytes());
        }
        d
    })
}

fn put_u24(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n.min(MAX_FRAME_PAYLOAD)).unwrap_or(0);
    out.extend_from_slice(&n.to_be_bytes()[1..]);
}

fn control_header(out: &mut Vec<u8>, kind: u16, flags: u8, len: usize) {
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    out.put_u8(flags);
    put_u24(out, len);
}

/// The uncompressed form of a header block.
fn header_block(h: &Headers) -> Vec<u8> {
    let mut out = Vec::new();
    let count = u32::try_from(h.len()).unwrap_or(u32::MAX);
    out.put_u32(count);
    for (n, v) in h {
        let name = n.to_ascii_lowercase();
        out.put_u32(u32::try_from(name.len()).unwrap_or(u32::MAX));
        out.extend_from_slice(name.as_bytes());
        out.put_u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        out.extend_from_slice(v.as_bytes());
    }
    out
}

fn parse_header_block(mut b: &[u8]) -> Result<Headers, SpdyError> {
    let bad = |why: &str| SpdyError::HeaderBlock(why.to_string());
    if b.remaining() < 4 {
        return Err(bad("truncated"));
    }
    let count = b.get_u32() as usize;
    if count > MAX_HEADER_PAIRS {
        return Err(bad("too many headers"));
    }
    let mut out = Vec::with_capacity(count);
    let string = |b: &mut &[u8]| -> Result<String, SpdyError> {
        if b.remaining() < 4 {
            return Err(bad("truncated"));
        }
        let len = b.get_u32() as usize;
        if b.remaining() < len {
            return Err(bad("truncated"));
        }
        let s = String::from_utf8(b[..len].to_vec()).map_err(|_| bad("not UTF-8"))?;
        b.advance(len);
        Ok(s)
    };
    for _ in 0..count {
        let name = string(&mut b)?;
        let value = string(&mut b)?;
        if name.is_empty() {
            return Err(bad("an empty header name"));
        }
        out.push((name.to_ascii_lowercase(), value));
    }
    Ok(out)
}

/// The writing side of a connection: frames to bytes, with the connection's header
/// compression context.
pub struct Encoder {
    z: Compress,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("spdy::Encoder")
    }
}

impl Encoder {
    pub fn new() -> Result<Encoder, SpdyError> {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(dictionary())
            .map_err(|e| SpdyError::HeaderBlock(format!("setting the dictionary: {e}")))?;
        Ok(Encoder { z })
    }

    /// One header block, compressed and flushed so that the peer can read it whole.
    fn compress(&mut self, h: &Headers) -> Result<Vec<u8>, SpdyError> {
        let input = header_block(h);
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            let before = self.z.total_in();
            self.z
                .compress_vec(&input[pos..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::HeaderBlock(e.to_string()))?;
            pos += usize::try_from(self.z.total_in() - before).unwrap_or(0);
            // Done once all input is in and the flush left room to spare.
            if pos >= input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    /// Append `f` to `out`.
    pub fn encode(&mut self, f: &Frame, out: &mut Vec<u8>) -> Result<(), SpdyError> {
        match f {
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                let block = self.compress(headers)?;
                control_header(out, SYN_STREAM, *flags, 10 + block.len());
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(associated_to & 0x7fff_ffff);
                out.put_u8((priority & 0x7) << 5);
                out.put_u8(0);
                out.extend_from_slice(&block);
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            }
            | Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let kind = if matches!(f, Frame::SynReply { .. }) {
                    SYN_REPLY
                } else {
                    HEADERS
                };
                let block = self.compress(headers)?;
                control_header(out, kind, *flags, 4 + block.len());
                out.put_u32(stream_id & 0x7fff_ffff);
                out.extend_from_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control_header(out, RST_STREAM, 0, 8);
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::Settings { flags, entries } => {
                control_header(out, SETTINGS, *flags, 4 + 8 * entries.len());
                out.put_u32(u32::try_from(entries.len()).unwrap_or(0));
                for (f, id, v) in entries {
                    out.put_u8(*f);
                    out.extend_from_slice(&id.to_be_bytes()[1..]);
                    out.put_u32(*v);
                }
            }
            Frame::Ping { id } => {
                control_header(out, PING, 0, 4);
                out.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control_header(out, GOAWAY, 0, 8);
                out.put_u32(last_good_stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control_header(out, WINDOW_UPDATE, 0, 8);
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(delta & 0x7fff_ffff);
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() > MAX_FRAME_PAYLOAD {
                    return Err(SpdyError::Malformed {
                        what: "DATA",
                        len: data.len(),
                    });
                }
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u8(*flags);
                put_u24(out, data.len());
                out.extend_from_slice(data);
            }
            Frame::Other { .. } => {}
        }
        Ok(())
    }
}

/// The reading side of a connection: bytes to frames, with the connection's header
/// decompression context.
pub struct Decoder {
    z: Decompress,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("spdy::Decoder")
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            z: Decompress::new(true),
        }
    }

    fn decompress(&mut self, input: &[u8]) -> Result<Headers, SpdyError> {
        let err = |e: String| SpdyError::HeaderBlock(e);
        let mut out: Vec<u8> = Vec::with_capacity(input.len() * 4 + 64);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 256 {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(err("too large".to_string()));
                }
                out.reserve(out.len().max(1024));
            }
            let before = self.z.total_in();
            let r = self
                .z
                .decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync);
            pos += usize::try_from(self.z.total_in() - before).unwrap_or(0);
            match r {
                Ok(Status::StreamEnd) => return Err(err("the zlib stream ended".to_string())),
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(_) => {
                        self.z
                            .set_dictionary(dictionary())
                            .map_err(|e| err(format!("setting the dictionary: {e}")))?;
                        continue;
                    }
                    None => return Err(err(e.to_string())),
                },
            }
            if pos >= input.len() && out.len() < out.capacity() {
                break;
            }
        }
        parse_header_block(&out)
    }

    /// The next whole frame at the start of `buf` (taken from it), or `None` when
    /// more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let len = (usize::from(buf[5]) << 16) | (usize::from(buf[6]) << 8) | usize::from(buf[7]);
        let control = buf[0] & 0x80 != 0;
        if control && len > MAX_CONTROL_PAYLOAD {
            return Err(SpdyError::TooLarge(len));
        }
        if buf.len() < 8 + len {
            buf.reserve(8 + len - buf.len());
            return Ok(None);
        }
        let mut head = buf.split_to(8);
        let payload = buf.split_to(len).freeze();
        let first = head.get_u32();
        let flags = head.get_u8();
        if !control {
            return Ok(Some(Frame::Data {
                stream_id: first & 0x7fff_ffff,
                flags,
                data: payload,
            }));
        }
        let version = u16::try_from((first >> 16) & 0x7fff).unwrap_or(0);
        let kind = u16::try_from(first & 0xffff).unwrap_or(0);
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        let short = |what: &'static str, need: usize| {
            if len < need {
                Err(SpdyError::Malformed { what, len })
            } else {
                Ok(())
            }
        };
        let mut p = payload;
        let frame = match kind {
            SYN_STREAM => {
                short("SYN_STREAM", 10)?;
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let associated_to = p.get_u32() & 0x7fff_ffff;
                let priority = p.get_u8() >> 5;
                p.advance(1);
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    flags,
                    headers: self.decompress(&p)?,
                }
            }
            SYN_REPLY | HEADERS => {
                short("SYN_REPLY", 4)?;
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let headers = self.decompress(&p)?;
                if kind == SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            RST_STREAM => {
                short("RST_STREAM", 8)?;
                Frame::RstStream {
                    stream_id: p.get_u32() & 0x7fff_ffff,
                    status: p.get_u32(),
                }
            }
            SETTINGS => {
                short("SETTINGS", 4)?;
                let n = p.get_u32() as usize;
                if p.remaining() < n.saturating_mul(8) {
                    return Err(SpdyError::Malformed {
                        what: "SETTINGS",
                        len,
                    });
                }
                let entries = (0..n)
                    .map(|_| {
                        let word = p.get_u32();
                        let f = u8::try_from(word >> 24).unwrap_or(0);
                        (f, word & 0x00ff_ffff, p.get_u32())
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            PING => {
                short("PING", 4)?;
                Frame::Ping { id: p.get_u32() }
            }
            GOAWAY => {
                short("GOAWAY", 4)?;
                let last_good_stream_id = p.get_u32() & 0x7fff_ffff;
                // SPDY/2 had no status; tolerate its absence.
                let status = if p.remaining() >= 4 { p.get_u32() } else { 0 };
                Frame::GoAway {
                    last_good_stream_id,
                    status,
                }
            }
            WINDOW_UPDATE => {
                short("WINDOW_UPDATE", 8)?;
                Frame::WindowUpdate {
                    stream_id: p.get_u32() & 0x7fff_ffff,
                    delta: p.get_u32() & 0x7fff_ffff,
                }
            }
            other => Frame::Other { kind: other },
        };
        Ok(Some(frame))
    }
}

/// SPDY/3.1 flow control for what a peer sends us: the window each stream (and the
/// session) starts with, and when to give it back. kubelet's clients never send
/// WINDOW_UPDATE and do not wait for one, so no sending side is held back here;
/// giving windows back keeps a client that does follow SPDY/3.1 going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Bytes the peer may still send before it must wait.
    left: u32,
}

/// The initial window of SPDY/3.1 (64 KiB) for streams and for the session.
pub const INITIAL_WINDOW: u32 = 64 << 10;

impl Default for Window {
    fn default() -> Self {
        Window {
            left: INITIAL_WINDOW,
        }
    }
}

impl Window {
    /// `n` bytes were received (and handed on): the delta to send back in a
    /// WINDOW_UPDATE once half the window is used, else `None`.
    pub fn received(&mut self, n: usize) -> Option<u32> {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.left = self.left.saturating_sub(n);
        if self.left <= INITIAL_WINDOW / 2 {
            let delta = INITIAL_WINDOW - self.left;
            self.left = INITIAL_WINDOW;
            Some(delta)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(frames: &[Frame]) -> Vec<Frame> {
        let mut enc = Encoder::new().unwrap();
        let mut dec = Decoder::new();
        let mut wire = Vec::new();
        for f in frames {
            enc.encode(f, &mut wire).unwrap();
        }
        // Fed a byte at a time: frames come out only once whole.
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in wire {
            buf.put_u8(b);
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        assert!(buf.is_empty());
        out
    }

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_dictionary_is_spdy3s() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        // zlib names a dictionary by its Adler-32; SPDY/3 peers expect this one.
        let mut z = Compress::new(Compression::default(), true);
        assert_eq!(z.set_dictionary(d).unwrap(), 0xe3c6_a7c2);
    }

    #[test]
    fn every_frame_survives_the_wire() {
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 3,
                flags: FLAG_FIN,
                headers: h(&[("streamtype", "error"), ("port", "8080")]),
            },
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: vec![],
            },
            Frame::Headers {
                stream_id: 3,
                flags: 0,
                headers: h(&[("a", "b\0c")]),
            },
            Frame::Data {
                stream_id: 3,
                flags: 0,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: Bytes::new(),
            },
            Frame::RstStream {
                stream_id: 5,
                status: RST_REFUSED_STREAM,
            },
            Frame::Settings {
                flags: 1,
                entries: vec![(0, 7, INITIAL_WINDOW), (1, 4, 100)],
            },
            Frame::Ping { id: 7 },
            Frame::GoAway {
                last_good_stream_id: 5,
                status: GOAWAY_OK,
            },
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 32768,
            },
        ];
        assert_eq!(roundtrip(&frames), frames);
    }

    #[test]
    fn header_blocks_share_one_compression_context() {
        // The second block of the same headers is much shorter: the context
        // carries over, so a decoder that started afresh could not read it.
        let hs = h(&[("streamtype", "stdout"), ("x-long-name", "a value")]);
        let mut enc = Encoder::new().unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let syn = |id| Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: hs.clone(),
        };
        enc.encode(&syn(1), &mut a).unwrap();
        enc.encode(&syn(3), &mut b).unwrap();
        assert!(b.len() < a.len(), "{} vs {}", b.len(), a.len());
        let mut dec = Decoder::new();
        let mut buf = BytesMut::from(&a[..]);
        buf.extend_from_slice(&b);
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(syn(1)));
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(syn(3)));
        let mut fresh = Decoder::new();
        assert!(fresh.decode(&mut BytesMut::from(&b[..])).is_err());
    }

    #[test]
    fn a_header_block_from_another_zlib_reads() {
        // SYN_STREAM 1 {streamtype: error} as written by Python's zlib with the
        // SPDY/3 dictionary (zdict), one Z_SYNC_FLUSH.
        let block =
            hex::decode("78bbe3c6a7c202a62346703a2b294a4dcc851625aca9a08006000000ffff").unwrap();
        let mut wire = vec![0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00];
        wire.push(u8::try_from(10 + block.len()).unwrap());
        wire.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        wire.extend_from_slice(&block);
        let f = Decoder::new()
            .decode(&mut BytesMut::from(&wire[..]))
            .unwrap()
            .unwrap();
        assert_eq!(
            f,
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: h(&[("streamtype", "error")]),
            }
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut dec = Decoder::new();
        // Version 2.
        let mut b = BytesMut::from(&[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert!(matches!(dec.decode(&mut b), Err(SpdyError::Version(2))));
        // A PING too short to hold its id.
        let mut b = BytesMut::from(&[0x80, 0x03, 0x00, 0x06, 0, 0, 0, 2, 0, 0][..]);
        assert!(dec.decode(&mut b).is_err());
        // A huge control frame is refused before it is buffered.
        let mut b = BytesMut::from(&[0x80, 0x03, 0x00, 0x01, 0, 0xff, 0xff, 0xff][..]);
        assert!(matches!(dec.decode(&mut b), Err(SpdyError::TooLarge(_))));
        // A header block that is not zlib.
        let mut b = BytesMut::from(
            &[
                0x80, 0x03, 0x00, 0x02, 0, 0, 0, 8, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef,
            ][..],
        );
        assert!(Decoder::new().decode(&mut b).is_err());
        // A header block claiming more pairs than it holds.
        assert!(parse_header_block(&[0, 0, 0, 2, 0, 0, 0, 1, b'a', 0, 0, 0, 0]).is_err());
        assert!(parse_header_block(&[0xff, 0xff, 0xff, 0xff]).is_err());
        // Unknown control frames are read past.
        let mut b = BytesMut::from(&[0x80, 0x03, 0x00, 0x0a, 0, 0, 0, 1, 9][..]);
        assert_eq!(dec.decode(&mut b).unwrap(), Some(Frame::Other { kind: 10 }));
    }

    #[test]
    fn windows_are_given_back_once_half_used() {
        let mut w = Window::default();
        assert_eq!(w.received(16 << 10), None);
        assert_eq!(w.received(16 << 10), Some(32 << 10));
        assert_eq!(w.received(1), None);
        // A peer overrunning its window gets it all back rather than a wrap.
        assert_eq!(w.received(1 << 20), Some(INITIAL_WINDOW));
    }

    #[test]
    fn header_lookup_ignores_case() {
        let hs = h(&[("streamtype", "data"), ("requestid", "0")]);
        assert_eq!(header(&hs, "streamType"), Some("data"));
        assert_eq!(header(&hs, "requestID"), Some("0"));
        assert_eq!(header(&hs, "port"), None);
    }
}
