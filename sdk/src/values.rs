//! The new values of a key, as an [`update`](crate::update) function sees
//! them.

use std::fmt;
use std::marker::PhantomData;

use weir_abi::ByteStrings;

use crate::codec::{BorrowDecode, DecodeError};

/// A key's new values in an update call, decoded one at a time as you
/// iterate, borrowing from the call's input: take `values: Values<i64>`
/// instead of `Vec<i64>` and no vector is built per key.
///
/// Every value is checked to decode before the function runs, so a bad
/// value fails the call with the same message as for a `Vec`; iterating
/// then decodes again (for numbers that is a length check; for `&str` the
/// UTF-8 check runs twice).
pub struct Values<'a, V> {
    raw: ByteStrings<'a>,
    _v: PhantomData<fn() -> V>,
}

impl<'a, V> Values<'a, V> {
    /// The values of one update entry, not decoded yet.
    pub(crate) fn new(raw: ByteStrings<'a>) -> Self {
        Values {
            raw,
            _v: PhantomData,
        }
    }

    /// Number of values left.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// True when no value is left (a key without new values: a timeout,
    /// or a key with state only).
    pub fn is_empty(&self) -> bool {
        self.raw.len() == 0
    }

    /// The values' raw bytes, undecoded.
    pub fn raw(&self) -> ByteStrings<'a> {
        self.raw
    }
}

impl<V> Clone for Values<'_, V> {
    fn clone(&self) -> Self {
        Values::new(self.raw)
    }
}

impl<V> fmt::Debug for Values<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.raw()).finish()
    }
}

impl<'a, V: BorrowDecode<'a>> Iterator for Values<'a, V> {
    type Item = V;

    #[inline]
    fn next(&mut self) -> Option<V> {
        let v = self.raw.next()?;
        Some(V::borrow_decode(v).expect("values are checked before the call"))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.raw.size_hint()
    }
}

impl<'a, V: BorrowDecode<'a>> ExactSizeIterator for Values<'a, V> {}

/// What the values parameter of an [`update`](crate::update) function may
/// be: `Vec<V>` (decoded up front) or [`Values<V>`](Values) (decoded
/// lazily), for any [`BorrowDecode`] `V`.
pub trait UpdateValues<'a>: Sized {
    /// Decodes (or checks) the values of one key.
    fn from_values<V2>(values: Values<'a, V2>) -> Result<Self, DecodeError>;
}

impl<'a, V: BorrowDecode<'a>> UpdateValues<'a> for Vec<V> {
    fn from_values<V2>(values: Values<'a, V2>) -> Result<Self, DecodeError> {
        values.raw().map(V::borrow_decode).collect()
    }
}

impl<'a, V: BorrowDecode<'a>> UpdateValues<'a> for Values<'a, V> {
    fn from_values<V2>(values: Values<'a, V2>) -> Result<Self, DecodeError> {
        for v in values.raw() {
            V::borrow_decode(v)?;
        }
        Ok(Values::new(values.raw))
    }
}
