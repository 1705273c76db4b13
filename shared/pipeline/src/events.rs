//! S3 object-created notifications: written by the embedded store in S3's own JSON shape, and
//! read leniently from every source the pipeline meets: a plain S3 event, the same event as the
//! body of an SQS message (S3 -> SQS notifications), an SQS batch of those, S3's `s3:TestEvent`,
//! and moto's events, which leave out fields real S3 sends (`userIdentity`, `requestParameters`).
//! Keys in events are form-URL-encoded (`+` for space, and moto also encodes `/`); they are
//! decoded and validated here.

use crate::key::{Key, KeyError};
use serde_json::{Value, json};

/// One object-created record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectCreated {
    pub bucket: String,
    pub key: Key,
    pub size: u64,
    /// S3's `eTag` (may be empty in test servers' events).
    pub etag: String,
    /// `eventName`, e.g. `ObjectCreated:Put`.
    pub event_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("event is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("event record {index}: missing or malformed {field}")]
    Field { index: usize, field: &'static str },
    #[error("event record {index}: key {raw:?} is not valid percent-encoding")]
    Encoding { index: usize, raw: String },
    #[error("event record {index}: {source}")]
    Key {
        index: usize,
        #[source]
        source: KeyError,
    },
}

/// Decodes an S3 event key (`application/x-www-form-urlencoded`).
pub fn decode_key(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = raw.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Encodes a key as S3 does in notifications (unreserved characters and `/` kept, space as `+`).
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The notification S3 sends for one new object (the fields the pipeline and AWS tooling read).
pub fn object_created_event(bucket: &str, key: &Key, size: u64, etag: &str, time: &str) -> Value {
    json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventTime": time,
            "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "statapp-local"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "statapp-local",
                "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
                "object": {"key": encode_key(key.as_str()), "size": size, "eTag": etag}
            }
        }]
    })
}

/// Every object-created record in a message body: an S3 event, an SQS event whose records carry
/// S3 events in `body`, or a test event (no records, so nothing to do).
pub fn parse_object_created(text: &str) -> Result<Vec<ObjectCreated>, EventError> {
    let v: Value = serde_json::from_str(text)?;
    let mut out = Vec::new();
    collect(&v, &mut out)?;
    Ok(out)
}

fn collect(v: &Value, out: &mut Vec<ObjectCreated>) -> Result<(), EventError> {
    let Some(records) = v.get("Records").and_then(Value::as_array) else {
        // `{"Event": "s3:TestEvent", ...}` and anything else without records
        return Ok(());
    };
    for (index, r) in records.iter().enumerate() {
        // an SQS record: its body is an S3 event (as JSON text)
        if let Some(body) = r.get("body").and_then(Value::as_str) {
            let inner: Value = serde_json::from_str(body)?;
            collect(&inner, out)?;
            continue;
        }
        let name = r.get("eventName").and_then(Value::as_str).unwrap_or("");
        if !name.starts_with("ObjectCreated") {
            continue;
        }
        let field = |f| EventError::Field { index, field: f };
        let s3 = r.get("s3").ok_or(field("s3"))?;
        let bucket = s3
            .pointer("/bucket/name")
            .and_then(Value::as_str)
            .ok_or(field("s3.bucket.name"))?;
        let raw = s3
            .pointer("/object/key")
            .and_then(Value::as_str)
            .ok_or(field("s3.object.key"))?;
        let decoded = decode_key(raw).ok_or_else(|| EventError::Encoding {
            index,
            raw: raw.to_string(),
        })?;
        let key = Key::new(decoded).map_err(|source| EventError::Key { index, source })?;
        out.push(ObjectCreated {
            bucket: bucket.to_string(),
            key,
            size: s3
                .pointer("/object/size")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            etag: s3
                .pointer("/object/eTag")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            event_name: name.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_form_encoding() {
        for k in [
            "incoming/case 1/image.nii.gz",
            "incoming/ünï/a+b=c.nii",
            "x/y",
        ] {
            assert_eq!(decode_key(&encode_key(k)).unwrap(), k);
        }
        assert_eq!(
            decode_key("incoming%2Fcase+1%2Fa.nii").unwrap(),
            "incoming/case 1/a.nii"
        );
        assert!(decode_key("bad%zz").is_none());
        assert!(decode_key("cut%2").is_none());
    }

    #[test]
    fn own_events_parse_back() {
        let key = Key::new("incoming/case 7/image.nii.gz").unwrap();
        let ev = object_created_event("b", &key, 42, "abc", "2026-12-02T00:00:00Z");
        let got = parse_object_created(&ev.to_string()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].key, key);
        assert_eq!((got[0].size, got[0].bucket.as_str()), (42, "b"));
    }

    #[test]
    fn thin_wrapped_and_test_events() {
        // moto: no userIdentity/requestParameters, `/` encoded
        let moto = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",
            "s3":{"bucket":{"name":"bk"},"object":{"key":"incoming%2Fc1%2Fimage.nii.gz","size":5}}}]}"#;
        let got = parse_object_created(moto).unwrap();
        assert_eq!(got[0].key.as_str(), "incoming/c1/image.nii.gz");
        // the same inside an SQS event record
        let sqs = serde_json::json!({"Records": [{"messageId": "m1", "body": moto}]}).to_string();
        assert_eq!(parse_object_created(&sqs).unwrap(), got);
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"bk"}"#;
        assert!(parse_object_created(test).unwrap().is_empty());
        // removals are not for us
        let removed = moto.replace("ObjectCreated:Put", "ObjectRemoved:Delete");
        assert!(parse_object_created(&removed).unwrap().is_empty());
    }

    #[test]
    fn hostile_keys_are_rejected() {
        for raw in [
            "incoming%2F..%2Fsecret",
            "%2Fetc%2Fpasswd",
            "incoming/a%0Ab",
        ] {
            let ev = format!(
                r#"{{"Records":[{{"eventName":"ObjectCreated:Put","s3":{{"bucket":{{"name":"b"}},"object":{{"key":"{raw}"}}}}}}]}}"#
            );
            let e = parse_object_created(&ev).unwrap_err();
            assert!(matches!(e, EventError::Key { .. }), "{raw}: {e}");
        }
        assert!(matches!(
            parse_object_created(r#"{"Records":[{"eventName":"ObjectCreated:Put"}]}"#),
            Err(EventError::Field { field: "s3", .. })
        ));
    }
}
