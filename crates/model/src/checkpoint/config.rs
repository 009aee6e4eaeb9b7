//! Reading HF `config.json` files with errors that name the file and the field.

use std::path::Path;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;

/// Reads and parses a JSON file; errors name the file (unreadable or invalid JSON).
pub fn read_json_value(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))
}

/// Deserialises `value` (found at `field` of `origin`) into `T`; serde's message names the field.
pub fn parse<T: DeserializeOwned>(
    value: &serde_json::Value,
    origin: &str,
    field: &str,
) -> Result<T> {
    serde_json::from_value(value.clone()).map_err(|e| {
        if field.is_empty() {
            anyhow::anyhow!("{origin}: {e}")
        } else {
            anyhow::anyhow!("{origin}: field `{field}`: {e}")
        }
    })
}

/// A token id field that HF writes either as one integer or as a list.
pub fn token_ids(value: Option<&serde_json::Value>) -> Vec<u32> {
    match value {
        Some(serde_json::Value::Number(n)) => {
            n.as_u64().map(|v| vec![v as u32]).unwrap_or_default()
        }
        Some(serde_json::Value::Array(items)) => {
            items.iter().filter_map(|v| v.as_u64()).map(|v| v as u32).collect()
        }
        _ => Vec::new(),
    }
}
