//! The writing half of format 3: integers, floats and tags into a byte vector, and a sketch
//! through its `Serialize` by a serde `Serializer` that knows the few types a sketch is made
//! of (structs of integers, floats and bools, and one sequence of `u64` bins).

use std::ops::Range;

use serde::ser::{self, Impossible, Serialize};
use sketches_ddsketch::DDSketch;

use super::{Error, Memo};

type Result<T> = std::result::Result<T, Error>;

pub(super) struct Writer<'a> {
    out: &'a mut Vec<u8>,
    memo: &'a Memo,
    /// While the bins are written: zeros counted and not yet written.
    zeros: Option<u64>,
    /// Name and byte range of every struct written, while the memo is being made.
    spans: Option<Vec<(&'static str, Range<usize>)>>,
}

impl<'a> Writer<'a> {
    pub(super) fn new(out: &'a mut Vec<u8>, memo: &'a Memo) -> Writer<'a> {
        Writer {
            out,
            memo,
            zeros: None,
            spans: None,
        }
    }

    /// `sketch` written with `memo`, and where each of its structs went.
    pub(super) fn record(
        memo: &Memo,
        sketch: &DDSketch,
    ) -> (Vec<u8>, Vec<(&'static str, Range<usize>)>) {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out, memo);
        w.spans = Some(Vec::new());
        w.sketch(sketch).expect("an empty sketch serialises");
        let spans = w.spans.take().unwrap_or_default();
        (out, spans)
    }

    pub(super) fn byte(&mut self, b: u8) {
        self.out.push(b);
    }

    pub(super) fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    pub(super) fn zigzag(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }

    pub(super) fn sketch(&mut self, sketch: &DDSketch) -> Result<()> {
        sketch.serialize(self)
    }

    /// Refuses a value inside the bins, where only `u64` counts are expected.
    fn outside_bins(&self) -> Result<()> {
        match self.zeros {
            Some(_) => Err(Error::Unsupported("sequence of anything but u64")),
            None => Ok(()),
        }
    }
}

impl<'w, 'a> ser::Serializer for &'w mut Writer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Self;
    type SerializeStruct = StructWriter<'w, 'a>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    // What a sketch is made of.

    fn serialize_bool(self, v: bool) -> Result<()> {
        self.outside_bins()?;
        self.byte(u8::from(v));
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<()> {
        self.outside_bins()?;
        self.zigzag(v.into());
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<()> {
        self.outside_bins()?;
        self.varint(v.into());
        Ok(())
    }
    /// Also `usize`. Inside the bins a zero is only counted, and a count is written after
    /// the zeros before it.
    fn serialize_u64(self, v: u64) -> Result<()> {
        match self.zeros {
            Some(ref mut zeros) if v == 0 => *zeros += 1,
            Some(zeros) => {
                self.zeros = Some(0);
                self.varint(zeros);
                self.varint(v);
            }
            None => self.varint(v),
        }
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<()> {
        self.outside_bins()?;
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self> {
        self.outside_bins()?;
        let len = len.ok_or(Error::Unsupported("sequence of unknown length"))?;
        self.varint(len as u64);
        self.zeros = Some(0);
        Ok(self)
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<StructWriter<'w, 'a>> {
        self.outside_bins()?;
        let reference = self.memo.of(name);
        if reference.is_some() {
            self.byte(1);
        }
        let start = self.out.len();
        Ok(StructWriter {
            w: self,
            name,
            start,
            reference,
        })
    }

    // What a sketch is not made of.

    fn serialize_i8(self, _: i8) -> Result<()> {
        Err(Error::Unsupported("i8"))
    }
    fn serialize_i16(self, _: i16) -> Result<()> {
        Err(Error::Unsupported("i16"))
    }
    fn serialize_i64(self, _: i64) -> Result<()> {
        Err(Error::Unsupported("i64"))
    }
    fn serialize_u8(self, _: u8) -> Result<()> {
        Err(Error::Unsupported("u8"))
    }
    fn serialize_u16(self, _: u16) -> Result<()> {
        Err(Error::Unsupported("u16"))
    }
    fn serialize_f32(self, _: f32) -> Result<()> {
        Err(Error::Unsupported("f32"))
    }
    fn serialize_char(self, _: char) -> Result<()> {
        Err(Error::Unsupported("char"))
    }
    fn serialize_str(self, _: &str) -> Result<()> {
        Err(Error::Unsupported("string"))
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<()> {
        Err(Error::Unsupported("byte string"))
    }
    fn serialize_none(self) -> Result<()> {
        Err(Error::Unsupported("option"))
    }
    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<()> {
        Err(Error::Unsupported("option"))
    }
    fn serialize_unit(self) -> Result<()> {
        Err(Error::Unsupported("unit"))
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<()> {
        Err(Error::Unsupported("unit struct"))
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, _: &T) -> Result<()> {
        Err(Error::Unsupported("newtype struct"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple> {
        Err(Error::Unsupported("tuple"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        Err(Error::Unsupported("tuple struct"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap> {
        Err(Error::Unsupported("map"))
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<()> {
        Err(Error::Unsupported("enum"))
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<()> {
        Err(Error::Unsupported("enum"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Err(Error::Unsupported("enum"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Err(Error::Unsupported("enum"))
    }
}

/// The bins: each element goes through `serialize_u64`; the last run of zeros is written
/// at the end.
impl ser::SerializeSeq for &mut Writer<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<()> {
        match self.zeros.take() {
            Some(zeros) if zeros > 0 => self.varint(zeros),
            _ => {}
        }
        Ok(())
    }
}

/// A struct being written: its fields in order; one equal to its memo reference is cut
/// back to byte 0 at the end.
pub(super) struct StructWriter<'w, 'a> {
    w: &'w mut Writer<'a>,
    name: &'static str,
    /// Where its fields start (after its tag byte, if it has one).
    start: usize,
    reference: Option<&'a [u8]>,
}

impl ser::SerializeStruct for StructWriter<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, _: &'static str, value: &T) -> Result<()> {
        value.serialize(&mut *self.w)
    }
    fn end(self) -> Result<()> {
        let out = &mut self.w.out;
        if let Some(spans) = &mut self.w.spans {
            spans.push((self.name, self.start..out.len()));
        }
        if self.reference == Some(&out[self.start..]) {
            out.truncate(self.start - 1);
            out.push(0);
        }
        Ok(())
    }
}
