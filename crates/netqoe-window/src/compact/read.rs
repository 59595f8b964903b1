//! The reading half of format 3: integers, floats and tags from a byte slice, and a sketch
//! through its `Deserialize` by a serde `Deserializer` that knows the few types a sketch is
//! made of (structs of integers, floats and bools, and one sequence of `u64` bins).

use serde::de::{self, Deserialize, DeserializeSeed, IntoDeserializer, SeqAccess, Visitor};
use sketches_ddsketch::DDSketch;

use super::{Error, Memo, MAX_SEQ};

type Result<T> = std::result::Result<T, Error>;

pub(super) struct Reader<'de> {
    input: &'de [u8],
    memo: &'de Memo,
}

impl<'de> Reader<'de> {
    pub(super) fn new(input: &'de [u8], memo: &'de Memo) -> Reader<'de> {
        Reader { input, memo }
    }

    /// Fails unless every byte was read.
    pub(super) fn finish(&self) -> Result<()> {
        match self.input.len() {
            0 => Ok(()),
            n => Err(Error::LeftOver(n)),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'de [u8]> {
        if self.input.len() < n {
            return Err(Error::Truncated);
        }
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(head)
    }

    pub(super) fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(Error::LongVarint)
    }

    pub(super) fn zigzag(&mut self) -> Result<i64> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn f64(&mut self) -> Result<f64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(f64::from_le_bytes(b))
    }

    pub(super) fn sketch(&mut self) -> Result<DDSketch> {
        DDSketch::deserialize(self)
    }

    fn fields<V: Visitor<'de>>(&mut self, len: usize, visitor: V) -> Result<V::Value> {
        visitor.visit_seq(Fields { r: self, left: len })
    }
}

impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
    type Error = Error;

    // What a sketch is made of. Values are widened; the visitor checks they fit the field.

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.byte()? {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            tag => Err(Error::Tag { what: "bool", tag }),
        }
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i64(self.zigzag()?)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u64(self.varint()?)
    }
    /// Also `usize`.
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u64(self.varint()?)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_f64(self.f64()?)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let len = self.varint()?;
        if len > MAX_SEQ {
            return Err(Error::LongSequence(len));
        }
        let mut bins = Bins {
            r: self,
            len,
            pos: 0,
            next: 0,
        };
        bins.read_run()?;
        visitor.visit_seq(bins)
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let Some(reference) = self.memo.of(name) else {
            return self.fields(fields.len(), visitor);
        };
        match self.byte()? {
            0 => Reader::new(reference, self.memo).fields(fields.len(), visitor),
            1 => self.fields(fields.len(), visitor),
            tag => Err(Error::Tag { what: name, tag }),
        }
    }

    // What a sketch is not made of.

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Error::Unsupported("self-describing values"))
    }
    serde::forward_to_deserialize_any! {
        i8 i16 i64 i128 u8 u16 u128 f32 char str string bytes byte_buf option unit unit_struct
        newtype_struct tuple tuple_struct map enum identifier ignored_any
    }
}

/// The fields of a struct, in order.
struct Fields<'a, 'de> {
    r: &'a mut Reader<'de>,
    left: usize,
}

impl<'de> SeqAccess<'de> for Fields<'_, 'de> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.r).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

/// The bins: runs of zeros expanded, the others read.
struct Bins<'a, 'de> {
    r: &'a mut Reader<'de>,
    len: u64,
    /// Index of the next bin.
    pos: u64,
    /// Index of the next stored (non-zero) bin; `len` when none is left.
    next: u64,
}

impl Bins<'_, '_> {
    /// Reads the run of zeros that starts at `pos`, if any bin is left.
    fn read_run(&mut self) -> Result<()> {
        if self.pos < self.len {
            let zeros = self.r.varint()?;
            if zeros > self.len - self.pos {
                return Err(Error::ZerosPastEnd(zeros));
            }
            self.next = self.pos + zeros;
        }
        Ok(())
    }
}

impl<'de> SeqAccess<'de> for Bins<'_, 'de> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.pos == self.len {
            return Ok(None);
        }
        self.pos += 1;
        if self.pos <= self.next {
            return seed
                .deserialize(IntoDeserializer::<Error>::into_deserializer(0u64))
                .map(Some);
        }
        let value = seed.deserialize(&mut *self.r)?;
        self.read_run()?;
        Ok(Some(value))
    }
    fn size_hint(&self) -> Option<usize> {
        Some((self.len - self.pos) as usize)
    }
}
