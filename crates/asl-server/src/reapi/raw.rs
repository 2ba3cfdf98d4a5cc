//! A protobuf message kept as the bytes it arrived as: the action results
//! the cache stores and answers with. Decoding one copies each field's
//! bytes as they are (so no field this build does not know is dropped);
//! encoding one writes them back.

use prost::bytes::{Buf, BufMut};
use prost::encoding::{decode_varint, encode_key, encode_varint, DecodeContext, WireType};
use prost::DecodeError;

/// A message's encoded fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RawMessage(pub Vec<u8>);

impl prost::Message for RawMessage {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        use prost::encoding::{bytes, fixed32, fixed64, skip_field};
        let start = self.0.len();
        encode_key(tag, wire_type, &mut self.0);
        match wire_type {
            WireType::Varint => encode_varint(decode_varint(buf)?, &mut self.0),
            WireType::SixtyFourBit => {
                let mut v = 0u64;
                fixed64::merge(wire_type, &mut v, buf, ctx)?;
                self.0.put_u64_le(v);
            }
            WireType::ThirtyTwoBit => {
                let mut v = 0u32;
                fixed32::merge(wire_type, &mut v, buf, ctx)?;
                self.0.put_u32_le(v);
            }
            WireType::LengthDelimited => {
                let mut v: Vec<u8> = Vec::new();
                bytes::merge(wire_type, &mut v, buf, ctx)?;
                encode_varint(v.len() as u64, &mut self.0);
                self.0.extend_from_slice(&v);
            }
            // Groups are long deprecated and no REAPI message has one:
            // skipped, not kept.
            WireType::StartGroup | WireType::EndGroup => {
                self.0.truncate(start);
                skip_field(wire_type, tag, buf, ctx)?;
            }
        }
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn every_field_comes_back_as_it_was_sent() {
        // Field 2 (a message), 4 (a varint), 9 (fixed64), 3 (fixed32), 42
        // (a field no schema here knows).
        let mut bytes = vec![0x12, 3, 0x0a, 1, b'x', 0x20, 0x96, 0x01];
        bytes.extend_from_slice(&[0x49, 1, 2, 3, 4, 5, 6, 7, 8, 0x1d, 9, 9, 9, 9]);
        bytes.extend_from_slice(&[0xd2, 0x02, 2, b'h', b'i']);
        let m = RawMessage::decode(bytes.as_slice()).unwrap();
        assert_eq!(m.0, bytes);
        assert_eq!(m.encode_to_vec(), bytes);
        assert!(RawMessage::decode(&[0x12, 9, 1][..]).is_err(), "a field cut short");
    }
}
