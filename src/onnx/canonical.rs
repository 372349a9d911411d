//! Puts unknown fields back in field-number order after encoding.
//!
//! rust-protobuf keeps fields our schema does not know (written by a newer
//! ONNX) but stores them in a hash map, so it writes them back grouped in hash
//! order. Protobuf writers emit fields in number order, so sorting the trailing
//! unknown fields of every message restores the original bytes and keeps the
//! message equal under the `onnx` package's comparison. Reordering never
//! changes a length, so this works in place on the encoded buffer.

use protobuf::MessageDyn;
use protobuf::reflect::{MessageDescriptor, ReflectFieldRef, ReflectValueRef, RuntimeFieldType, RuntimeType};

/// Whether `message` or any message inside it keeps unknown fields: only
/// then does its encoding need [`sort_unknown_fields`] (and so a whole
/// buffer). Only message-typed fields are visited, so tensors' data is not.
pub fn has_unknown_fields(message: &dyn MessageDyn) -> bool {
    if message.special_fields_dyn().unknown_fields().iter().next().is_some() {
        return true;
    }
    let inside = |v: ReflectValueRef| matches!(v, ReflectValueRef::Message(m) if has_unknown_fields(&*m));
    message.descriptor_dyn().fields().any(|field| {
        if message_type(&field.runtime_field_type()).is_none() {
            return false;
        }
        match field.get_reflect(message) {
            ReflectFieldRef::Optional(o) => o.value().is_some_and(inside),
            ReflectFieldRef::Repeated(r) => r.into_iter().any(inside),
            ReflectFieldRef::Map(_) => false,
        }
    })
}

/// One field record inside an encoded message.
struct Record {
    number: u32,
    start: usize,
    end: usize,
}

/// Reorders unknown fields in `buf`, an encoded message of type `desc`.
/// Malformed input is left as it is (we only ever feed our own encoder's output).
pub fn sort_unknown_fields(buf: &mut [u8], desc: &MessageDescriptor) {
    let Some(records) = parse_records(buf) else { return };
    let mut first_unknown = None;
    for (i, r) in records.iter().enumerate() {
        match desc.field_by_number(r.number) {
            Some(field) => {
                if let Some(sub) = message_type(&field.runtime_field_type())
                    && let Some(payload) = payload_range(buf, r)
                {
                    sort_unknown_fields(&mut buf[payload.0..payload.1], &sub);
                }
            }
            None => {
                first_unknown.get_or_insert(i);
            }
        }
    }
    // The encoder writes every known field first, then all unknown ones.
    let Some(first) = first_unknown else { return };
    let tail = &records[first..];
    if tail.iter().any(|r| desc.field_by_number(r.number).is_some()) || tail.is_sorted_by_key(|r| r.number) {
        return;
    }
    let mut order: Vec<&Record> = tail.iter().collect();
    order.sort_by_key(|r| r.number); // stable: same-number records keep their order
    let base = tail[0].start;
    let sorted: Vec<u8> = order.iter().flat_map(|r| buf[r.start..r.end].to_vec()).collect();
    buf[base..base + sorted.len()].copy_from_slice(&sorted);
}

fn message_type(t: &RuntimeFieldType) -> Option<MessageDescriptor> {
    match t {
        RuntimeFieldType::Singular(RuntimeType::Message(m)) | RuntimeFieldType::Repeated(RuntimeType::Message(m)) => {
            Some(m.clone())
        }
        _ => None,
    }
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Splits an encoded message into its field records.
fn parse_records(buf: &[u8]) -> Option<Vec<Record>> {
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let tag = read_varint(buf, &mut pos)?;
        let number = u32::try_from(tag >> 3).ok()?;
        skip_value(buf, &mut pos, (tag & 7) as u8, number)?;
        records.push(Record {
            number,
            start,
            end: pos,
        });
    }
    Some(records)
}

fn skip_value(buf: &[u8], pos: &mut usize, wire_type: u8, number: u32) -> Option<()> {
    match wire_type {
        0 => {
            read_varint(buf, pos)?;
        }
        1 => *pos = pos.checked_add(8).filter(|&p| p <= buf.len())?,
        2 => {
            let len = usize::try_from(read_varint(buf, pos)?).ok()?;
            *pos = pos.checked_add(len).filter(|&p| p <= buf.len())?;
        }
        // Group: skip nested records up to the matching end-group tag.
        3 => loop {
            let tag = read_varint(buf, pos)?;
            let (n, wt) = (u32::try_from(tag >> 3).ok()?, (tag & 7) as u8);
            if wt == 4 {
                return (n == number).then_some(());
            }
            skip_value(buf, pos, wt, n)?;
        },
        5 => *pos = pos.checked_add(4).filter(|&p| p <= buf.len())?,
        _ => return None,
    }
    Some(())
}

/// Byte range of a length-delimited record's payload.
fn payload_range(buf: &[u8], r: &Record) -> Option<(usize, usize)> {
    let mut pos = r.start;
    let tag = read_varint(buf, &mut pos)?;
    if tag & 7 != 2 {
        return None;
    }
    read_varint(buf, &mut pos)?;
    Some((pos, r.end))
}

#[cfg(test)]
mod tests {
    use protobuf::{Message, MessageFull};

    use super::*;
    use crate::onnx::proto::{GraphProto, ModelProto, NodeProto};

    #[test]
    fn unknown_fields_come_out_in_number_order_at_every_depth() {
        let mut node = NodeProto::new();
        node.set_op_type("Relu".into());
        for n in [1003u32, 1001, 1002] {
            node.mut_unknown_fields().add_varint(n, u64::from(n));
        }
        let mut graph = GraphProto::new();
        graph.node.push(node);
        let mut model = ModelProto::new();
        model.set_ir_version(10);
        model.graph = Some(graph).into();
        model.mut_unknown_fields().add_length_delimited(2000, b"x".to_vec());
        model.mut_unknown_fields().add_varint(1999, 7);
        let mut bytes = model.write_to_bytes().unwrap();
        let len = bytes.len();
        sort_unknown_fields(&mut bytes, &ModelProto::descriptor());
        assert_eq!(bytes.len(), len);
        let again = ModelProto::parse_from_bytes(&bytes).unwrap();
        assert_eq!(again, model);
        // Tags in the encoded node: 1003/1001/1002 → 1001, 1002, 1003.
        let node_bytes = again.graph.node[0].write_to_bytes().unwrap();
        let mut sorted = node_bytes.clone();
        sort_unknown_fields(&mut sorted, &NodeProto::descriptor());
        let nums: Vec<u32> = parse_records(&sorted).unwrap().iter().map(|r| r.number).collect();
        assert_eq!(nums, vec![4, 1001, 1002, 1003]);
    }

    #[test]
    fn malformed_buffers_are_left_alone() {
        let mut junk = vec![0xff, 0xff, 0xff];
        sort_unknown_fields(&mut junk, &ModelProto::descriptor());
        assert_eq!(junk, vec![0xff, 0xff, 0xff]);
    }
}
