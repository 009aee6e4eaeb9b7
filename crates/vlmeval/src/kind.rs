//! Dataset kinds, decided from the dataset name as VLMEvalKit does.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The VLMEvalKit dataset type (`DATASET_TYPE`) that decides the prompt and the scorer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Multiple choice (`ImageMCQDataset`).
    Mcq,
    /// Yes / no (`ImageYORNDataset`).
    Yorn,
    /// Short-answer VQA (`ImageVQADataset`).
    Vqa,
    /// OCRBench (its own class).
    Ocrbench,
    /// Captioning (`ImageCaptionDataset`).
    Caption,
}

impl Kind {
    /// Every kind, in declaration order (for listings and exhaustive tests).
    pub const ALL: [Kind; 5] = [Kind::Mcq, Kind::Yorn, Kind::Vqa, Kind::Ocrbench, Kind::Caption];

    /// The lowercase name (`mcq`, `yorn`, ...) used in files and that [`Kind::parse`] reads back.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Mcq => "mcq",
            Kind::Yorn => "yorn",
            Kind::Vqa => "vqa",
            Kind::Ocrbench => "ocrbench",
            Kind::Caption => "caption",
        }
    }

    /// Reads a kind name, case-insensitively; `y/n`, `yn` and `yesno` also mean [`Kind::Yorn`].
    /// Errors on any other name, listing the known ones.
    pub fn parse(s: &str) -> anyhow::Result<Kind> {
        let l = s.to_ascii_lowercase();
        Ok(match l.as_str() {
            "mcq" => Kind::Mcq,
            "yorn" | "y/n" | "yn" | "yesno" => Kind::Yorn,
            "vqa" => Kind::Vqa,
            "ocrbench" => Kind::Ocrbench,
            "caption" => Kind::Caption,
            _ => anyhow::bail!(
                "unknown dataset kind {s:?}; known kinds: mcq, yorn, vqa, ocrbench, caption"
            ),
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Name patterns: (pattern, kind). A pattern ending in `*` is a prefix, otherwise exact
/// (both case-sensitive, as VLMEvalKit's dataset registry is).
pub const KNOWN: &[(&str, Kind)] = &[
    ("MMBench*", Kind::Mcq),
    ("CCBench*", Kind::Mcq),
    ("SEEDBench*", Kind::Mcq),
    ("AI2D*", Kind::Mcq),
    ("ScienceQA*", Kind::Mcq),
    ("MMStar", Kind::Mcq),
    ("RealWorldQA", Kind::Mcq),
    ("MME", Kind::Yorn),
    ("POPE", Kind::Yorn),
    ("HallusionBench", Kind::Yorn),
    ("TextVQA*", Kind::Vqa),
    ("ChartQA*", Kind::Vqa),
    ("OCRVQA*", Kind::Vqa),
    ("DocVQA*", Kind::Vqa),
    ("InfoVQA*", Kind::Vqa),
    ("GQA*", Kind::Vqa),
    ("OCRBench", Kind::Ocrbench),
    ("COCO_VAL", Kind::Caption),
    // tokenscale's generated synthetic benchmark (the `tokenscale-synth` crate).
    ("SYNTH_MCQ*", Kind::Mcq),
    ("SYNTH_YORN*", Kind::Yorn),
    ("SYNTH_VQA*", Kind::Vqa),
];

/// The dataset name from a TSV path: the file stem (`MMBench_DEV_EN.tsv` → `MMBench_DEV_EN`),
/// without VLMEvalKit's `_local` suffix of localised files.
pub fn dataset_name(path: &std::path::Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    stem.strip_suffix("_local").map(str::to_string).unwrap_or(stem)
}

/// The kind for a dataset name, or an error listing the known names.
pub fn kind_from_name(name: &str) -> anyhow::Result<Kind> {
    for (pat, kind) in KNOWN {
        let hit = match pat.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *pat,
        };
        if hit {
            return Ok(*kind);
        }
    }
    let known: Vec<String> = KNOWN.iter().map(|(p, k)| format!("{p} ({k})")).collect();
    anyhow::bail!(
        "cannot tell the kind of dataset {name:?} from its name; known names: {}; give the `kind` (mcq, yorn, vqa, ocrbench, caption)",
        known.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn names() {
        assert_eq!(kind_from_name("MMBench_DEV_EN").unwrap(), Kind::Mcq);
        assert_eq!(kind_from_name("MME").unwrap(), Kind::Yorn);
        assert_eq!(kind_from_name("ChartQA_TEST").unwrap(), Kind::Vqa);
        assert_eq!(kind_from_name("OCRBench").unwrap(), Kind::Ocrbench);
        assert_eq!(kind_from_name("COCO_VAL").unwrap(), Kind::Caption);
        let e = kind_from_name("Foo").unwrap_err().to_string();
        assert!(e.contains("MMBench*") && e.contains("`kind`"));
        assert_eq!(dataset_name(std::path::Path::new("/x/MMStar_local.tsv")), "MMStar");
    }
}
