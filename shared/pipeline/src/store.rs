//! The `ObjectStore` trait (what every stage reads and writes) and `DirStore`, a directory used
//! as a bucket by the embedded default. Objects are written whole: to a temporary file, then
//! renamed (or hard-linked, for a conditional create) into place, so a reader or a crash never
//! sees half an object. Like an S3 bucket with event notifications, a `DirStore` sends an
//! object-created event, in S3's JSON, to the queue configured for the key's prefix.

use crate::events::object_created_event;
use crate::key::Key;
use crate::queue::JobQueue;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{key}: {detail}")]
    Io { key: String, detail: String },
    #[error("{key}: notification failed: {detail}")]
    Notify { key: String, detail: String },
}

pub trait ObjectStore: Send + Sync {
    fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes the whole object, replacing any previous one.
    fn put(&self, key: &Key, body: &[u8]) -> Result<(), StoreError>;
    /// Writes the object only if no object has the key (S3's `If-None-Match: *`); `false` when
    /// one was already there.
    fn put_if_absent(&self, key: &Key, body: &[u8]) -> Result<bool, StoreError>;
    /// The object with its version (S3's ETag; the directory store's digest of the bytes), for a
    /// later [`ObjectStore::put_if_version`].
    fn get_versioned(&self, key: &Key) -> Result<Option<(Vec<u8>, String)>, StoreError>;
    /// Writes the object only if it is still at `version` (`None`: only if there is none), S3's
    /// `If-Match` / `If-None-Match: *`: a read-modify-write that cannot lose a concurrent one.
    /// `false` when the object changed (or vanished) meanwhile; nothing is written then.
    fn put_if_version(
        &self,
        key: &Key,
        body: &[u8],
        version: Option<&str>,
    ) -> Result<bool, StoreError>;
    fn exists(&self, key: &Key) -> Result<bool, StoreError>;
    /// Keys under `prefix` (whole segments), sorted.
    fn list(&self, prefix: &str) -> Result<Vec<Key>, StoreError>;
    fn delete(&self, key: &Key) -> Result<(), StoreError>;
    /// Deletes every key, in batches where the store has them; returns how many were asked.
    fn delete_many(&self, keys: &[Key]) -> Result<usize, StoreError> {
        for k in keys {
            self.delete(k)?;
        }
        Ok(keys.len())
    }
    /// When the object was last written (`None`: no such object).
    fn modified(&self, key: &Key) -> Result<Option<std::time::SystemTime>, StoreError>;
}

/// Scratch folder inside the root for whole-object writes; never listed.
const TMP_DIR: &str = ".statapp-tmp";

/// A directory as a bucket.
pub struct DirStore {
    root: PathBuf,
    bucket: String,
    notifications: Vec<(String, Arc<dyn JobQueue>)>,
    counter: AtomicU64,
}

fn io_err(key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        key: key.to_string(),
        detail: e.to_string(),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.000Z` for the current time (S3's `eventTime`).
fn event_time() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

impl std::fmt::Debug for DirStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirStore")
            .field("root", &self.root)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl DirStore {
    pub fn open(root: impl Into<PathBuf>, bucket: &str) -> Result<Self, StoreError> {
        let root = root.into();
        std::fs::create_dir_all(root.join(TMP_DIR)).map_err(|e| io_err(TMP_DIR, e))?;
        Ok(Self {
            root,
            bucket: bucket.to_string(),
            notifications: Vec::new(),
            counter: AtomicU64::new(0),
        })
    }

    /// Sends an object-created event to `queue` for every object written under `prefix`.
    pub fn notify(mut self, prefix: &str, queue: Arc<dyn JobQueue>) -> Self {
        self.notifications.push((prefix.to_string(), queue));
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Sends the object-created event of every object already under `prefix` to the queues that
    /// watch it, as if each had just been written: files copied into the directory by other tools
    /// (`cp`, a file manager) enter the pipeline this way. Returns how many objects were announced.
    pub fn announce(&self, prefix: &str) -> Result<usize, StoreError> {
        let keys = self.list(prefix)?;
        for key in &keys {
            self.announce_key(key)?;
        }
        Ok(keys.len())
    }

    /// Sends the object-created event of one object already there (`false`: it is gone).
    pub fn announce_key(&self, key: &Key) -> Result<bool, StoreError> {
        match self.get(key)? {
            Some(body) => self.created(key, &body).map(|()| true),
            None => Ok(false),
        }
    }

    fn path(&self, key: &Key) -> PathBuf {
        key.segments().fold(self.root.clone(), |p, s| p.join(s))
    }

    fn write_temp(&self, key: &Key, body: &[u8]) -> Result<PathBuf, StoreError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .root
            .join(TMP_DIR)
            .join(format!("{}-{n}", std::process::id()));
        std::fs::write(&tmp, body).map_err(|e| io_err(key.as_str(), e))?;
        if let Some(parent) = self.path(key).parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_err(key.as_str(), e))?;
        }
        Ok(tmp)
    }

    /// An exclusive lock on `key`'s lock file (released when dropped, or when the process dies).
    fn lock(&self, key: &Key) -> Result<std::fs::File, StoreError> {
        let dir = self.root.join(TMP_DIR).join("locks");
        std::fs::create_dir_all(&dir).map_err(|e| io_err(key.as_str(), e))?;
        let file = std::fs::File::create(dir.join(crate::digest(key.as_str().as_bytes())))
            .map_err(|e| io_err(key.as_str(), e))?;
        file.lock().map_err(|e| io_err(key.as_str(), e))?;
        Ok(file)
    }

    fn created(&self, key: &Key, body: &[u8]) -> Result<(), StoreError> {
        for (prefix, queue) in &self.notifications {
            if key.is_under(prefix) {
                let event = object_created_event(
                    &self.bucket,
                    key,
                    body.len() as u64,
                    &crate::digest(body),
                    &event_time(),
                );
                queue
                    .send(&event.to_string())
                    .map_err(|e| StoreError::Notify {
                        key: key.to_string(),
                        detail: e.to_string(),
                    })?;
            }
        }
        Ok(())
    }
}

impl ObjectStore for DirStore {
    fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        match std::fs::read(self.path(key)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(key.as_str(), e)),
        }
    }

    fn put(&self, key: &Key, body: &[u8]) -> Result<(), StoreError> {
        let tmp = self.write_temp(key, body)?;
        std::fs::rename(&tmp, self.path(key)).map_err(|e| io_err(key.as_str(), e))?;
        self.created(key, body)
    }

    fn put_if_absent(&self, key: &Key, body: &[u8]) -> Result<bool, StoreError> {
        let tmp = self.write_temp(key, body)?;
        // a hard link fails when the target exists: an atomic create-if-absent
        let linked = std::fs::hard_link(&tmp, self.path(key));
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                self.created(key, body)?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err(key.as_str(), e)),
        }
    }

    fn get_versioned(&self, key: &Key) -> Result<Option<(Vec<u8>, String)>, StoreError> {
        Ok(self.get(key)?.map(|b| {
            let v = crate::digest(&b);
            (b, v)
        }))
    }

    fn put_if_version(
        &self,
        key: &Key,
        body: &[u8],
        version: Option<&str>,
    ) -> Result<bool, StoreError> {
        let Some(version) = version else {
            return self.put_if_absent(key, body);
        };
        // writers of one key take turns on its lock file; the check and the rename happen
        // while it is held, so no other conditional write can come between them
        let lock = self.lock(key)?;
        let current = self.get(key)?.map(|b| crate::digest(&b));
        if current.as_deref() != Some(version) {
            return Ok(false);
        }
        let tmp = self.write_temp(key, body)?;
        std::fs::rename(&tmp, self.path(key)).map_err(|e| io_err(key.as_str(), e))?;
        drop(lock);
        self.created(key, body).map(|()| true)
    }

    fn exists(&self, key: &Key) -> Result<bool, StoreError> {
        Ok(self.path(key).is_file())
    }

    fn list(&self, prefix: &str) -> Result<Vec<Key>, StoreError> {
        let mut out = Vec::new();
        // the directory of the prefix's complete segments holds everything under it
        let dir = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let start = dir
            .split('/')
            .filter(|s| !matches!(*s, "" | "." | ".."))
            .fold(self.root.clone(), |p, s| p.join(s));
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(prefix, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_err(prefix, e))?;
                let path = entry.path();
                if path == self.root.join(TMP_DIR) {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                } else if let Some(rel) =
                    path.strip_prefix(&self.root).ok().and_then(|r| r.to_str())
                {
                    // files whose names are not valid keys are not objects
                    if let Ok(k) = Key::new(rel.replace(std::path::MAIN_SEPARATOR, "/"))
                        && (prefix.is_empty() || k.is_under(prefix))
                    {
                        out.push(k);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, key: &Key) -> Result<(), StoreError> {
        match std::fs::remove_file(self.path(key)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(key.as_str(), e)),
        }
    }

    fn modified(&self, key: &Key) -> Result<Option<std::time::SystemTime>, StoreError> {
        match std::fs::metadata(self.path(key)).and_then(|m| m.modified()) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(key.as_str(), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::parse_object_created;
    use crate::queue::{JobQueue, MemQueue, SystemClock};
    use std::time::Duration;

    fn key(s: &str) -> Key {
        Key::new(s).unwrap()
    }

    #[test]
    fn whole_objects_conditional_puts_and_listing() {
        let tmp = tempfile::tempdir().unwrap();
        let s = DirStore::open(tmp.path(), "b").unwrap();
        assert_eq!(s.get(&key("a/x")).unwrap(), None);
        s.put(&key("a/x"), b"1").unwrap();
        s.put(&key("a/x"), b"22").unwrap();
        assert_eq!(s.get(&key("a/x")).unwrap().unwrap(), b"22");
        assert!(s.put_if_absent(&key("a/y/z"), b"3").unwrap());
        assert!(!s.put_if_absent(&key("a/y/z"), b"4").unwrap());
        assert_eq!(s.get(&key("a/y/z")).unwrap().unwrap(), b"3");
        s.put(&key("ab/w"), b"5").unwrap();
        let names = |v: Vec<Key>| v.into_iter().map(|k| k.to_string()).collect::<Vec<_>>();
        assert_eq!(names(s.list("a/").unwrap()), vec!["a/x", "a/y/z"]);
        assert_eq!(names(s.list("").unwrap()), vec!["a/x", "a/y/z", "ab/w"]);
        s.delete(&key("a/x")).unwrap();
        s.delete(&key("a/x")).unwrap();
        assert!(!s.exists(&key("a/x")).unwrap());
        // no temporary files are left
        assert_eq!(
            std::fs::read_dir(tmp.path().join(TMP_DIR)).unwrap().count(),
            0
        );
        // a read-modify-write succeeds only on the version it read
        assert!(
            !s.put_if_version(&key("a/y/z"), b"5", Some("stale"))
                .unwrap()
        );
        let (body, v) = s.get_versioned(&key("a/y/z")).unwrap().unwrap();
        assert_eq!(body, b"3");
        assert!(s.put_if_version(&key("a/y/z"), b"6", Some(&v)).unwrap());
        assert!(!s.put_if_version(&key("a/y/z"), b"7", Some(&v)).unwrap());
        assert!(!s.put_if_version(&key("a/y/z"), b"7", None).unwrap());
        assert!(s.put_if_version(&key("new"), b"8", None).unwrap());
        assert_eq!(s.get(&key("a/y/z")).unwrap().unwrap(), b"6");
    }

    #[test]
    fn writes_under_watched_prefixes_send_s3_events() {
        let tmp = tempfile::tempdir().unwrap();
        let q = Arc::new(MemQueue::new("ingest", Arc::new(SystemClock)));
        let s = DirStore::open(tmp.path(), "bucket")
            .unwrap()
            .notify("incoming/", q.clone());
        s.put(&key("incoming/case 1/image.nii.gz"), b"abc").unwrap();
        s.put(&key("cases/case 1/image.nii.gz"), b"abc").unwrap();
        assert!(
            !s.put_if_absent(&key("incoming/case 1/image.nii.gz"), b"x")
                .unwrap()
        );
        let got = q.receive(10, Duration::from_secs(1)).unwrap();
        assert_eq!(got.len(), 1);
        let ev = parse_object_created(&got[0].body).unwrap();
        assert_eq!(ev[0].key.as_str(), "incoming/case 1/image.nii.gz");
        assert_eq!((ev[0].bucket.as_str(), ev[0].size), ("bucket", 3));
        assert!(event_time().ends_with(".000Z") && event_time().len() == 24);
    }
}
