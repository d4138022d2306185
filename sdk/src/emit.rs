//! What a function returns: records written straight into the output.

use std::fmt;

use crate::codec::Encode;

/// The output record batch of a map, update or migrate call, written in
/// its wire form as records arrive: `u32 count`, then per record the key
/// and the value as byte strings. Nothing is allocated per record; the
/// count is filled in at the end.
#[derive(Debug, Clone, Default)]
pub struct RecordWriter {
    buf: Vec<u8>,
    len: usize,
}

impl RecordWriter {
    /// An empty batch with room for `bytes` bytes of records.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.saturating_add(4));
        buf.extend_from_slice(&[0; 4]);
        RecordWriter { buf, len: 0 }
    }

    /// Appends a record.
    #[inline(always)]
    pub fn push<K: Encode + ?Sized, V: Encode + ?Sized>(&mut self, key: &K, value: &V) {
        key.encode_prefixed(&mut self.buf);
        value.encode_prefixed(&mut self.buf);
        self.len += 1;
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no record was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The record batch in its wire form, count included.
    pub fn into_bytes(mut self) -> Vec<u8> {
        if self.buf.is_empty() {
            self.buf.extend_from_slice(&[0; 4]);
        }
        // Every record takes at least 8 bytes, so the count fits a u32 in
        // any buffer a 32-bit memory can hold.
        let n = u32::try_from(self.len).expect("more than u32::MAX records");
        self.buf[..4].copy_from_slice(&n.to_le_bytes());
        self.buf
    }
}

/// How a value is emitted; lets [`Emit`] cover single records and
/// iterators without their implementations overlapping. You never name it.
pub mod form {
    use std::marker::PhantomData;

    /// A record or `()`.
    pub struct Single;

    /// An `Option`, `Vec`, array or `Result` whose contents are emitted
    /// with form `F`.
    pub struct Within<F>(PhantomData<F>);

    /// An iterator whose items are emitted with form `F`.
    pub struct Iterated<F>(PhantomData<F>);
}

/// What a [`map`](crate::map), [`update`](crate::update) function returns:
/// the records to emit. Implemented for a `(key, value)` pair whose parts
/// are [`Encode`] (borrowed `&str` and `&[u8]` included), `()` for none,
/// `Option`, `Vec` and arrays of records, any [`Iterator`] of records
/// (`impl Iterator<Item = (&str, i64)>`, which is encoded lazily: no
/// collection is built), and a `Result` of any of these, whose error fails
/// the call.
///
/// The type parameter only tells the implementations apart; it is inferred.
pub trait Emit<F = form::Single> {
    /// Appends the records to `out`, or fails with a message.
    fn emit_into(self, out: &mut RecordWriter) -> Result<(), String>;
}

impl<K: Encode, V: Encode> Emit for (K, V) {
    #[inline(always)]
    fn emit_into(self, out: &mut RecordWriter) -> Result<(), String> {
        out.push(&self.0, &self.1);
        Ok(())
    }
}

impl Emit for () {
    #[inline]
    fn emit_into(self, _out: &mut RecordWriter) -> Result<(), String> {
        Ok(())
    }
}

impl<F, T: Emit<F>> Emit<form::Within<F>> for Option<T> {
    #[inline]
    fn emit_into(self, out: &mut RecordWriter) -> Result<(), String> {
        match self {
            Some(t) => t.emit_into(out),
            None => Ok(()),
        }
    }
}

impl<F, T: Emit<F>> Emit<form::Within<F>> for Vec<T> {
    #[inline]
    fn emit_into(self, out: &mut RecordWriter) -> Result<(), String> {
        self.into_iter().try_for_each(|t| t.emit_into(out))
    }
}

impl<F, T: Emit<F>, const N: usize> Emit<form::Within<F>> for [T; N] {
    #[inline]
    fn emit_into(self, out: &mut RecordWriter) -> Result<(), String> {
        self.into_iter().try_for_each(|t| t.emit_into(out))
    }
}

impl<F, T: Emit<F>, E: fmt::Display> Emit<form::Within<F>> for Result<T, E> {
    #[inline]
    fn emit_into(self, out: &mut RecordWriter) -> Result<(), String> {
        match self {
            Ok(t) => t.emit_into(out),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl<F, I> Emit<form::Iterated<F>> for I
where
    I: Iterator,
    I::Item: Emit<F>,
{
    #[inline]
    fn emit_into(self, out: &mut RecordWriter) -> Result<(), String> {
        for t in self {
            t.emit_into(out)?;
        }
        Ok(())
    }
}
