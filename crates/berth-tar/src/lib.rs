//! Reading tar streams that come from strangers (layers from a registry, `load`
//! archives, `docker cp` uploads) with bounded memory and size.
//!
//! Its job: [`Guard`] sits between a tar stream and the `tar` crate and follows
//! the stream's block structure as it passes. It refuses, before the `tar`
//! crate reads them, the entries that crate would hold in memory whole: GNU long
//! names and link names, and PAX records, larger than [`Limits::max_metadata`]
//! (64 KiB by default: the kernel's own PATH_MAX is 4 KiB). It refuses GNU
//! sparse entries (a small archive that claims any size), and it stops a stream
//! past [`Limits::max_total`] bytes (a decompression bomb).
//!
//! It must never buffer more than one PAX record (to learn a `size=` override)
//! and one 512-byte header, and never change a byte it passes on.

use std::io::{self, Read};

/// A limit a stream went past; the `io::Error`s of [`Guard`] carry one (see
/// [`limit_error`]), so callers can answer with their own "bad input" code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("tar entry with a {kind} of {size} bytes: at most {limit} are accepted")]
    Metadata {
        kind: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("tar stream is larger than the {limit} bytes it may expand to")]
    Total { limit: u64 },
    #[error("tar header with an invalid size field")]
    BadSize,
    #[error("GNU sparse tar entries are not supported")]
    Sparse,
}

/// The limit behind an error of [`Guard`], if it is one.
pub fn limit_error(e: &io::Error) -> Option<&LimitError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<LimitError>())
}

/// What a [`Guard`] lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest GNU long name, long link name or PAX record set, in bytes.
    pub max_metadata: u64,
    /// Largest stream, in bytes (None: unbounded).
    pub max_total: Option<u64>,
}

/// 64 KiB: the largest GNU long name or PAX record set accepted by default.
pub const MAX_METADATA: u64 = 64 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_metadata: MAX_METADATA,
            max_total: None,
        }
    }
}

const BLOCK: usize = 512;

/// A reader that passes a tar stream through unchanged and fails (with an
/// `io::Error` of kind InvalidData carrying a [`LimitError`]) as soon as the
/// stream goes past its [`Limits`].
#[derive(Debug)]
pub struct Guard<R> {
    inner: R,
    limits: Limits,
    header: [u8; BLOCK],
    header_len: usize,
    /// Bytes of entry data and padding before the next header.
    skip: u64,
    /// The PAX record set being collected, and how much of it is still to come.
    pax: Option<(Vec<u8>, u64)>,
    /// A `size=` from the last PAX records, for the next entry.
    size_override: Option<u64>,
    total: u64,
    failed: Option<LimitError>,
}

impl<R: Read> Guard<R> {
    pub fn new(inner: R, limits: Limits) -> Self {
        Guard {
            inner,
            limits,
            header: [0; BLOCK],
            header_len: 0,
            skip: 0,
            pax: None,
            size_override: None,
            total: 0,
            failed: None,
        }
    }

    /// Bytes passed through so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    fn process(&mut self, mut bytes: &[u8]) -> Result<(), LimitError> {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let k = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                if let Some((buf, left)) = &mut self.pax {
                    let take = usize::try_from(*left).unwrap_or(usize::MAX).min(k);
                    buf.extend_from_slice(&bytes[..take]);
                    *left -= take as u64;
                    if *left == 0 {
                        self.size_override = pax_size(buf);
                        self.pax = None;
                    }
                }
                self.skip -= k as u64;
                bytes = &bytes[k..];
                continue;
            }
            let k = (BLOCK - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + k].copy_from_slice(&bytes[..k]);
            self.header_len += k;
            bytes = &bytes[k..];
            if self.header_len == BLOCK {
                self.header_len = 0;
                self.on_header()?;
            }
        }
        Ok(())
    }

    fn on_header(&mut self) -> Result<(), LimitError> {
        let h = &self.header;
        if h.iter().all(|b| *b == 0) {
            // End-of-archive blocks (or padding): the next block is a header too.
            return Ok(());
        }
        let size = parse_size(&h[124..136]).ok_or(LimitError::BadSize)?;
        let kind = match h[156] {
            b'L' => Some("GNU long name"),
            b'K' => Some("GNU long link name"),
            b'x' => Some("PAX record set"),
            b'g' => Some("global PAX record set"),
            b'S' => return Err(LimitError::Sparse),
            _ => None,
        };
        let data = match kind {
            Some(kind) => {
                if size > self.limits.max_metadata {
                    return Err(LimitError::Metadata {
                        kind,
                        size,
                        limit: self.limits.max_metadata,
                    });
                }
                if h[156] == b'x' && size > 0 {
                    // Bounded just above by max_metadata.
                    self.pax = Some((Vec::with_capacity(size as usize), size));
                }
                size
            }
            // A PAX `size` replaces the header's for the entry it precedes.
            None => self.size_override.take().unwrap_or(size),
        };
        self.skip = data.div_ceil(BLOCK as u64) * BLOCK as u64;
        Ok(())
    }
}

/// A tar size field: octal digits, or base-256 when the high bit is set.
fn parse_size(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(v);
    }
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    if digits.is_empty() {
        return Some(0);
    }
    let mut v: u64 = 0;
    for d in digits {
        v = v.checked_mul(8)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(v)
}

/// The `size` record of a PAX record set (`<len> size=<n>\n`).
fn pax_size(records: &[u8]) -> Option<u64> {
    let mut rest = records;
    let mut found = None;
    while !rest.is_empty() {
        let sp = rest.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
        if len <= sp || len > rest.len() {
            return found;
        }
        let record = &rest[sp + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(v) = record.strip_prefix(b"size=") {
            found = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
        }
        rest = &rest[len..];
    }
    found
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(io::Error::new(io::ErrorKind::InvalidData, e.clone()));
        }
        let n = self.inner.read(buf)?;
        self.total += n as u64;
        let result = match self.limits.max_total {
            Some(limit) if self.total > limit => Err(LimitError::Total { limit }),
            _ => self.process(&buf[..n]),
        };
        match result {
            Ok(()) => Ok(n),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(io::Error::new(io::ErrorKind::InvalidData, e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).unwrap();
    }

    fn read_all(data: &[u8], limits: Limits, chunk: usize) -> io::Result<Vec<String>> {
        struct Chunks<'a>(&'a [u8], usize);
        impl Read for Chunks<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(buf.len()).min(self.1);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut a = tar::Archive::new(Guard::new(Chunks(data, chunk), limits));
        let mut names = vec![];
        for e in a.entries()? {
            let mut e = e?;
            names.push(e.path()?.to_string_lossy().into_owned());
            io::copy(&mut e, &mut io::sink())?;
        }
        Ok(names)
    }

    #[test]
    fn ordinary_archives_pass_unchanged() {
        let mut b = tar::Builder::new(Vec::new());
        entry(&mut b, "a", b"hello");
        let long = "d/".repeat(300) + "f";
        entry(&mut b, &long, &[7u8; 3000]);
        entry(&mut b, "z", b"");
        let data = b.into_inner().unwrap();
        for chunk in [1, 7, 511, 512, 513, 100_000] {
            let names = read_all(&data, Limits::default(), chunk).unwrap();
            assert_eq!(names, ["a".to_string(), long.clone(), "z".to_string()]);
        }
        let mut out = vec![];
        Guard::new(&data[..], Limits::default())
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
    }

    /// A GNU long name header claiming more than the limit: refused before the
    /// tar crate would read it into memory.
    #[test]
    fn huge_long_names_are_refused() {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(1 << 40);
        h.set_cksum();
        let mut data = h.as_bytes().to_vec();
        data.extend_from_slice(&[b'a'; 4096]);
        let e = read_all(&data, Limits::default(), 4096).unwrap_err();
        assert_eq!(
            limit_error(&e),
            Some(&LimitError::Metadata {
                kind: "GNU long name",
                size: 1 << 40,
                limit: MAX_METADATA
            })
        );
        // Just at the limit is fine.
        let mut b = tar::Builder::new(Vec::new());
        entry(&mut b, &"n".repeat(65535), b"x");
        let data = b.into_inner().unwrap();
        assert_eq!(read_all(&data, Limits::default(), 8192).unwrap().len(), 1);
        let e = read_all(
            &data,
            Limits {
                max_metadata: 1000,
                max_total: None,
            },
            8192,
        )
        .unwrap_err();
        assert!(matches!(limit_error(&e), Some(LimitError::Metadata { .. })));
    }

    #[test]
    fn pax_records_are_bounded_and_their_size_followed() {
        // A PAX header with a size= record for the next entry.
        let pad = |v: &mut Vec<u8>| v.resize(v.len().div_ceil(512) * 512, 0);
        let records = b"15 size=100000\n";
        let mut pax = tar::Header::new_ustar();
        pax.set_entry_type(tar::EntryType::XHeader);
        pax.set_size(records.len() as u64);
        pax.set_cksum();
        let mut data = pax.as_bytes().to_vec();
        data.extend_from_slice(records);
        pad(&mut data);
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_path("big").unwrap();
        h.set_size(0); // the PAX record says 100000
        h.set_cksum();
        data.extend_from_slice(h.as_bytes());
        // Misread as headers, these would be refused as sparse entries.
        data.extend_from_slice(&[b'S'; 100_000]);
        pad(&mut data);
        let mut b2 = tar::Builder::new(Vec::new());
        entry(&mut b2, "after", b"ok");
        data.extend_from_slice(&b2.into_inner().unwrap());
        let names = read_all(&data, Limits::default(), 1000).unwrap();
        assert_eq!(names, ["big", "after"]);

        let mut pax = tar::Header::new_ustar();
        pax.set_entry_type(tar::EntryType::XHeader);
        pax.set_size(10 << 20);
        pax.set_cksum();
        let e = read_all(pax.as_bytes(), Limits::default(), 512).unwrap_err();
        assert!(matches!(
            limit_error(&e),
            Some(LimitError::Metadata {
                kind: "PAX record set",
                ..
            })
        ));
    }

    #[test]
    fn streams_stop_at_their_total() {
        let mut b = tar::Builder::new(Vec::new());
        entry(&mut b, "zeros", &vec![0u8; 1 << 20]);
        let data = b.into_inner().unwrap();
        let limits = Limits {
            max_total: Some(100_000),
            ..Limits::default()
        };
        let e = read_all(&data, limits, 65536).unwrap_err();
        assert_eq!(limit_error(&e), Some(&LimitError::Total { limit: 100_000 }));
    }

    #[test]
    fn sizes_and_sparse() {
        assert_eq!(parse_size(b"00000000012\0"), Some(10));
        assert_eq!(parse_size(b"        \0\0\0\0"), Some(0));
        let mut b256 = [0u8; 12];
        b256[0] = 0x80;
        b256[11] = 1;
        b256[10] = 2;
        assert_eq!(parse_size(&b256), Some(513));
        assert_eq!(
            pax_size(b"20 path=a/b/c/d/e/f\n15 size=123456\n"),
            Some(123456)
        );
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_size(0);
        h.set_cksum();
        let e = read_all(h.as_bytes(), Limits::default(), 512).unwrap_err();
        assert_eq!(limit_error(&e), Some(&LimitError::Sparse));
    }
}
