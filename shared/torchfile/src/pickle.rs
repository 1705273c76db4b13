//! A pickle (protocol 2) encoder for the values a torch checkpoint holds: what `torch.save`
//! writes for dicts, tuples, numbers, strings and tensors over float32 storages.

use crate::write::Value;

const PROTO: u8 = 0x80;
const STOP: u8 = b'.';
const MARK: u8 = b'(';
const NONE: u8 = b'N';
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const BININT: u8 = b'J';
const LONG1: u8 = 0x8a;
const BINFLOAT: u8 = b'G';
const BINUNICODE: u8 = b'X';
const EMPTY_DICT: u8 = b'}';
const EMPTY_LIST: u8 = b']';
const EMPTY_TUPLE: u8 = b')';
const TUPLE: u8 = b't';
const SETITEMS: u8 = b'u';
const APPENDS: u8 = b'e';
const GLOBAL: u8 = b'c';
const REDUCE: u8 = b'R';
const BINPERSID: u8 = b'Q';

/// Encodes `value` as a whole pickle.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = vec![PROTO, 2];
    put(&mut out, value);
    out.push(STOP);
    out
}

fn global(out: &mut Vec<u8>, module: &str, name: &str) {
    out.push(GLOBAL);
    out.extend_from_slice(module.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.push(BINUNICODE);
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn int(out: &mut Vec<u8>, v: i64) {
    if let Ok(small) = i32::try_from(v) {
        out.push(BININT);
        out.extend_from_slice(&small.to_le_bytes());
    } else {
        out.push(LONG1);
        out.push(8);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn tuple(out: &mut Vec<u8>, items: impl IntoIterator<Item = i64>) {
    out.push(MARK);
    for i in items {
        int(out, i);
    }
    out.push(TUPLE);
}

fn items(out: &mut Vec<u8>, entries: &[(String, Value)]) {
    if entries.is_empty() {
        return;
    }
    out.push(MARK);
    for (k, v) in entries {
        string(out, k);
        put(out, v);
    }
    out.push(SETITEMS);
}

fn put(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::None => out.push(NONE),
        Value::Bool(b) => out.push(if *b { NEWTRUE } else { NEWFALSE }),
        Value::Int(i) => int(out, *i),
        Value::Float(f) => {
            out.push(BINFLOAT);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Value::Str(s) => string(out, s),
        Value::List(v) => {
            out.push(EMPTY_LIST);
            if !v.is_empty() {
                out.push(MARK);
                v.iter().for_each(|x| put(out, x));
                out.push(APPENDS);
            }
        }
        Value::Tuple(v) => {
            out.push(MARK);
            v.iter().for_each(|x| put(out, x));
            out.push(TUPLE);
        }
        Value::Dict(entries) => {
            out.push(EMPTY_DICT);
            items(out, entries);
        }
        Value::OrderedDict(entries) => {
            ordered_dict(out);
            items(out, entries);
        }
        Value::Tensor { storage, shape } => tensor(out, *storage, shape),
    }
}

fn ordered_dict(out: &mut Vec<u8>) {
    global(out, "collections", "OrderedDict");
    out.push(EMPTY_TUPLE);
    out.push(REDUCE);
}

/// `torch._utils._rebuild_tensor_v2(storage, 0, shape, contiguous strides, False, OrderedDict())`
/// over the float32 storage `data/<storage>`.
fn tensor(out: &mut Vec<u8>, storage: usize, shape: &[usize]) {
    global(out, "torch._utils", "_rebuild_tensor_v2");
    out.push(MARK);
    // persistent id: ('storage', torch.FloatStorage, key, location, numel)
    out.push(MARK);
    string(out, "storage");
    global(out, "torch", "FloatStorage");
    string(out, &storage.to_string());
    string(out, "cpu");
    int(out, shape.iter().product::<usize>() as i64);
    out.push(TUPLE);
    out.push(BINPERSID);
    int(out, 0);
    tuple(out, shape.iter().map(|s| *s as i64));
    let mut strides = vec![1i64; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1] as i64;
    }
    tuple(out, strides);
    out.push(NEWFALSE);
    ordered_dict(out);
    out.push(TUPLE);
    out.push(REDUCE);
}
