//! Benchmarks named as in VLMEvalKit (`MME`, `MMBench_DEV_EN`): `NAME.tsv` in the LMUData folder,
//! `$LMUData` or else `~/LMUData`, where VLMEvalKit keeps its downloads.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// Where VLMEvalKit downloads some of the benchmarks this crate scores (its `DATASET_URL` tables).
pub const DOWNLOADS: &[(&str, &str)] = &[
    ("MME", "https://opencompass.openxlab.space/utils/VLMEval/MME.tsv"),
    ("POPE", "https://opencompass.openxlab.space/utils/VLMEval/POPE.tsv"),
    ("HallusionBench", "https://opencompass.openxlab.space/utils/VLMEval/HallusionBench.tsv"),
    (
        "MMBench_DEV_EN",
        "https://opencompass.openxlab.space/utils/benchmarks/MMBench/MMBench_DEV_EN.tsv",
    ),
    ("SEEDBench_IMG", "https://opencompass.openxlab.space/utils/VLMEval/SEEDBench_IMG.tsv"),
    ("MMStar", "https://opencompass.openxlab.space/utils/VLMEval/MMStar.tsv"),
    ("MMVet", "https://opencompass.openxlab.space/utils/VLMEval/MMVet.tsv"),
    ("TextVQA_VAL", "https://opencompass.openxlab.space/utils/VLMEval/TextVQA_VAL.tsv"),
    ("OCRBench", "https://opencompass.openxlab.space/utils/VLMEval/OCRBench.tsv"),
];

/// The LMUData folder (it need not exist).
pub fn lmu_data_dir() -> Result<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("LMUData") {
        return Ok(dir);
    }
    Ok(var("HOME")
        .context("cannot find the LMUData folder: neither LMUData nor HOME is set")?
        .join("LMUData"))
}

/// Whether `spec` reads as a bare benchmark name (no path separator, no extension).
pub fn is_benchmark_name(spec: &str) -> bool {
    !spec.is_empty() && !spec.contains(['/', '\\', '.'])
}

/// A benchmark file from a command-line value: an existing path as it is; else a bare name
/// `NAME` found as `NAME.tsv` in [`lmu_data_dir`]. Anything else is returned unchanged, so
/// loading it reports the missing file.
pub fn resolve_data(spec: &str) -> Result<PathBuf> {
    let path = PathBuf::from(spec);
    if path.exists() || !is_benchmark_name(spec) {
        return Ok(path);
    }
    let dir = lmu_data_dir()?;
    let file = dir.join(format!("{spec}.tsv"));
    if file.is_file() {
        return Ok(file);
    }
    let source = match DOWNLOADS.iter().find(|(name, _)| *name == spec) {
        Some((_, url)) => format!("download it from {url} into {}", dir.display()),
        None => format!(
            "put VLMEvalKit's {spec}.tsv into {} (or set LMUData to the folder that has it)",
            dir.display()
        ),
    };
    bail!("{spec}: no file {} in the LMUData folder; {source}", file.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert!(is_benchmark_name("MME") && is_benchmark_name("MMBench_DEV_EN"));
        for not in ["MME.tsv", "data/MME", "./MME", ""] {
            assert!(!is_benchmark_name(not), "{not}");
        }
        // A path that is not a bare name is left for the loader to report.
        assert_eq!(resolve_data("nowhere/MME.tsv").unwrap(), PathBuf::from("nowhere/MME.tsv"));
    }
}
