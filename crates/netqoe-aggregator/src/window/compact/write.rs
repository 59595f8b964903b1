//! The writing half of the compact format: a serde `Serializer` into a byte vector.

use serde::ser::{self, Serialize};

use super::{lookup, unsupported, Error, Result, Table};

pub(super) struct Writer<'t> {
    pub(super) out: Vec<u8>,
    pub(super) table: &'t Table,
    /// Name and byte range of every struct written, while the memo table is being made.
    pub(super) recorded: Option<Vec<(&'static str, usize, usize)>>,
}

impl Writer<'_> {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    fn zigzag(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }
}

/// `serialize_<int>` methods that widen the value and write it with the writer's `zigzag`
/// or `varint`.
macro_rules! integers {
    ($($write:ident: $($method:ident($ty:ty)),+;)+) => {
        $($(
            fn $method(self, v: $ty) -> Result<()> {
                self.$write(v.into());
                Ok(())
            }
        )+)+
    };
}

impl<'a, 't> ser::Serializer for &'a mut Writer<'t> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = SeqWriter<'a, 't>;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = ser::Impossible<(), Error>;
    type SerializeMap = ser::Impossible<(), Error>;
    type SerializeStruct = StructWriter<'a, 't>;
    type SerializeStructVariant = ser::Impossible<(), Error>;

    fn serialize_bool(self, v: bool) -> Result<()> {
        self.out.push(u8::from(v));
        Ok(())
    }
    // Signed integers zigzag, unsigned ones as they are, both as LEB128 varints.
    integers! {
        zigzag: serialize_i8(i8), serialize_i16(i16), serialize_i32(i32), serialize_i64(i64);
        varint: serialize_u8(u8), serialize_u16(u16), serialize_u32(u32), serialize_u64(u64);
    }
    fn serialize_f32(self, v: f32) -> Result<()> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<()> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_char(self, _: char) -> Result<()> {
        unsupported("char")
    }
    fn serialize_str(self, _: &str) -> Result<()> {
        unsupported("string")
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<()> {
        unsupported("byte string")
    }
    fn serialize_none(self) -> Result<()> {
        self.out.push(0);
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<()> {
        self.out.push(1);
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<()> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<()> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<()> {
        unsupported("enum")
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<()> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<()> {
        unsupported("enum")
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqWriter<'a, 't>> {
        let Some(len) = len else {
            return unsupported("sequence of unknown length");
        };
        self.varint(len as u64);
        Ok(SeqWriter { w: self, zeros: 0 })
    }
    fn serialize_tuple(self, _: usize) -> Result<Self> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        unsupported("enum")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap> {
        unsupported("map")
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<StructWriter<'a, 't>> {
        let memo = lookup(self.table, name);
        if memo.is_some() {
            self.out.push(1);
        }
        let start = self.out.len();
        Ok(StructWriter {
            w: self,
            name,
            start,
            memo,
        })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant> {
        unsupported("enum")
    }
}

impl ser::SerializeTuple for &mut Writer<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<()> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for &mut Writer<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<()> {
        Ok(())
    }
}

/// A struct being written; a memo struct equal to its reference shrinks to one byte at the end.
pub struct StructWriter<'a, 't> {
    w: &'a mut Writer<'t>,
    name: &'static str,
    start: usize,
    memo: Option<&'t [u8]>,
}

impl ser::SerializeStruct for StructWriter<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, _: &'static str, value: &T) -> Result<()> {
        value.serialize(&mut *self.w)
    }
    fn end(self) -> Result<()> {
        if let Some(recorded) = &mut self.w.recorded {
            recorded.push((self.name, self.start, self.w.out.len()));
        }
        if let Some(reference) = self.memo {
            if &self.w.out[self.start..] == reference {
                self.w.out.truncate(self.start - 1);
                self.w.out.push(0);
            }
        }
        Ok(())
    }
}

/// A sequence being written: zeros are counted, not written.
pub struct SeqWriter<'a, 't> {
    w: &'a mut Writer<'t>,
    zeros: u64,
}

impl ser::SerializeSeq for SeqWriter<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        // Integers (the bins) are counted or written straight from their value; anything else
        // is written and then looked at.
        match value.serialize(IntProbe) {
            Ok(Int::Unsigned(0) | Int::Signed(0)) => {
                self.zeros += 1;
                return Ok(());
            }
            Ok(Int::Unsigned(v)) => {
                self.w.varint(std::mem::take(&mut self.zeros));
                self.w.varint(v);
                return Ok(());
            }
            Ok(Int::Signed(v)) => {
                self.w.varint(std::mem::take(&mut self.zeros));
                self.w.zigzag(v);
                return Ok(());
            }
            Err(NotInt) => {}
        }
        let at = self.w.out.len();
        value.serialize(&mut *self.w)?;
        let written = &self.w.out[at..];
        if written == [0] {
            self.w.out.truncate(at);
            self.zeros += 1;
            return Ok(());
        }
        let mut element = [0u8; 10];
        let Some(slot) = element.get_mut(..written.len()) else {
            return unsupported("sequence of anything but integers");
        };
        slot.copy_from_slice(written);
        let n = written.len();
        self.w.out.truncate(at);
        self.w.varint(std::mem::take(&mut self.zeros));
        self.w.out.extend_from_slice(&element[..n]);
        Ok(())
    }
    fn end(self) -> Result<()> {
        if self.zeros > 0 {
            self.w.varint(self.zeros);
        }
        Ok(())
    }
}

/// An integer element, widened.
enum Int {
    Unsigned(u64),
    Signed(i64),
}

/// What [`IntProbe`] answers for anything but an integer (no allocation, unlike [`Error`]).
#[derive(Debug)]
struct NotInt;

impl std::fmt::Display for NotInt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not an integer")
    }
}

impl std::error::Error for NotInt {}

impl ser::Error for NotInt {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        NotInt
    }
}

/// A serializer that hands back an integer value as it is and refuses everything else: a
/// sequence's bins are read through it without a byte written and taken back for every zero.
struct IntProbe;

/// `serialize_<int>` methods of [`IntProbe`] that widen the value into `Int::$variant`.
macro_rules! probe_integers {
    ($($variant:ident: $($method:ident($ty:ty)),+;)+) => {
        $($(
            fn $method(self, v: $ty) -> std::result::Result<Int, NotInt> {
                Ok(Int::$variant(v.into()))
            }
        )+)+
    };
}

/// Methods of [`IntProbe`] for everything that is not an integer: `name(args) -> answer`.
macro_rules! not_int {
    ($($method:ident$(<$t:ident>)?($($arg:ty),*) -> $out:ty;)+) => {
        $(
            fn $method$(<$t: ?Sized + Serialize>)?(self, $(_: $arg),*) -> std::result::Result<$out, NotInt> {
                Err(NotInt)
            }
        )+
    };
}

impl ser::Serializer for IntProbe {
    type Ok = Int;
    type Error = NotInt;
    type SerializeSeq = ser::Impossible<Int, NotInt>;
    type SerializeTuple = ser::Impossible<Int, NotInt>;
    type SerializeTupleStruct = ser::Impossible<Int, NotInt>;
    type SerializeTupleVariant = ser::Impossible<Int, NotInt>;
    type SerializeMap = ser::Impossible<Int, NotInt>;
    type SerializeStruct = ser::Impossible<Int, NotInt>;
    type SerializeStructVariant = ser::Impossible<Int, NotInt>;

    probe_integers! {
        Signed: serialize_i8(i8), serialize_i16(i16), serialize_i32(i32), serialize_i64(i64);
        Unsigned: serialize_u8(u8), serialize_u16(u16), serialize_u32(u32), serialize_u64(u64);
    }
    not_int! {
        serialize_bool(bool) -> Int;
        serialize_f32(f32) -> Int;
        serialize_f64(f64) -> Int;
        serialize_char(char) -> Int;
        serialize_str(&str) -> Int;
        serialize_bytes(&[u8]) -> Int;
        serialize_none() -> Int;
        serialize_unit() -> Int;
        serialize_unit_struct(&'static str) -> Int;
        serialize_unit_variant(&'static str, u32, &'static str) -> Int;
        serialize_some<T>(&T) -> Int;
        serialize_newtype_struct<T>(&'static str, &T) -> Int;
        serialize_newtype_variant<T>(&'static str, u32, &'static str, &T) -> Int;
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }
}
