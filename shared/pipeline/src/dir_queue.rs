//! A queue in a local directory, for the embedded default and the trainer's local mode:
//! `pending/` holds messages, a consumer claims one by renaming it into `inflight/` (atomic on one
//! filesystem, so two workers never get the same message), then deletes it when done or moves it
//! to `failed/` with the reason. A message's file name is a digest of its body, so sending the same
//! job twice enqueues it once.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{path}: {detail}")]
    Io { path: PathBuf, detail: String },
}

fn io(path: &Path, e: impl std::fmt::Display) -> QueueError {
    QueueError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// A claimed message.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub id: String,
    pub body: String,
    path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct DirQueue {
    root: PathBuf,
}

impl DirQueue {
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, QueueError> {
        let root = root.into();
        for sub in ["pending", "inflight", "failed"] {
            let d = root.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| io(&d, e))?;
        }
        Ok(Self { root })
    }

    /// Enqueues a message (written whole, then renamed into `pending/`); returns its id.
    pub fn send(&self, body: &str) -> Result<String, QueueError> {
        let id = crate::digest(body.as_bytes());
        let path = self.root.join("pending").join(format!("{id}.json"));
        let tmp = self.root.join("pending").join(format!(".{id}.partial"));
        std::fs::write(&tmp, body).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        Ok(id)
    }

    /// Claims the oldest-named pending message, if any.
    pub fn receive(&self) -> Result<Option<Received>, QueueError> {
        let pending = self.root.join("pending");
        let mut names: Vec<String> = std::fs::read_dir(&pending)
            .map_err(|e| io(&pending, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
            .collect();
        names.sort();
        for name in names {
            let from = pending.join(&name);
            let to = self.root.join("inflight").join(&name);
            // another worker may have claimed it first: try the next one
            if std::fs::rename(&from, &to).is_err() {
                continue;
            }
            let body = std::fs::read_to_string(&to).map_err(|e| io(&to, e))?;
            let id = name.trim_end_matches(".json").to_string();
            return Ok(Some(Received { id, body, path: to }));
        }
        Ok(None)
    }

    /// The message is done: remove it.
    pub fn complete(&self, msg: Received) -> Result<(), QueueError> {
        std::fs::remove_file(&msg.path).map_err(|e| io(&msg.path, e))
    }

    /// The message failed: keep it in `failed/` with `<id>.error.txt`.
    pub fn fail(&self, msg: Received, reason: &str) -> Result<(), QueueError> {
        let failed = self.root.join("failed");
        let note = failed.join(format!("{}.error.txt", msg.id));
        std::fs::write(&note, format!("{reason}\n")).map_err(|e| io(&note, e))?;
        let to = failed.join(format!("{}.json", msg.id));
        std::fs::rename(&msg.path, &to).map_err(|e| io(&to, e))
    }

    /// Puts messages left in `inflight/` by a crashed worker back into `pending/`.
    pub fn requeue_inflight(&self) -> Result<usize, QueueError> {
        let inflight = self.root.join("inflight");
        let mut n = 0;
        for entry in std::fs::read_dir(&inflight).map_err(|e| io(&inflight, e))? {
            let entry = entry.map_err(|e| io(&inflight, e))?;
            let to = self.root.join("pending").join(entry.file_name());
            std::fs::rename(entry.path(), &to).map_err(|e| io(&to, e))?;
            n += 1;
        }
        Ok(n)
    }

    /// Number of pending messages.
    pub fn pending(&self) -> Result<usize, QueueError> {
        self.count("pending")
    }

    /// Messages (pending, in flight, failed).
    pub fn counts(&self) -> Result<(usize, usize, usize), QueueError> {
        Ok((
            self.count("pending")?,
            self.count("inflight")?,
            self.count("failed")?,
        ))
    }

    fn count(&self, sub: &str) -> Result<usize, QueueError> {
        let dir = self.root.join(sub);
        Ok(std::fs::read_dir(&dir)
            .map_err(|e| io(&dir, e))?
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.ends_with(".json") && !n.starts_with('.'))
            })
            .count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_receive_complete_fail_requeue() {
        let tmp = tempfile::tempdir().unwrap();
        let q = DirQueue::open(tmp.path()).unwrap();
        let a = q.send("{\"a\":1}").unwrap();
        assert_eq!(q.send("{\"a\":1}").unwrap(), a, "same body, same message");
        q.send("{\"b\":2}").unwrap();
        assert_eq!(q.pending().unwrap(), 2);
        let m1 = q.receive().unwrap().unwrap();
        let m2 = q.receive().unwrap().unwrap();
        assert_ne!(m1.id, m2.id);
        assert!(q.receive().unwrap().is_none());
        q.complete(m1).unwrap();
        let failed_id = m2.id.clone();
        q.fail(m2, "bad input").unwrap();
        let note = tmp
            .path()
            .join("failed")
            .join(format!("{failed_id}.error.txt"));
        assert_eq!(std::fs::read_to_string(note).unwrap(), "bad input\n");
        // a crashed worker's claim goes back to pending
        q.send("{\"c\":3}").unwrap();
        let _lost = q.receive().unwrap().unwrap();
        assert_eq!(q.requeue_inflight().unwrap(), 1);
        assert_eq!(q.pending().unwrap(), 1);
    }
}
