//! The compute-dtype policy: which floating-point type a checkpoint runs in, and whether it fits.
//!
//! `auto` runs a checkpoint in the dtype that holds most of its parameter bytes (the way it was
//! published: real LLaVA and Llama checkpoints are bf16 or f16), with `torch_dtype` / `dtype`
//! of its `config.json` breaking a tie. Running in the stored dtype means no tensor is ever held
//! in two types, so a 7B bf16 checkpoint needs about its file size in memory, not twice that.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::DType;

use crate::weights::{checkpoint_files, tensor_table};

/// What the user asked for; [`DtypePolicy::resolve`] turns it into a concrete [`DType`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DtypePolicy {
    /// The checkpoint's storage dtype (most parameter bytes; config.json breaks ties).
    #[default]
    Auto,
    /// This dtype, whatever the checkpoint stores (tensors are converted as they are read).
    Fixed(DType),
}

impl From<DType> for DtypePolicy {
    fn from(dtype: DType) -> Self {
        Self::Fixed(dtype)
    }
}

impl std::str::FromStr for DtypePolicy {
    type Err = anyhow::Error;
    fn from_str(name: &str) -> Result<Self> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "auto" => Self::Auto,
            "bf16" | "bfloat16" => Self::Fixed(DType::BF16),
            "f16" | "float16" | "half" => Self::Fixed(DType::F16),
            "f32" | "float32" | "float" => Self::Fixed(DType::F32),
            other => bail!("unknown dtype `{other}` (auto, bf16, f16, f32)"),
        })
    }
}

/// How a checkpoint's compute dtype was chosen, for the user to see.
#[derive(Debug, Clone)]
pub struct ResolvedDtype {
    /// The compute dtype.
    pub dtype: DType,
    /// One line: "bf16 (stored: bf16 13.5 GiB)" or "f32 (asked; stored: bf16 …)".
    pub reason: String,
    /// Bytes of the floating-point tensors by storage dtype.
    pub stored: BTreeMap<String, u64>,
    /// Bytes the parameters take once converted to `dtype`.
    pub compute_bytes: u64,
}

/// Short lowercase name of a float dtype (`bf16`, `f16`, `f32`).
pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        DType::F32 => "f32",
        DType::F64 => "f64",
        DType::U8 => "u8",
        DType::U32 => "u32",
        DType::I64 => "i64",
        _ => "other",
    }
}

fn is_float(dtype: DType) -> bool {
    matches!(dtype, DType::BF16 | DType::F16 | DType::F32 | DType::F64)
}

/// The dtype `config.json` names (`torch_dtype` in transformers 4, `dtype` in 5; nested
/// `text_config` / `llm_config` as well), if any.
fn config_dtype(dir: &Path) -> Option<DType> {
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let named = |v: &serde_json::Value| {
        ["torch_dtype", "dtype"]
            .iter()
            .find_map(|k| v.get(*k).and_then(|d| d.as_str()).map(str::to_string))
    };
    let name = named(&json).or_else(|| {
        ["text_config", "llm_config"].iter().find_map(|k| json.get(*k).and_then(named))
    })?;
    match name.as_str() {
        "bfloat16" => Some(DType::BF16),
        "float16" => Some(DType::F16),
        "float32" => Some(DType::F32),
        _ => None,
    }
}

impl DtypePolicy {
    /// The compute dtype for the checkpoint folder `dir` (reads only the safetensors headers).
    pub fn resolve(self, dir: &Path) -> Result<ResolvedDtype> {
        let mut stored: BTreeMap<String, u64> = BTreeMap::new();
        let mut elements = 0u64;
        for file in checkpoint_files(dir)? {
            for (dtype, shape) in tensor_table(&file)? {
                if !is_float(dtype) {
                    continue;
                }
                let count: u64 = shape.iter().map(|&d| d as u64).product();
                elements += count;
                *stored.entry(dtype_name(dtype).to_string()).or_default() +=
                    count * dtype.size_in_bytes() as u64;
            }
        }
        let majority = stored_majority(&stored, config_dtype(dir));
        let describe = stored
            .iter()
            .map(|(name, bytes)| format!("{name} {}", human_bytes(*bytes)))
            .collect::<Vec<_>>()
            .join(" + ");
        let (dtype, reason) = match self {
            Self::Auto => {
                let dtype = majority.unwrap_or(DType::F32);
                let mixed =
                    if stored.len() > 1 { ", mixed: the majority's dtype chosen" } else { "" };
                (dtype, format!("{} (auto; stored: {describe}{mixed})", dtype_name(dtype)))
            }
            Self::Fixed(dtype) => {
                if !matches!(dtype, DType::BF16 | DType::F16 | DType::F32) {
                    bail!("compute dtype {} is not supported (bf16, f16, f32)", dtype_name(dtype));
                }
                (dtype, format!("{} (asked; stored: {describe})", dtype_name(dtype)))
            }
        };
        let compute_bytes = elements * dtype.size_in_bytes() as u64;
        Ok(ResolvedDtype { dtype, reason, stored, compute_bytes })
    }
}

/// The dtype with the most bytes; a tie goes to the config's dtype, else the narrower type.
fn stored_majority(stored: &BTreeMap<String, u64>, config: Option<DType>) -> Option<DType> {
    let parse = |name: &str| match name {
        "bf16" => Some(DType::BF16),
        "f16" => Some(DType::F16),
        "f32" | "f64" => Some(DType::F32),
        _ => None,
    };
    let most = *stored.values().max()?;
    let tied: Vec<DType> =
        stored.iter().filter(|(_, b)| **b == most).filter_map(|(n, _)| parse(n)).collect();
    if let Some(config) = config.filter(|c| tied.contains(c)) {
        return Some(config);
    }
    tied.into_iter().min_by_key(|d| d.size_in_bytes())
}

/// `12.6 GiB`, `340.0 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.1} GiB", b / GIB)
    } else {
        format!("{:.1} MiB", b / MIB)
    }
}

/// Memory this process may still take: the smaller of `MemAvailable` and the cgroup's room
/// (`memory.max − memory.current`, cgroup v2), where the platform reports them.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let mut room = kib * 1024;
    let read = |name: &str| std::fs::read_to_string(Path::new("/sys/fs/cgroup").join(name)).ok();
    if let (Some(max), Some(current)) = (read("memory.max"), read("memory.current")) {
        if let (Ok(max), Ok(current)) = (max.trim().parse::<u64>(), current.trim().parse::<u64>()) {
            room = room.min(max.saturating_sub(current));
        }
    }
    Some(room)
}

/// Headroom kept free beyond the weights: activations, the KV cache, the tokenizer (a 7B model
/// at 576 image tokens and a 2k context stays well inside this).
const HEADROOM: u64 = 1 << 30;

/// Refuses, before anything is read, a model whose parameters cannot fit in the memory left.
pub fn check_fits(dir: &Path, resolved: &ResolvedDtype) -> Result<()> {
    let Some(room) = available_memory() else { return Ok(()) };
    let need = resolved.compute_bytes + HEADROOM;
    if need > room {
        let hint = if resolved.dtype == DType::F32
            && resolved.stored.keys().any(|k| k == "bf16" || k == "f16")
        {
            "; run it in its 16-bit storage dtype (dtype auto or bf16/f16)"
        } else {
            ""
        };
        bail!(
            "{}: the model needs about {} in {} (+ {} working memory) but only {} is available{hint}",
            dir.display(),
            human_bytes(resolved.compute_bytes),
            dtype_name(resolved.dtype),
            human_bytes(HEADROOM),
            human_bytes(room)
        );
    }
    Ok(())
}

/// Warns (once per call) when 16-bit products cannot use this CPU's fast kernels; they still
/// run, correctly, through the portable path (conversion to f32 and an f32 GEMM).
pub fn warn_if_portable(dtype: DType) -> Option<String> {
    let features = tokenscale_kernels::features();
    let message = match dtype {
        DType::BF16 if tokenscale_kernels::portable_forced() => "TOKENSCALE_KERNELS=portable: bf16 products run through the portable path",
        DType::F16 if tokenscale_kernels::portable_forced() => "TOKENSCALE_KERNELS=portable: f16 products run through the portable path",
        DType::BF16 | DType::F16 if !features.amx_bf16_usable() && !features.avx512f => {
            "this CPU has neither AMX nor AVX-512: 16-bit products run through the portable path (correct, slower; an f32 compute dtype may be faster if memory allows)"
        }
        _ => return None,
    };
    Some(message.to_string())
}

/// Reads peak resident memory of this process (`VmHWM`), where the platform reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    process_status_bytes("VmHWM:")
}

/// Reads the resident memory of this process now (`VmRSS`), where the platform reports it.
pub fn current_rss_bytes() -> Option<u64> {
    process_status_bytes("VmRSS:")
}

/// A `/proc/self/status` line's value in kB, as bytes.
fn process_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A clear context for errors from [`DtypePolicy::resolve`].
pub fn resolve_for(dir: &Path, policy: DtypePolicy) -> Result<ResolvedDtype> {
    policy.resolve(dir).with_context(|| format!("{}: cannot choose a compute dtype", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(n, b)| (n.to_string(), *b)).collect()
    }

    #[test]
    fn the_majority_of_bytes_decides_and_the_config_breaks_ties() {
        assert_eq!(stored_majority(&bytes(&[("bf16", 100), ("f32", 4)]), None), Some(DType::BF16));
        assert_eq!(
            stored_majority(&bytes(&[("bf16", 4), ("f32", 100)]), Some(DType::BF16)),
            Some(DType::F32)
        );
        assert_eq!(
            stored_majority(&bytes(&[("bf16", 50), ("f16", 50)]), Some(DType::F16)),
            Some(DType::F16)
        );
        assert_eq!(
            stored_majority(&bytes(&[("bf16", 50), ("f16", 50)]), Some(DType::F32)),
            Some(DType::BF16)
        );
        assert_eq!(stored_majority(&bytes(&[]), None), None);
    }

    #[test]
    fn names_parse() {
        assert_eq!("auto".parse::<DtypePolicy>().unwrap(), DtypePolicy::Auto);
        assert_eq!("BF16".parse::<DtypePolicy>().unwrap(), DtypePolicy::Fixed(DType::BF16));
        assert!("int8".parse::<DtypePolicy>().unwrap_err().to_string().contains("int8"));
    }
}
