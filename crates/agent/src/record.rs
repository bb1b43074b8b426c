//! The agent's record of the commands it has started, so that no command runs twice: not when the
//! broker delivers it again (QoS 1 may), not when someone replays it, not after the agent was
//! killed in the middle of it and restarted. An id is written (and synced to disk) before the
//! command runs; ids are forgotten once their command has expired, since an expired command is
//! refused by its age anyway.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::protocol::Reply;

/// Answers kept to send again for a redelivered command (they may be large, so only recent ones).
const KEPT_REPLIES: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// It ran and this process still has its answer.
    Answered(Box<Reply>),
    /// It ran (or started, and the agent stopped before it ended); the answer is not kept.
    Ran,
}

/// The time before which commands are refused as expired, given the allowed clock skew: ids of
/// commands that expired before it can be forgotten.
pub fn horizon(max_clock_skew: std::time::Duration) -> i64 {
    crate::now_ms().saturating_sub(i64::try_from(max_clock_skew.as_millis()).unwrap_or(i64::MAX))
}

#[derive(Serialize, Deserialize)]
struct Line {
    id: String,
    expires_at: i64,
}

pub struct Record {
    file: Option<(PathBuf, File)>,
    /// id → expires_at
    ids: HashMap<String, i64>,
    lines: usize,
    replies: HashMap<String, Reply>,
    reply_order: VecDeque<String>,
}

impl Record {
    /// A record that lasts as long as the process (the simulator's embedded agents).
    pub fn in_memory() -> Record {
        Record { file: None, ids: HashMap::new(), lines: 0, replies: HashMap::new(), reply_order: VecDeque::new() }
    }

    /// The record in `path`, created when missing; unreadable lines (a write cut by a crash) are
    /// skipped. Ids of commands that expired before `horizon` are dropped: pass the time before
    /// which a command is refused as expired anyway (now minus the allowed clock skew), never
    /// later, or an expired command still inside the skew could run again.
    pub fn open(path: &Path, horizon: i64) -> std::io::Result<Record> {
        let mut record = Record::in_memory();
        if let Ok(file) = File::open(path) {
            for line in BufReader::new(file).lines() {
                if let Ok(entry) = serde_json::from_str::<Line>(&line?) {
                    record.ids.insert(entry.id, entry.expires_at);
                }
            }
        }
        record.file = Some((path.to_owned(), File::open(path).or_else(|_| File::create(path))?));
        record.compact(horizon)?;
        Ok(record)
    }

    pub fn seen(&self, id: &str) -> Option<Seen> {
        if let Some(reply) = self.replies.get(id) {
            return Some(Seen::Answered(Box::new(reply.clone())));
        }
        self.ids.contains_key(id).then_some(Seen::Ran)
    }

    /// Notes that `id` starts now; on disk before it runs.
    pub fn start(&mut self, id: &str, expires_at: i64) -> std::io::Result<()> {
        if let Some((_, file)) = &mut self.file {
            let mut line =
                serde_json::to_vec(&Line { id: id.to_owned(), expires_at }).map_err(std::io::Error::other)?;
            line.push(b'\n');
            file.write_all(&line)?;
            file.sync_data()?;
        }
        self.ids.insert(id.to_owned(), expires_at);
        self.lines += 1;
        Ok(())
    }

    pub fn answered(&mut self, reply: &Reply) {
        if self.reply_order.len() == KEPT_REPLIES
            && let Some(old) = self.reply_order.pop_front()
        {
            self.replies.remove(&old);
        }
        self.reply_order.push_back(reply.id.clone());
        self.replies.insert(reply.id.clone(), reply.clone());
    }

    /// Forgets ids whose commands expired before `horizon`, and rewrites the file once it holds
    /// many more lines than live ids.
    pub fn forget_before(&mut self, horizon: i64) -> std::io::Result<()> {
        self.ids.retain(|_, expires_at| *expires_at >= horizon);
        if self.lines > 2 * self.ids.len() + 1000 { self.compact(horizon) } else { Ok(()) }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Writes the live ids to a new file and renames it over the old one.
    fn compact(&mut self, horizon: i64) -> std::io::Result<()> {
        self.ids.retain(|_, expires_at| *expires_at >= horizon);
        let Some((path, _)) = &self.file else { return Ok(()) };
        let path = path.clone();
        let temp = path.with_extension("new");
        let mut out = File::create(&temp)?;
        for (id, expires_at) in &self.ids {
            let mut line =
                serde_json::to_vec(&Line { id: id.clone(), expires_at: *expires_at }).map_err(std::io::Error::other)?;
            line.push(b'\n');
            out.write_all(&line)?;
        }
        out.sync_all()?;
        std::fs::rename(&temp, &path)?;
        let file = OpenOptions::new().append(true).open(&path)?;
        self.file = Some((path, file));
        self.lines = self.ids.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Outcome;

    #[test]
    fn a_started_id_is_remembered_across_a_restart_until_it_expires() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("commands.log");
        let mut record = Record::open(&path, 1_000).expect("open");
        record.start("c1", 5_000).expect("start");
        record.start("c2", 2_000).expect("start");
        let reply =
            Reply { id: "c1".into(), agent_id: "a".into(), outcome: Outcome::Fetched { url: "file:///x".into() } };
        record.answered(&reply);
        assert_eq!(record.seen("c1"), Some(Seen::Answered(Box::new(reply))));
        drop(record);

        // Killed and started again: the ids are there, the answers are not.
        let mut record = Record::open(&path, 1_500).expect("reopen");
        assert_eq!(record.seen("c1"), Some(Seen::Ran));
        assert_eq!(record.seen("c2"), Some(Seen::Ran));
        assert_eq!(record.seen("c3"), None);
        record.forget_before(3_000).expect("forget");
        assert_eq!(record.seen("c2"), None);
        drop(record);
        // A torn last line does not lose the rest.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{\"id\":\"c4\","))
            .expect("tear");
        let record = Record::open(&path, 3_000).expect("reopen torn");
        assert_eq!(record.seen("c1"), Some(Seen::Ran));
        assert_eq!(record.len(), 1);
    }
}
