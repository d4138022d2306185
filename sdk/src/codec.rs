//! How Rust types become key and value bytes.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why bytes could not be decoded into the function's parameter type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The Rust type that was expected.
    pub type_name: &'static str,
    /// What was wrong.
    pub reason: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot decode {}: {}", self.type_name, self.reason)
    }
}

impl std::error::Error for DecodeError {}

impl DecodeError {
    fn new<T>(reason: impl Into<String>) -> Self {
        DecodeError {
            type_name: std::any::type_name::<T>(),
            reason: reason.into(),
        }
    }
}

/// A type that can be written as a key or value.
pub trait Encode {
    /// Appends the encoding to `out` (without a length prefix: the framing
    /// adds it).
    fn encode(&self, out: &mut Vec<u8>);

    /// Appends the encoding as a byte string: `u32` length, then the bytes
    /// [`encode`](Self::encode) writes. The default reserves the prefix and
    /// fills it in afterwards; types whose length is known up front (strings,
    /// byte slices, numbers) write both in one go.
    #[inline]
    fn encode_prefixed(&self, out: &mut Vec<u8>) {
        weir_abi::write_prefixed(out, |b| self.encode(b))
    }
}

/// A type that can be read from a key or value, owning its data.
///
/// Implement this for your own types (or derive [`Data`](crate::Data)).
/// Every `Decode` type is also a [`BorrowDecode`] type, which is what
/// function parameters need.
pub trait Decode: Sized {
    /// Decodes the whole of `bytes`.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;
}

/// A type that can be read from a key or value, possibly borrowing from the
/// call's input: `&'a str` and `&'a [u8]` point into the input buffer, so a
/// function taking them copies nothing. Owned types get it from [`Decode`].
///
/// The parameters of `#[map]`, `#[reduce]`, `#[update]` and `#[migrate]`
/// functions are `BorrowDecode`.
pub trait BorrowDecode<'a>: Sized {
    /// Decodes the whole of `bytes`.
    fn borrow_decode(bytes: &'a [u8]) -> Result<Self, DecodeError>;
}

impl<'a, T: Decode> BorrowDecode<'a> for T {
    #[inline]
    fn borrow_decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        T::decode(bytes)
    }
}

impl<'a> BorrowDecode<'a> for &'a str {
    /// Checks the bytes are UTF-8 (the error names `String`, the type the
    /// wire format's strings have always been reported as).
    #[inline]
    fn borrow_decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        std::str::from_utf8(bytes).map_err(|e| DecodeError::new::<String>(e.to_string()))
    }
}

impl<'a> BorrowDecode<'a> for &'a [u8] {
    #[inline]
    fn borrow_decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        Ok(bytes)
    }
}

/// Appends a byte string (`u32` length + bytes) with one capacity check,
/// copying short strings without a `memcpy` call (which in wasm is a
/// `memory.copy`, a call into the runtime).
#[inline]
pub(crate) fn put_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len();
    let len = u32::try_from(n).expect("byte string longer than 4 GiB");
    out.reserve(4 + n);
    let at = out.len();
    // SAFETY: `reserve` made room for 4 + n bytes after `at`; every one of
    // them is written before `set_len`.
    unsafe {
        let dst = out.as_mut_ptr().add(at);
        dst.cast::<[u8; 4]>().write_unaligned(len.to_le_bytes());
        copy_short(bytes, dst.add(4));
        out.set_len(at + 4 + n);
    }
}

/// Copies `src` to `dst`: up to 16 bytes with two overlapping fixed-size
/// loads and stores, longer ones with `copy_nonoverlapping`.
///
/// # Safety
/// `dst` must be valid for `src.len()` bytes and not overlap `src`.
#[inline(always)]
unsafe fn copy_short(src: &[u8], dst: *mut u8) {
    let n = src.len();
    let s = src.as_ptr();
    // SAFETY: every read is inside `src`, every write inside `dst[..n]`.
    unsafe {
        match n {
            0 => {}
            1..=3 => {
                *dst = *s;
                *dst.add(n / 2) = *s.add(n / 2);
                *dst.add(n - 1) = *s.add(n - 1);
            }
            4..=7 => {
                let a = s.cast::<[u8; 4]>().read_unaligned();
                let b = s.add(n - 4).cast::<[u8; 4]>().read_unaligned();
                dst.cast::<[u8; 4]>().write_unaligned(a);
                dst.add(n - 4).cast::<[u8; 4]>().write_unaligned(b);
            }
            8..=16 => {
                let a = s.cast::<[u8; 8]>().read_unaligned();
                let b = s.add(n - 8).cast::<[u8; 8]>().read_unaligned();
                dst.cast::<[u8; 8]>().write_unaligned(a);
                dst.add(n - 8).cast::<[u8; 8]>().write_unaligned(b);
            }
            _ => std::ptr::copy_nonoverlapping(s, dst, n),
        }
    }
}

impl<T: Encode + ?Sized> Encode for &T {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        (**self).encode(out)
    }

    #[inline]
    fn encode_prefixed(&self, out: &mut Vec<u8>) {
        (**self).encode_prefixed(out)
    }
}

impl Encode for () {
    #[inline]
    fn encode(&self, _out: &mut Vec<u8>) {}

    #[inline]
    fn encode_prefixed(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0; 4])
    }
}

impl Decode for () {
    #[inline]
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::new::<()>(format!(
                "expected no bytes, found {}",
                bytes.len()
            )))
        }
    }
}

impl Encode for str {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes())
    }
    #[inline]
    fn encode_prefixed(&self, out: &mut Vec<u8>) {
        put_prefixed(out, self.as_bytes())
    }
}

impl Encode for String {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes())
    }
    #[inline]
    fn encode_prefixed(&self, out: &mut Vec<u8>) {
        put_prefixed(out, self.as_bytes())
    }
}

impl Decode for String {
    #[inline]
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        String::from_utf8(bytes.to_vec()).map_err(|e| DecodeError::new::<String>(e.to_string()))
    }
}

impl Encode for [u8] {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self)
    }
    #[inline]
    fn encode_prefixed(&self, out: &mut Vec<u8>) {
        put_prefixed(out, self)
    }
}

impl Encode for Vec<u8> {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self)
    }
    #[inline]
    fn encode_prefixed(&self, out: &mut Vec<u8>) {
        put_prefixed(out, self)
    }
}

impl Decode for Vec<u8> {
    #[inline]
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(bytes.to_vec())
    }
}

macro_rules! fixed_width {
    ($($t:ty),*) => {$(
        impl Encode for $t {
            #[inline]
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes())
            }

            #[inline]
            fn encode_prefixed(&self, out: &mut Vec<u8>) {
                // One fixed-size store of prefix and value together.
                const N: usize = std::mem::size_of::<$t>();
                let mut b = [0u8; 4 + N];
                b[..4].copy_from_slice(&(N as u32).to_le_bytes());
                b[4..].copy_from_slice(&self.to_le_bytes());
                out.extend_from_slice(&b)
            }
        }
        impl Decode for $t {
            #[inline]
            fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
                let arr = bytes.try_into().map_err(|_| {
                    DecodeError::new::<$t>(format!(
                        "expected {} bytes, found {}",
                        std::mem::size_of::<$t>(),
                        bytes.len()
                    ))
                })?;
                Ok(<$t>::from_le_bytes(arr))
            }
        }
    )*};
}

fixed_width!(i8, i16, i32, i64, i128, u8, u16, u32, u64, u128, f32, f64);

impl Encode for bool {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self as u8)
    }
}

impl Decode for bool {
    #[inline]
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(DecodeError::new::<bool>("expected one byte, 0 or 1")),
        }
    }
}

/// The bincode configuration weir uses for serde types: little-endian,
/// fixed-width integers, `u64` length prefixes, no size limit.
pub fn bincode_config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
    bincode::config::NoLimit,
> {
    bincode::config::legacy()
}

/// Encodes a serde value with weir's bincode configuration.
pub fn to_bincode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    bincode::serde::encode_into_std_write(value, out, bincode_config())
        .expect("writing to a Vec cannot fail");
}

/// Decodes a serde value with weir's bincode configuration; the whole of
/// `bytes` must be used.
pub fn from_bincode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, bincode_config())
        .map_err(|e| DecodeError::new::<T>(e.to_string()))?;
    if used != bytes.len() {
        return Err(DecodeError::new::<T>(format!(
            "{} trailing bytes",
            bytes.len() - used
        )));
    }
    Ok(value)
}

/// A serde type carried as bincode (`config::legacy()`). Use it for keys,
/// values and state that are structs, enums, tuples or collections:
/// `Bincode<(String, i64)>`, or derive [`Data`](crate::Data) on your own type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bincode<T>(pub T);

impl<T: Serialize> Encode for Bincode<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        to_bincode(&self.0, out)
    }
}

impl<T: DeserializeOwned> Decode for Bincode<T> {
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        from_bincode(bytes).map(Bincode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc<T: Encode>(v: T) -> Vec<u8> {
        let mut out = Vec::new();
        v.encode(&mut out);
        out
    }

    #[test]
    fn primitives_match_bincode_legacy() {
        // Fixed-width numbers are what bincode legacy would write too.
        for v in [0i64, 1, -1, i64::MAX] {
            let mut b = Vec::new();
            to_bincode(&v, &mut b);
            assert_eq!(enc(v), b);
        }
        assert_eq!(enc(1i64), vec![1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(enc("hé"), "hé".as_bytes());
        assert_eq!(i64::decode(&[1, 0, 0, 0, 0, 0, 0, 0]), Ok(1));
        assert!(i64::decode(&[1]).is_err());
        assert!(String::decode(&[0xff]).is_err());
        assert!(<()>::decode(b"x").is_err());
    }

    #[test]
    fn borrowed_decoding_matches_owned() {
        let ok = "hé".as_bytes();
        assert_eq!(<&str>::borrow_decode(ok), Ok("hé"));
        assert_eq!(<&[u8]>::borrow_decode(ok), Ok(ok));
        // The same message as `String`, byte for byte: other languages
        // reproduce it.
        let bad = [b'a', 0xff];
        assert_eq!(
            <&str>::borrow_decode(&bad).unwrap_err().to_string(),
            String::decode(&bad).unwrap_err().to_string()
        );
        assert_eq!(
            <i64 as BorrowDecode>::borrow_decode(&[1; 8]),
            i64::decode(&[1; 8])
        );
    }

    #[test]
    fn prefixed_encoding_is_length_then_encoding() {
        fn check<T: Encode + ?Sized>(v: &T) {
            let mut plain = Vec::new();
            v.encode(&mut plain);
            let mut framed = vec![9];
            v.encode_prefixed(&mut framed);
            let mut expected = vec![9];
            weir_abi::put_bytes(&mut expected, &plain);
            assert_eq!(framed, expected);
        }
        for n in 0..40 {
            let s: String = "abcdefghijklmnopqrstuvwxyz0123456789é"
                .chars()
                .take(n)
                .collect();
            check(s.as_str());
            check(&s);
            check(s.as_bytes());
            check(&s.as_bytes().to_vec());
        }
        check(&());
        check(&-2i64);
        check(&7u8);
        check(&1.5f64);
        check(&true);
        check(&Bincode(("ab", 3i64)));
    }

    #[test]
    fn bincode_layout_is_documented_layout() {
        // (String, i64) as bincode legacy: u64 length, bytes, i64.
        let bytes = enc(Bincode(("ab".to_string(), 3i64)));
        assert_eq!(
            bytes,
            vec![2, 0, 0, 0, 0, 0, 0, 0, b'a', b'b', 3, 0, 0, 0, 0, 0, 0, 0]
        );
        let back: Bincode<(String, i64)> = Decode::decode(&bytes).unwrap();
        assert_eq!(back.0, ("ab".to_string(), 3));
        assert!(<Bincode<(String, i64)>>::decode(&bytes[..5]).is_err());
    }
}
