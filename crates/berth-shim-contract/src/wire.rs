//! The shim's wire protocol: the `berth.shim.v1` messages (generated from
//! proto/berth/shim/v1/shim.proto, see [`pb`]) in length-prefixed frames over the
//! shim's unix socket. It replaces gRPC, whose HTTP/2 stack cost the shim more
//! memory than everything else it does.
//!
//! One call per connection. The client sends a frame whose kind is the [`Method`]
//! and whose payload is the request; the shim answers with one [`Kind::Reply`]
//! frame (the response) or one [`Kind::Status`] frame (an [`RpcStatus`] error),
//! then closes. Attach is the one streaming call: after its first request the
//! client sends more `AttachRequest`s as [`Kind::Message`] frames (shutting down
//! its writing side when it has no more). The shim answers first with an empty
//! `Reply` frame once the client is subscribed to the output (so a process
//! started after it loses none), then sends every `AttachResponse` as a `Message`
//! frame and ends the stream with a `Status` frame (code [`Code::Ok`] when the
//! output simply ended; an error, or an `Ok` when the output had already ended,
//! may come instead of the `Reply`).
//!
//! A frame: 4 bytes of payload length (big-endian), 1 byte of kind, the payload
//! (a protobuf message). Payloads above [`MAX_FRAME`] are refused by both sides.

#[cfg(feature = "client")]
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The generated `berth.shim.v1` messages.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/berth.shim.v1.rs"));
}

/// The largest payload of a frame (a process spec, stats, a chunk of stdin).
pub const MAX_FRAME: usize = 16 << 20;
/// Bytes before a frame's payload.
pub const HEADER: usize = 5;

/// What a frame carries: a method (the first frame of a call), or one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A unary call's response.
    Reply = 0x80,
    /// One message of Attach's stream, either way.
    Message = 0x81,
    /// An error, or the end of Attach's answers: an [`RpcStatus`].
    Status = 0x82,
}

macro_rules! methods {
    ($($name:ident = $n:literal),* $(,)?) => {
        /// The shim's calls, as they name themselves in a call's first frame.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        pub enum Method { $($name = $n),* }

        impl Method {
            /// The method a frame kind names, if any.
            pub fn from_kind(kind: u8) -> Option<Method> {
                match kind {
                    $($n => Some(Method::$name),)*
                    _ => None,
                }
            }
        }
    };
}

methods! {
    Connect = 1,
    State = 2,
    Create = 3,
    Start = 4,
    Kill = 5,
    Delete = 6,
    Exec = 7,
    ResizePty = 8,
    CloseIo = 9,
    Wait = 10,
    Pids = 11,
    Pause = 12,
    Resume = 13,
    Update = 14,
    Stats = 15,
    Attach = 16,
    Shutdown = 17,
    ReopenLog = 18,
}

/// Status codes, with gRPC's numbers (the manager hands them on as such).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    NotFound = 5,
    AlreadyExists = 6,
    FailedPrecondition = 9,
    Internal = 13,
    Unavailable = 14,
}

/// An error answer, or the end of a stream.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(uint32, tag = "1")]
    pub code: u32,
    #[prost(string, tag = "2")]
    pub message: String,
}

impl RpcStatus {
    pub fn new(code: Code, message: impl Into<String>) -> RpcStatus {
        RpcStatus {
            code: code as u32,
            message: message.into(),
        }
    }
}

/// A frame that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is larger than the limit ({MAX_FRAME})")]
    TooLarge(usize),
    #[error("undecodable frame: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Encode one frame.
pub fn frame(kind: u8, msg: &impl prost::Message) -> Vec<u8> {
    let len = msg.encoded_len();
    let mut buf = Vec::with_capacity(HEADER + len);
    // Callers never build messages near 4 GiB; the receiver refuses big ones anyway.
    buf.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    buf.push(kind);
    // Encoding into a Vec cannot run out of room.
    let _ = msg.encode(&mut buf);
    buf
}

/// A frame's kind and payload length from its header; payloads above
/// [`MAX_FRAME`] are refused.
pub fn parse_header(header: &[u8; HEADER]) -> Result<(u8, usize), FrameError> {
    let [a, b, c, d, kind] = *header;
    let len = usize::try_from(u32::from_be_bytes([a, b, c, d])).unwrap_or(usize::MAX);
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    Ok((kind, len))
}

/// Write one frame.
#[cfg(feature = "client")]
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: u8,
    msg: &impl prost::Message,
) -> std::io::Result<()> {
    w.write_all(&frame(kind, msg)).await
}

/// Read one frame: `None` at a clean end of file before its first byte.
#[cfg(feature = "client")]
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<(u8, Vec<u8>)>, FrameError> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        let n = r.read(&mut header[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        got += n;
    }
    let (kind, len) = parse_header(&header)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some((kind, payload)))
}

/// Decode a payload as `M`.
pub fn decode<M: prost::Message + Default>(payload: &[u8]) -> Result<M, FrameError> {
    Ok(M::decode(payload)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn headers_parse_and_big_payloads_are_refused() {
        let buf = frame(
            Method::Wait as u8,
            &pb::WaitRequest {
                exec_id: "x".into(),
            },
        );
        let header: [u8; HEADER] = buf[..HEADER].try_into().unwrap();
        assert_eq!(
            parse_header(&header).unwrap(),
            (Method::Wait as u8, buf.len() - HEADER)
        );
        let mut big = [0u8; HEADER];
        big[..4].copy_from_slice(&((MAX_FRAME + 1) as u32).to_be_bytes());
        assert!(matches!(parse_header(&big), Err(FrameError::TooLarge(_))));
    }

    #[cfg(feature = "client")]
    #[tokio::test]
    async fn frames_round_trip() {
        let req = pb::StateRequest {
            exec_id: "e1".into(),
        };
        let mut buf = frame(Method::State as u8, &req);
        buf.extend(frame(
            Kind::Status as u8,
            &RpcStatus::new(Code::NotFound, "x"),
        ));
        let mut r = &buf[..];
        let (kind, p) = read_frame(&mut r).await.unwrap().unwrap();
        assert_eq!(Method::from_kind(kind), Some(Method::State));
        assert_eq!(decode::<pb::StateRequest>(&p).unwrap(), req);
        let (kind, p) = read_frame(&mut r).await.unwrap().unwrap();
        assert_eq!(kind, Kind::Status as u8);
        assert_eq!(decode::<RpcStatus>(&p).unwrap().code, Code::NotFound as u32);
        assert!(read_frame(&mut r).await.unwrap().is_none());
    }

    #[cfg(feature = "client")]
    #[tokio::test]
    async fn oversized_and_cut_frames_are_errors() {
        let mut big = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        big.push(1);
        assert!(matches!(
            read_frame(&mut &big[..]).await,
            Err(FrameError::TooLarge(_))
        ));
        let cut = [0u8, 0, 0, 9, 1, 1];
        assert!(read_frame(&mut &cut[..]).await.is_err());
        assert!(read_frame(&mut &cut[..3]).await.is_err());
    }

    #[test]
    fn kinds_and_methods_do_not_overlap() {
        for k in [Kind::Reply, Kind::Message, Kind::Status] {
            assert_eq!(Method::from_kind(k as u8), None);
        }
        assert_eq!(Method::from_kind(17), Some(Method::Shutdown));
        assert_eq!(Method::from_kind(0), None);
    }
}
