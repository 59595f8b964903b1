//! The reading half of the compact format: a serde `Deserializer` over a byte slice.

use serde::de::{self, DeserializeSeed, IntoDeserializer, SeqAccess, Visitor};

use super::{lookup, unsupported, Error, Result, Table, MAX_SEQ};

pub(super) struct Reader<'de> {
    pub(super) input: &'de [u8],
    pub(super) table: &'static Table,
}

impl<'de> Reader<'de> {
    fn take(&mut self, n: usize) -> Result<&'de [u8]> {
        if self.input.len() < n {
            return Err(Error("truncated".into()));
        }
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(Error("varint longer than 10 bytes".into()))
    }

    fn zigzag(&mut self) -> Result<i64> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn fields<V: Visitor<'de>>(&mut self, len: usize, visitor: V) -> Result<V::Value> {
        visitor.visit_seq(Fields { r: self, left: len })
    }
}

/// `deserialize_<int>` methods that read with the reader's `zigzag` or `varint` and hand the
/// widened value to the visitor.
macro_rules! integers {
    ($($read:ident => $visit:ident: $($method:ident),+;)+) => {
        $($(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
                visitor.$visit(self.$read()?)
            }
        )+)+
    };
}

impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        unsupported("self-describing values")
    }
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.byte()? {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            b => Err(Error(format!("invalid bool {b}"))),
        }
    }
    // Every signed width is read as a zigzag varint and every unsigned one as a varint; the
    // visitor checks the value fits the field's type.
    integers! {
        zigzag => visit_i64: deserialize_i8, deserialize_i16, deserialize_i32, deserialize_i64;
        varint => visit_u64: deserialize_u8, deserialize_u16, deserialize_u32, deserialize_u64;
    }
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let b = self.take(4)?;
        visitor.visit_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        visitor.visit_f64(f64::from_le_bytes(b))
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.byte()? {
            0 => visitor.visit_none(),
            1 => visitor.visit_some(self),
            b => Err(Error(format!("invalid option tag {b}"))),
        }
    }
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let len = self.varint()?;
        if len > MAX_SEQ {
            return Err(Error(format!("sequence of {len} elements")));
        }
        let mut seq = Sparse {
            r: self,
            len,
            pos: 0,
            next: 0,
        };
        seq.read_run()?;
        visitor.visit_seq(seq)
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        self.fields(len, visitor)
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.fields(len, visitor)
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let Some(reference) = lookup(self.table, name) else {
            return self.fields(fields.len(), visitor);
        };
        match self.byte()? {
            0 => {
                let mut r = Reader {
                    input: reference,
                    table: self.table,
                };
                r.fields(fields.len(), visitor)
            }
            1 => self.fields(fields.len(), visitor),
            b => Err(Error(format!("invalid {name} tag {b}"))),
        }
    }

    serde::forward_to_deserialize_any! {
        char str string bytes byte_buf map enum identifier ignored_any
    }
}

/// The fields of a struct or tuple, in order.
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

/// A sequence's elements: runs of zeros expanded, the others read.
struct Sparse<'a, 'de> {
    r: &'a mut Reader<'de>,
    len: u64,
    /// Index of the next element.
    pos: u64,
    /// Index of the next stored (non-zero) element; `len` when none is left.
    next: u64,
}

impl Sparse<'_, '_> {
    /// Reads the run of zeros that starts at `pos`, if any element is left.
    fn read_run(&mut self) -> Result<()> {
        if self.pos < self.len {
            let zeros = self.r.varint()?;
            if zeros > self.len - self.pos {
                return Err(Error(format!(
                    "run of {zeros} zeros past the sequence's end"
                )));
            }
            self.next = self.pos + zeros;
        }
        Ok(())
    }
}

impl<'de> SeqAccess<'de> for Sparse<'_, 'de> {
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
