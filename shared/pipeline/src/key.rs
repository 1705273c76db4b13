//! Object keys that are safe as both S3 keys and relative paths under a directory: no absolute
//! paths, no `.`/`..` or empty segments, no backslashes or control characters. Every key an
//! event or a message names goes through here before anything is read or written, so nothing can
//! land outside its prefix.

use std::fmt;

/// S3's limit on key length, in bytes.
const MAX_KEY_BYTES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("object key {key:?} rejected: {reason}")]
pub struct KeyError {
    pub key: String,
    pub reason: &'static str,
}

/// A validated object key, `segment/segment/...`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(String);

impl Key {
    pub fn new(key: impl Into<String>) -> Result<Self, KeyError> {
        let key = key.into();
        let reject = |reason| {
            Err(KeyError {
                key: key.clone(),
                reason,
            })
        };
        if key.is_empty() {
            return reject("empty");
        }
        if key.len() > MAX_KEY_BYTES {
            return reject("longer than 1024 bytes");
        }
        if key.starts_with('/') {
            return reject("absolute path");
        }
        if key.chars().any(|c| c.is_control()) {
            return reject("control character");
        }
        if key.contains('\\') {
            return reject("backslash");
        }
        for seg in key.split('/') {
            match seg {
                "" => return reject("empty path segment"),
                "." | ".." => return reject("`.` or `..` segment"),
                _ => {}
            }
        }
        Ok(Self(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the key lies under `prefix` (`prefix` ends with `/`, or is a whole segment).
    pub fn is_under(&self, prefix: &str) -> bool {
        let p = prefix.trim_end_matches('/');
        self.0.len() > p.len() && self.0.starts_with(p) && self.0.as_bytes()[p.len()] == b'/'
    }

    /// The path segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_and_bad_keys() {
        for ok in [
            "incoming/case_000/image.nii.gz",
            "models/anno1_init112233_foldall/model.json",
            "a b/c+d.nii",
            "x",
        ] {
            assert!(Key::new(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("incoming/../secrets", "`..`"),
            ("incoming/./x", "`..`"),
            ("incoming//x", "empty path segment"),
            ("incoming/x/", "empty path segment"),
            ("incoming/a\nb", "control"),
            ("incoming/a\u{7f}", "control"),
            ("incoming\\..\\x", "backslash"),
        ] {
            let e = Key::new(bad).unwrap_err();
            assert!(e.to_string().contains(why), "{bad:?}: {e}");
        }
        assert!(Key::new("a".repeat(1025)).is_err());
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let k = Key::new("incoming/case_000/image.nii.gz").unwrap();
        assert!(k.is_under("incoming/"));
        assert!(k.is_under("incoming"));
        assert!(k.is_under("incoming/case_000"));
        assert!(!k.is_under("incoming/case_00"));
        assert!(!k.is_under("models/"));
        assert!(!Key::new("incoming").unwrap().is_under("incoming"));
    }
}
