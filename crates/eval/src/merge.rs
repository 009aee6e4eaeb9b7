//! Combining shard run directories, and finishing a run (scores and prediction files).

use crate::dataset::Dataset;
use crate::report::{self, ScoreRow};
use crate::score::ScoreOptions;
use crate::store::{self, Key, Record, Shard, Store};
use crate::sweep::{self, RunConfig};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Load the datasets a run configuration names: from `paths` when given (matched by name),
/// else from the paths recorded in the configuration. Content hashes must match.
pub fn datasets_for(cfg: &RunConfig, paths: &[PathBuf], force: bool) -> Result<Vec<Dataset>> {
    let mut out = Vec::new();
    for spec in &cfg.datasets {
        let path = paths
            .iter()
            .find(|p| crate::kind::dataset_name(p) == spec.name)
            .cloned()
            .or_else(|| spec.path.clone())
            .with_context(|| {
                format!("no TSV for dataset {} (give its file among the datasets)", spec.name)
            })?;
        let ds = Dataset::load(&path, Some(spec.kind))?;
        if format!("{:016x}", ds.content_hash) != spec.content_hash && !force {
            bail!(
                "{}: content differs from the one the run used for {} (hash {:016x} ≠ {}); the `force` option scores anyway",
                path.display(),
                spec.name,
                ds.content_hash,
                spec.content_hash
            );
        }
        out.push(ds);
    }
    Ok(out)
}

/// Score everything a run directory holds and write `scores.*` and `predictions/` into it.
pub fn finish_run(
    run_dir: &Path,
    datasets: &[Dataset],
    opts: ScoreOptions,
) -> Result<Vec<ScoreRow>> {
    let recs = store::load_run(run_dir)?;
    report::write_outputs(run_dir, datasets, &recs, opts)
}

/// Merge shard run directories into `out`: same configuration fingerprint required (unless
/// `force`), records united by key (a key stored twice with different predictions is an error
/// unless `force`, then the first in argument order wins), written as one store file, then
/// scored. The result is identical to a one-machine run of the same configuration.
pub fn merge_runs(
    run_dirs: &[PathBuf],
    out: &Path,
    data: &[PathBuf],
    opts: ScoreOptions,
    force: bool,
) -> Result<Vec<ScoreRow>> {
    if run_dirs.is_empty() {
        bail!("nothing to merge");
    }
    let mut cfg0: Option<(String, RunConfig, &PathBuf)> = None;
    let mut all: BTreeMap<Key, Record> = BTreeMap::new();
    for d in run_dirs {
        let (fp, cfg) = sweep::read_config(d)?;
        cfg0 = match cfg0 {
            None => Some((fp, cfg, d)),
            Some((fp0, c0, d0)) => match c0.union(&cfg) {
                Ok(u) => Some((fp0, u, d0)),
                Err(diff) if !force => bail!(
                    "{} and {} were produced by different configurations (fingerprints {fp0} ≠ {fp}): {diff}; the `force` option merges anyway",
                    d0.display(),
                    d.display()
                ),
                Err(_) => Some((fp0, c0, d0)),
            },
        };
        for (k, r) in store::load_run(d)? {
            match all.get(&k) {
                Some(prev) if prev.prediction != r.prediction && !force => bail!(
                    "{}: {:?} was also stored with a different prediction ({:?} vs {:?}); the `force` option keeps the first",
                    d.display(),
                    k,
                    prev.prediction,
                    r.prediction
                ),
                Some(_) => {}
                None => {
                    all.insert(k, r);
                }
            }
        }
    }
    let (_, cfg, _) = cfg0.unwrap();
    let datasets = datasets_for(&cfg, data, force)?;
    std::fs::create_dir_all(out)?;
    let same_dir = run_dirs.iter().any(|d| d.canonicalize().ok() == out.canonicalize().ok());
    if !same_dir {
        sweep::check_or_write_config(out, &cfg, force)?;
        let mut st = Store::open(out, Shard::default())?;
        for r in all.values() {
            st.append(r.clone())?;
        }
        all = store::load_run(out)?;
    }
    report::write_outputs(out, &datasets, &all, opts)
}
