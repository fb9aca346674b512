//! The agent's event log: a bounded in-memory ring for `GET /events` (the original's
//! `EVENT_LOG`, capped at 1000) and, optionally, an append-only JSON-lines file of leadership
//! intervals that a safety checker can read after a run.
use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::clock;

pub const CAPACITY: usize = 1000;
/// `GET /events` returns this many, newest last.
pub const TAIL: usize = 50;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Event {
    /// UTC ISO-8601.
    pub time: String,
    pub message: String,
}

/// One line of the leadership file. `at_ms` is wall-clock unix ms of the moment the agent
/// started acting (promote) or stopped (demote: the moment its guard began refusing).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeadershipRecord {
    pub node: String,
    pub env: String,
    /// `"promote"` or `"demote"`.
    pub event: String,
    pub term: u64,
    pub at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

pub struct EventLog {
    ring: Mutex<VecDeque<Event>>,
    file: Option<Mutex<std::fs::File>>,
}

impl EventLog {
    pub fn new(path: Option<&Path>) -> std::io::Result<Self> {
        let file = match path {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            )),
            None => None,
        };
        Ok(EventLog {
            ring: Mutex::new(VecDeque::with_capacity(64)),
            file,
        })
    }

    pub fn log(&self, message: impl Into<String>) {
        self.log_at(clock::wall_ms(), message);
    }

    fn log_at(&self, wall_ms: u64, message: impl Into<String>) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() >= CAPACITY {
            ring.pop_front();
        }
        ring.push_back(Event {
            time: clock::iso8601(wall_ms),
            message: message.into(),
        });
    }

    /// Records a leadership change in the ring (the original's PROMOTION/DEMOTION wording)
    /// and, if configured, in the file. The file is flushed per line: a `kill -9` right after
    /// must not lose it.
    pub fn leadership(&self, rec: LeadershipRecord) {
        let msg = if rec.event == "promote" {
            format!(
                "PROMOTION: node promoted to leader ({}) term={}",
                rec.node, rec.term
            )
        } else {
            format!(
                "DEMOTION: node demoted to witness (leader={}) term={} reason={}",
                rec.leader.as_deref().unwrap_or("none"),
                rec.term,
                rec.reason.as_deref().unwrap_or("-")
            )
        };
        self.log_at(rec.at_ms, msg);
        if let Some(f) = &self.file {
            let mut line = serde_json::to_string(&rec).unwrap_or_default();
            line.push('\n');
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = f.write_all(line.as_bytes()).and_then(|_| f.flush()) {
                tracing::warn!("cannot write the event log file: {e}");
            }
        }
    }

    /// The last `n` events, oldest first.
    pub fn tail(&self, n: usize) -> Vec<Event> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter()
            .skip(ring.len().saturating_sub(n))
            .cloned()
            .collect()
    }
}

/// Reads a leadership file back (for the safety checker and tests). Bad lines are errors.
pub fn read_leadership(path: &Path) -> std::io::Result<Vec<LeadershipRecord>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_bounded_and_tail_is_newest() {
        let log = EventLog::new(None).unwrap();
        for i in 0..(CAPACITY + 10) {
            log.log(format!("m{i}"));
        }
        assert_eq!(log.tail(usize::MAX).len(), CAPACITY);
        let t = log.tail(TAIL);
        assert_eq!(t.len(), TAIL);
        assert_eq!(t.last().unwrap().message, format!("m{}", CAPACITY + 9));
        assert_eq!(t[0].message, format!("m{}", CAPACITY + 10 - TAIL));
    }

    #[test]
    fn leadership_file_round_trips() {
        let p = std::env::temp_dir().join(format!("brh-ev-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let log = EventLog::new(Some(&p)).unwrap();
        let rec = LeadershipRecord {
            node: "n1".into(),
            env: "dev".into(),
            event: "promote".into(),
            term: 3,
            at_ms: 1000,
            reason: None,
            leader: None,
        };
        log.leadership(rec.clone());
        log.leadership(LeadershipRecord {
            event: "demote".into(),
            at_ms: 2000,
            reason: Some("deadline".into()),
            ..rec.clone()
        });
        let back = read_leadership(&p).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0], rec);
        assert!(log.tail(2)[1].message.starts_with("DEMOTION"));
        let _ = std::fs::remove_file(&p);
    }
}
