//! The `JobQueue` trait with SQS's delivery semantics, and `MemQueue`, the in-process queue of
//! the embedded default. A received message is hidden for the visibility timeout; if it is not
//! deleted in time it becomes visible again and is delivered again with a higher receive count;
//! once its receive count reaches `max_receives`, the next redelivery moves it to the dead-letter
//! queue instead. Consumers must therefore be idempotent, exactly as on SQS.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueOpError {
    #[error("queue {queue}: unknown or expired receipt handle {receipt}")]
    Receipt { queue: String, receipt: String },
    #[error("queue {queue}: {detail}")]
    Backend { queue: String, detail: String },
}

/// A delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: String,
    /// Changes with every delivery; only the latest one can delete the message.
    pub receipt: String,
    pub body: String,
    /// 1 on the first delivery.
    pub receive_count: u32,
}

/// What every stage consumes from and produces to.
pub trait JobQueue: Send + Sync {
    fn name(&self) -> &str;
    fn send(&self, body: &str) -> Result<String, QueueOpError>;
    /// Sends a message that becomes visible after `delay` (SQS `DelaySeconds`, at most 15
    /// minutes): a job that came too early waits without holding a worker.
    fn send_delayed(&self, body: &str, delay: Duration) -> Result<String, QueueOpError>;
    /// Up to `max` visible messages, hidden for `visibility` afterwards.
    fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, QueueOpError>;
    /// Acknowledges a delivery: the message is gone.
    fn delete(&self, receipt: &str) -> Result<(), QueueOpError>;
    /// Messages waiting or in flight.
    fn approximate_len(&self) -> Result<usize, QueueOpError>;
}

/// Time source, so tests can step through visibility timeouts.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock(Mutex<Instant>);

impl Default for ManualClock {
    fn default() -> Self {
        Self(Mutex::new(Instant::now()))
    }
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Clone)]
struct Stored {
    id: String,
    body: String,
    receive_count: u32,
    visible_at: Instant,
    receipt: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    messages: VecDeque<Stored>,
    next_id: u64,
    next_receipt: u64,
}

/// In-process queue with SQS semantics and an optional dead-letter queue.
pub struct MemQueue {
    name: String,
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    dead_letter: Option<(Arc<MemQueue>, u32)>,
}

impl std::fmt::Debug for MemQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemQueue")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl MemQueue {
    pub fn new(name: &str, clock: Arc<dyn Clock>) -> Self {
        Self {
            name: name.to_string(),
            state: Mutex::new(State::default()),
            clock,
            dead_letter: None,
        }
    }

    /// Messages received `max_receives` times and still not deleted go to `dlq` (SQS's redrive
    /// policy).
    pub fn with_dead_letter(mut self, dlq: Arc<MemQueue>, max_receives: u32) -> Self {
        self.dead_letter = Some((dlq, max_receives.max(1)));
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the earliest message that is not visible now becomes visible (a delayed send or a
    /// visibility timeout), so an idle runner knows how long to wait.
    pub fn next_visible(&self) -> Option<Instant> {
        let now = self.clock.now();
        self.lock()
            .messages
            .iter()
            .map(|m| m.visible_at)
            .filter(|t| *t > now)
            .min()
    }

    /// Messages (waiting, in flight): in flight means received and hidden for its visibility
    /// timeout (SQS's `ApproximateNumberOfMessagesNotVisible`); waiting counts delayed ones.
    pub fn counts(&self) -> (usize, usize) {
        let now = self.clock.now();
        let s = self.lock();
        let in_flight = s
            .messages
            .iter()
            .filter(|m| m.receipt.is_some() && m.visible_at > now)
            .count();
        (s.messages.len() - in_flight, in_flight)
    }

    /// Bodies currently held (visible or not), oldest first; for tests and status output.
    pub fn bodies(&self) -> Vec<String> {
        self.lock()
            .messages
            .iter()
            .map(|m| m.body.clone())
            .collect()
    }
}

impl JobQueue for MemQueue {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&self, body: &str) -> Result<String, QueueOpError> {
        self.send_delayed(body, Duration::ZERO)
    }

    fn send_delayed(&self, body: &str, delay: Duration) -> Result<String, QueueOpError> {
        let now = self.clock.now() + delay;
        let mut s = self.lock();
        s.next_id += 1;
        let id = format!("{}-{:08}", self.name, s.next_id);
        s.messages.push_back(Stored {
            id: id.clone(),
            body: body.to_string(),
            receive_count: 0,
            visible_at: now,
            receipt: None,
        });
        Ok(id)
    }

    fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, QueueOpError> {
        let now = self.clock.now();
        let mut out = Vec::new();
        let mut dead = Vec::new();
        {
            let mut s = self.lock();
            let mut i = 0;
            while i < s.messages.len() && out.len() < max {
                if s.messages[i].visible_at > now {
                    i += 1;
                    continue;
                }
                if let Some((_, max_receives)) = &self.dead_letter
                    && s.messages[i].receive_count >= *max_receives
                {
                    if let Some(m) = s.messages.remove(i) {
                        dead.push(m.body);
                    }
                    continue;
                }
                s.next_receipt += 1;
                let receipt = format!("{}-r{}", self.name, s.next_receipt);
                let m = &mut s.messages[i];
                m.receive_count += 1;
                m.visible_at = now + visibility;
                m.receipt = Some(receipt.clone());
                out.push(Delivery {
                    message_id: m.id.clone(),
                    receipt,
                    body: m.body.clone(),
                    receive_count: m.receive_count,
                });
                i += 1;
            }
        }
        if let Some((dlq, _)) = &self.dead_letter {
            for body in dead {
                tracing::warn!(queue = %self.name, dead_letter = %dlq.name, "message moved to the dead-letter queue");
                dlq.send(&body)?;
            }
        }
        Ok(out)
    }

    fn delete(&self, receipt: &str) -> Result<(), QueueOpError> {
        let mut s = self.lock();
        match s
            .messages
            .iter()
            .position(|m| m.receipt.as_deref() == Some(receipt))
        {
            Some(i) => {
                s.messages.remove(i);
                Ok(())
            }
            None => Err(QueueOpError::Receipt {
                queue: self.name.clone(),
                receipt: receipt.to_string(),
            }),
        }
    }

    fn approximate_len(&self) -> Result<usize, QueueOpError> {
        Ok(self.lock().messages.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIS: Duration = Duration::from_secs(30);

    #[test]
    fn visibility_redelivery_and_receipts() {
        let clock = Arc::new(ManualClock::default());
        let q = MemQueue::new("jobs", clock.clone());
        q.send("a").unwrap();
        q.send("b").unwrap();
        let first = q.receive(10, VIS).unwrap();
        assert_eq!(first.len(), 2);
        assert!(
            q.receive(10, VIS).unwrap().is_empty(),
            "hidden while in flight"
        );
        q.delete(&first[0].receipt).unwrap();
        clock.advance(VIS + Duration::from_secs(1));
        let again = q.receive(10, VIS).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].body.as_str(), again[0].receive_count), ("b", 2));
        // the old receipt no longer deletes it
        assert!(q.delete(&first[1].receipt).is_err());
        q.delete(&again[0].receipt).unwrap();
        assert_eq!(q.approximate_len().unwrap(), 0);
    }

    #[test]
    fn poison_messages_end_in_the_dead_letter_queue() {
        let clock = Arc::new(ManualClock::default());
        let dlq = Arc::new(MemQueue::new("jobs-dlq", clock.clone()));
        let q = MemQueue::new("jobs", clock.clone()).with_dead_letter(dlq.clone(), 3);
        q.send("poison").unwrap();
        q.send("good").unwrap();
        for round in 1..=3 {
            let got = q.receive(10, VIS).unwrap();
            for d in &got {
                if d.body == "good" {
                    q.delete(&d.receipt).unwrap();
                }
            }
            assert!(
                got.iter()
                    .any(|d| d.body == "poison" && d.receive_count == round)
            );
            clock.advance(VIS);
        }
        assert!(q.receive(10, VIS).unwrap().is_empty());
        assert_eq!(dlq.bodies(), vec!["poison".to_string()]);
        assert_eq!(q.approximate_len().unwrap(), 0);
    }
}
