//! Durable prediction store: one JSONL file per shard under `RUN_DIR/store/`, one record per
//! line, `fsync`ed after each record. A torn last line (killed process, full disk) is ignored
//! when reading and truncated away when the shard's own file is reopened for appending, so the
//! store is valid after any interruption and resuming loses and duplicates nothing.

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use tokenscale_fsio::FileLock;

/// A stored prediction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The model's name.
    pub model: String,
    /// The reducer's name (`default`, `queries`, `pool`, `fastv:2`, ...).
    pub reducer: String,
    /// Vision tokens per image the answer was made with.
    pub n: usize,
    /// The dataset name.
    pub dataset: String,
    /// The item's `index` cell.
    pub index: String,
    /// The model's answer text (empty for an error record).
    pub prediction: String,
    /// Seconds spent in `Answerer::answer` (informational; not part of the identity).
    #[serde(default)]
    pub seconds: f64,
    /// Why no prediction could be made (bad image, prompt too long...). Such a record is kept for
    /// the report but counts as not done: a rerun tries the item again, and a later success wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// (model, reducer, n, dataset, index)
pub type Key = (String, String, usize, String, String);

impl Record {
    /// The record's identity: (model, reducer, n, dataset, index).
    pub fn key(&self) -> Key {
        (self.model.clone(), self.reducer.clone(), self.n, self.dataset.clone(), self.index.clone())
    }
}

/// A deterministic 1/N slice: shard `k` (0-based) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard's number, 0-based (`k < count`).
    pub k: usize,
    /// How many shards the rows are split into (≥ 1).
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { k: 0, count: 1 }
    }
}

impl Shard {
    /// Parse `k/N` (0 ≤ k < N).
    pub fn parse(s: &str) -> Result<Shard> {
        let (a, b) = s
            .split_once('/')
            .ok_or_else(|| anyhow!("shard must look like k/N (0-based k), got {s:?}"))?;
        let k: usize = a.trim().parse().map_err(|_| anyhow!("shard {s:?}: k is not a number"))?;
        let count: usize =
            b.trim().parse().map_err(|_| anyhow!("shard {s:?}: N is not a number"))?;
        if count == 0 || k >= count {
            bail!("shard {s:?}: need 0 <= k < N");
        }
        Ok(Shard { k, count })
    }
    /// Whether the row at position `row` of a dataset belongs to this shard (strided, as
    /// VLMEvalKit's `range(rank, len, world_size)`).
    pub fn owns(&self, row: usize) -> bool {
        row % self.count == self.k
    }
    /// This shard's store file name, `shard-KKKK-of-NNNN.jsonl`.
    pub fn file_name(&self) -> String {
        format!("shard-{:04}-of-{:04}.jsonl", self.k, self.count)
    }
    /// The advisory lock beside the shard's file, held by the one process appending to it.
    pub fn lock_name(&self) -> String {
        format!("shard-{:04}-of-{:04}.lock", self.k, self.count)
    }
}

/// Read every complete record of one JSONL file. An incomplete last line (no trailing newline)
/// is ignored; returns the records and the byte length of the valid prefix.
pub fn read_jsonl(path: &Path) -> Result<(Vec<Record>, u64)> {
    let mut buf = Vec::new();
    File::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .read_to_end(&mut buf)?;
    let valid = match buf.iter().rposition(|&b| b == b'\n') {
        Some(p) => p + 1,
        None => 0,
    };
    let mut out = Vec::new();
    for (i, line) in buf[..valid].split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let rec: Record = serde_json::from_slice(line).with_context(|| {
            format!("{}: line {}: not a prediction record", path.display(), i + 1)
        })?;
        out.push(rec);
    }
    Ok((out, valid as u64))
}

/// The predictions of a run directory (every `store/*.jsonl`, files in name order, first
/// prediction of a key wins; error records are left out).
pub fn load_run(run_dir: &Path) -> Result<BTreeMap<Key, Record>> {
    Ok(load_run_with_failures(run_dir)?.0)
}

/// The predictions of a run directory, and the last error record of every key that has no
/// prediction.
pub fn load_run_with_failures(
    run_dir: &Path,
) -> Result<(BTreeMap<Key, Record>, BTreeMap<Key, Record>)> {
    let (mut done, mut failed) = (BTreeMap::new(), BTreeMap::new());
    for f in store_files(run_dir)? {
        let (recs, _) = read_jsonl(&f)?;
        for r in recs {
            if r.error.is_some() {
                failed.insert(r.key(), r);
            } else {
                done.entry(r.key()).or_insert(r);
            }
        }
    }
    failed.retain(|k, _| !done.contains_key(k));
    Ok((done, failed))
}

fn store_files(run_dir: &Path) -> Result<Vec<PathBuf>> {
    let dir = run_dir.join("store");
    if !dir.exists() {
        return Ok(vec![]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().map(|x| x == "jsonl").unwrap_or(false))
        .collect();
    files.sort();
    Ok(files)
}

/// The appendable store of one shard, with the set of keys already done in the whole run dir.
pub struct Store {
    path: PathBuf,
    file: File,
    /// Held while the store is open: a second process on the same shard is refused.
    _lock: FileLock,
    len: u64,
    done: BTreeMap<Key, Record>,
    failed: BTreeMap<Key, Record>,
}

impl Store {
    /// Open (creating) `RUN_DIR/store/<shard file>`, repairing a torn last line. The shard's
    /// lock is taken first: while another process has the shard open this is refused with a
    /// message naming that process (pid, host, start time).
    pub fn open(run_dir: &Path, shard: Shard) -> Result<Store> {
        let dir = run_dir.join("store");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let what = format!("shard {}/{} of {}", shard.k, shard.count, run_dir.display());
        let lock = FileLock::acquire(&dir.join(shard.lock_name()), &what)?;
        let path = dir.join(shard.file_name());
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let (_, valid) = read_jsonl(&path)?;
        let actual = file.metadata()?.len();
        if actual != valid {
            eprintln!(
                "note: {}: dropping an incomplete last record ({} bytes) left by an interrupted write",
                path.display(),
                actual - valid
            );
            file.set_len(valid)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::Start(valid))?;
        let (done, failed) = load_run_with_failures(run_dir)?;
        Ok(Store { path, file, _lock: lock, len: valid, done, failed })
    }

    /// The shard's JSONL file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `key` has a successful prediction anywhere in the run dir.
    pub fn contains(&self, key: &Key) -> bool {
        self.done.contains_key(key)
    }

    /// The successful prediction stored for `key`, if any.
    pub fn get(&self, key: &Key) -> Option<&Record> {
        self.done.get(key)
    }

    /// How many successful predictions the run dir holds (all shards).
    pub fn len(&self) -> usize {
        self.done.len()
    }

    /// Whether the run dir holds no successful prediction.
    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    /// Keys whose last attempt failed and that have no prediction, with the error records.
    pub fn failures(&self) -> &BTreeMap<Key, Record> {
        &self.failed
    }

    /// Append one record durably (write + fsync). On error the file is cut back to its previous
    /// length, so no torn record is left behind.
    pub fn append(&mut self, rec: Record) -> Result<()> {
        let key = rec.key();
        if self.done.contains_key(&key) {
            return Ok(());
        }
        let mut line = serde_json::to_vec(&rec)?;
        line.push(b'\n');
        let res = self.file.write_all(&line).and_then(|_| self.file.sync_data());
        if let Err(e) = res {
            let _ = self.file.set_len(self.len);
            let _ = self.file.seek(SeekFrom::Start(self.len));
            let _ = self.file.sync_all();
            return Err(anyhow!(e)).with_context(|| {
                format!("writing a record to {} failed (store left valid)", self.path.display())
            });
        }
        self.len += line.len() as u64;
        if rec.error.is_some() {
            self.failed.insert(key, rec);
        } else {
            self.failed.remove(&key);
            self.done.insert(key, rec);
        }
        Ok(())
    }

    /// Every successful prediction of the run dir, by key.
    pub fn records(&self) -> &BTreeMap<Key, Record> {
        &self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> Record {
        Record {
            model: "m".into(),
            reducer: "r".into(),
            n: 8,
            dataset: "d".into(),
            index: i.to_string(),
            prediction: format!("p{i}"),
            seconds: 0.0,
            error: None,
        }
    }

    #[test]
    fn torn_line_is_dropped_and_resume_skips() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), Shard::default()).unwrap();
        s.append(rec(1)).unwrap();
        s.append(rec(2)).unwrap();
        s.append(rec(2)).unwrap();
        let p = s.path().to_path_buf();
        drop(s);
        // Simulate a torn write.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"model\":\"m\",\"redu").unwrap();
        drop(f);
        assert_eq!(load_run(dir.path()).unwrap().len(), 2);
        let mut s = Store::open(dir.path(), Shard::default()).unwrap();
        assert!(s.contains(&rec(1).key()));
        s.append(rec(3)).unwrap();
        let (recs, _) = read_jsonl(&p).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[2], rec(3));
    }

    #[test]
    fn failures_are_retried_and_a_later_success_wins() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), Shard::default()).unwrap();
        s.append(Record { prediction: String::new(), error: Some("bad image".into()), ..rec(1) })
            .unwrap();
        assert!(!s.contains(&rec(1).key()) && s.failures().len() == 1);
        drop(s);
        let (done, failed) = load_run_with_failures(dir.path()).unwrap();
        assert!(done.is_empty() && failed[&rec(1).key()].error.as_deref() == Some("bad image"));
        let mut s = Store::open(dir.path(), Shard::default()).unwrap();
        assert_eq!(s.failures().len(), 1);
        s.append(rec(1)).unwrap();
        assert!(s.contains(&rec(1).key()) && s.failures().is_empty());
        drop(s);
        let (done, failed) = load_run_with_failures(dir.path()).unwrap();
        assert_eq!((done.len(), failed.len()), (1, 0));
    }

    #[test]
    fn shard_parse() {
        assert_eq!(Shard::parse("1/4").unwrap(), Shard { k: 1, count: 4 });
        assert!(Shard::parse("4/4").is_err());
        assert!(Shard::parse("x").is_err());
        let s = Shard { k: 1, count: 3 };
        assert!(s.owns(4) && !s.owns(3));
    }
}
