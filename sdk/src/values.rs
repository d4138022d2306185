//! The new values of a key, as an [`update`](crate::update) function sees
//! them.

use std::fmt;
use std::marker::PhantomData;

use crate::codec::{BorrowDecode, DecodeError};
use crate::invoke::Frames;

/// A key's new values in an update call, decoded one at a time as you
/// iterate, borrowing from the call's input: take `values: Values<i64>`
/// instead of `Vec<i64>` and no vector is built per key.
///
/// Every value is checked to decode before the function runs, so a bad
/// value fails the call with the same message as for a `Vec`; iterating
/// then decodes again (for numbers that is a length check; for `&str` the
/// UTF-8 check runs twice).
pub struct Values<'a, V> {
    frames: Frames<'a>,
    left: usize,
    _v: PhantomData<fn() -> V>,
}

impl<'a, V> Values<'a, V> {
    /// `count` byte strings, framed as on the wire (`u32` length + bytes
    /// each), already checked to be exactly that.
    pub(crate) fn new(count: usize, framed: &'a [u8]) -> Self {
        Values {
            frames: Frames::new(framed),
            left: count,
            _v: PhantomData,
        }
    }

    /// Number of values left.
    pub fn len(&self) -> usize {
        self.left
    }

    /// True when no value is left (a key without new values: a timeout,
    /// or a key with state only).
    pub fn is_empty(&self) -> bool {
        self.left == 0
    }

    /// The values' raw bytes, undecoded.
    pub fn raw(&self) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        let mut frames = self.frames;
        (0..self.left).map(move |_| frames.bytes())
    }
}

impl<V> Clone for Values<'_, V> {
    fn clone(&self) -> Self {
        Values {
            frames: self.frames,
            left: self.left,
            _v: PhantomData,
        }
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
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(V::borrow_decode(self.frames.bytes()).expect("values are checked before the call"))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
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
        Ok(Values {
            frames: values.frames,
            left: values.left,
            _v: PhantomData,
        })
    }
}
