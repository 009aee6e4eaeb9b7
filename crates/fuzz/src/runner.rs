//! Runs one target: seeds first, then mutated inputs, checking each reader's three properties.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use crate::alloc::{peak_above, start_measuring};
use crate::mutate::Mutator;

/// The most one input may make a reader allocate at once (above an image decode's own limit of
/// 256 MiB, far below what a declared-but-absent tensor or image of a bomb would need).
pub const MEMORY_CAP: usize = 320 << 20;

/// One reader under test.
pub struct Target {
    /// Short name of the reader (`safetensors`, `image`...): names the work folder and the report.
    pub name: &'static str,
    /// Where the input is written, relative to the target's work folder (its file name and
    /// extension are what the reader sees).
    pub input: &'static str,
    /// Seed files and folders, relative to the workspace root.
    pub seeds: &'static [&'static str],
    /// Tokens the mutator inserts (keys, magic numbers, huge dimensions...).
    pub dictionary: &'static [&'static [u8]],
    /// Writes the other files the reader needs into the work folder, once.
    pub prepare: fn(&Path) -> Result<()>,
    /// Reads the input at the given path (inside the work folder) the way tokenscale does.
    pub read: fn(&Path) -> Result<()>,
}

/// What went wrong with one input.
#[derive(Debug)]
pub struct Crash {
    /// The input's bytes, to save and replay.
    pub input: Vec<u8>,
    /// The property it broke: the panic message, the memory it took, or the error that did not
    /// name the file.
    pub what: String,
}

/// The counts of one run.
#[derive(Debug, Default)]
pub struct Report {
    /// Inputs read (the seeds as they are, then the mutated ones).
    pub inputs: usize,
    /// Inputs the reader read without an error.
    pub accepted: usize,
    /// Inputs the reader refused with an error naming the file (the expected outcome for most).
    pub rejected: usize,
    /// The largest allocation peak one input caused, in bytes (below `MEMORY_CAP` unless it crashed).
    pub peak_bytes: usize,
    /// Inputs that broke a property.
    pub crashes: Vec<Crash>,
}

static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

/// Panics are expected findings, not test output: the hook keeps the message for the report.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = info.to_string();
        }
    }));
}

/// The seed files of a target: every file named, and every file inside the folders named.
pub fn load_seeds(root: &Path, seeds: &[&str]) -> Result<Vec<Vec<u8>>> {
    let mut files = Vec::new();
    for seed in seeds {
        let path = root.join(seed);
        if path.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(&path)
                .with_context(|| format!("{}: cannot list", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            files.push(path);
        }
    }
    let corpus = files
        .iter()
        .map(|f| std::fs::read(f).with_context(|| format!("{}: cannot read seed", f.display())))
        .collect::<Result<Vec<_>>>()?;
    if corpus.is_empty() {
        bail!("no seeds in {seeds:?}");
    }
    Ok(corpus)
}

/// Runs every seed as it is, then `inputs` mutated ones made from `seed`.
pub fn run(target: &Target, root: &Path, inputs: usize, seed: u64) -> Result<Report> {
    let corpus = load_seeds(root, target.seeds)?;
    let work = tempfile::Builder::new().prefix(&format!("fuzz-{}-", target.name)).tempdir()?;
    (target.prepare)(work.path())
        .with_context(|| format!("{}: preparing the work folder", target.name))?;
    let input_path = work.path().join(target.input);
    if let Some(parent) = input_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut report = Report::default();
    let mut mutator = Mutator::new(seed, corpus.clone(), target.dictionary);
    for i in 0..corpus.len() + inputs {
        let data = if i < corpus.len() { corpus[i].clone() } else { mutator.next_input() };
        // A new file each time: ext4 flushes a file truncated and rewritten in place to disk
        // (auto_da_alloc), which made the loop wait on the disk for every input.
        let _ = std::fs::remove_file(&input_path);
        std::fs::write(&input_path, &data)
            .with_context(|| format!("{}: cannot write", input_path.display()))?;
        report.inputs += 1;
        match check_one(target, work.path(), &input_path) {
            Ok(Outcome { accepted, peak }) => {
                report.peak_bytes = report.peak_bytes.max(peak);
                if accepted {
                    report.accepted += 1;
                } else {
                    report.rejected += 1;
                }
            }
            Err(what) => report.crashes.push(Crash { input: data, what }),
        }
    }
    Ok(report)
}

struct Outcome {
    accepted: bool,
    peak: usize,
}

/// Reads one input; `Err` describes a violated property.
fn check_one(target: &Target, work: &Path, input: &Path) -> std::result::Result<Outcome, String> {
    let baseline = start_measuring();
    let result = catch_unwind(AssertUnwindSafe(|| (target.read)(input)));
    let peak = peak_above(baseline);
    if peak > MEMORY_CAP {
        return Err(format!("allocated {} MiB at once (cap {} MiB)", peak >> 20, MEMORY_CAP >> 20));
    }
    match result {
        Ok(Ok(())) => Ok(Outcome { accepted: true, peak }),
        Ok(Err(e)) => {
            let message = format!("{e:#}");
            if message.contains(&work.display().to_string()) {
                Ok(Outcome { accepted: false, peak })
            } else {
                Err(format!("error does not name the file: {message}"))
            }
        }
        Err(_) => {
            Err(format!("panic: {}", LAST_PANIC.lock().map(|m| m.clone()).unwrap_or_default()))
        }
    }
}

/// Saves crashing inputs as `DIR/TARGET-N.bin` (with `.txt` saying what happened).
pub fn save_crashes(dir: &Path, target: &str, crashes: &[Crash]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    // Inputs of an earlier run of this target would read as findings of this one.
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?
    {
        let path = entry?.path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{target}-")))
        {
            std::fs::remove_file(&path)
                .with_context(|| format!("{}: cannot remove", path.display()))?;
        }
    }
    for (i, crash) in crashes.iter().enumerate() {
        let path = dir.join(format!("{target}-{i}.bin"));
        std::fs::write(&path, &crash.input)
            .with_context(|| format!("{}: cannot write", path.display()))?;
        std::fs::write(path.with_extension("txt"), &crash.what)
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(())
}
