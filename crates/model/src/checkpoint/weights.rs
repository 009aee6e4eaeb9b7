//! Safetensors checkpoints read as they are, with errors that name the file and the tensor key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use candle_core::safetensors::SliceSafetensors;
use candle_core::{DType, Device, Tensor};

use tokenscale_base::progress::Progress;

/// Where one tensor's bytes are in a checkpoint file.
struct Located {
    file: usize,
    dtype: DType,
    shape: Vec<usize>,
    /// Absolute byte range in the file.
    start: u64,
    end: u64,
}

enum Store {
    /// Tensors read from the files on request (no memory map: a mapped checkpoint counts in the
    /// process's resident memory next to the copies the model keeps, doubling peak RSS).
    Files {
        paths: Vec<PathBuf>,
        index: HashMap<String, Located>,
    },
    Embedded(SliceSafetensors<'static>),
    /// Tensors held in memory (a model being trained: its parameters, shared with the optimiser).
    Tensors(HashMap<String, Tensor>),
    /// Answers every shaped request with zeros and writes down what was asked for: loading a
    /// model through it lists the parameters that model needs, in the loader's own names.
    Recording {
        known: HashMap<String, Tensor>,
        asked: Mutex<Vec<(String, Vec<usize>)>>,
    },
}

struct Inner {
    store: Store,
    origin: String,
    keys: Vec<String>,
    dtype: DType,
    device: Device,
    /// Bytes read from checkpoint files so far (progress lines while a large model loads).
    loading: Option<Progress>,
}

/// A view of a checkpoint's tensors under a key prefix; tensors are converted to `dtype` on load.
#[derive(Clone)]
pub struct Weights {
    inner: Arc<Inner>,
    prefix: String,
}

/// The safetensors files of a checkpoint folder: `model.safetensors`, the shards named by
/// `model.safetensors.index.json`, or any single `*.safetensors` file.
pub fn checkpoint_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index)
            .with_context(|| format!("{}: cannot read", index.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: invalid JSON", index.display()))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .with_context(|| format!("{}: missing field `weight_map`", index.display()))?;
        let mut files: Vec<PathBuf> =
            map.values().filter_map(|v| v.as_str()).map(|f| dir.join(f)).collect();
        files.sort();
        files.dedup();
        for file in &files {
            if !file.is_file() {
                bail!(
                    "{}: shard {} listed in `weight_map` is missing",
                    index.display(),
                    file.display()
                );
            }
        }
        return Ok(files);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read checkpoint folder", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    found.sort();
    if found.is_empty() {
        bail!(
            "{}: no model.safetensors, model.safetensors.index.json or *.safetensors file",
            dir.display()
        );
    }
    Ok(found)
}

impl Weights {
    /// Indexes safetensors `files` (shards of one checkpoint) without reading tensor data yet;
    /// tensors are converted to `dtype` on `device` when fetched. Fails on an invalid header.
    pub fn from_files(files: &[PathBuf], dtype: DType, device: &Device) -> Result<Self> {
        let mut index = HashMap::new();
        for (i, file) in files.iter().enumerate() {
            let (data_start, header) = validate_safetensors_file(file)?;
            for (key, entry) in header {
                let located = locate(file, i, data_start, &key, &entry)?;
                index.insert(key, located);
            }
        }
        let keys = index.keys().cloned().collect();
        let origin = files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
        let bytes = index.values().map(|l| l.end - l.start).sum();
        let label = format!(
            "loading {}",
            files
                .first()
                .and_then(|f| f.parent())
                .map_or(origin.clone(), |d| d.display().to_string())
        );
        let mut weights =
            Self::new(Store::Files { paths: files.to_vec(), index }, origin, keys, dtype, device);
        if let Some(inner) = Arc::get_mut(&mut weights.inner) {
            inner.loading = Some(Progress::new(&label, bytes, "bytes"));
        }
        Ok(weights)
    }

    /// Indexes the checkpoint files of a folder (see [`checkpoint_files`]).
    pub fn from_dir(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        Self::from_files(&checkpoint_files(dir)?, dtype, device)
    }

    /// Serves tensors from a safetensors buffer built into the binary (`origin` names it in
    /// errors).
    pub fn from_static(
        bytes: &'static [u8],
        origin: &str,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let store = SliceSafetensors::new(bytes)
            .with_context(|| format!("{origin}: not a valid safetensors buffer"))?;
        let keys = store.tensors().into_iter().map(|(k, _)| k).collect();
        Ok(Self::new(Store::Embedded(store), origin.to_string(), keys, dtype, device))
    }

    /// Parameters held in memory under their checkpoint names.
    pub fn from_tensors(tensors: HashMap<String, Tensor>, origin: &str, device: &Device) -> Self {
        let keys = tensors.keys().cloned().collect();
        let dtype = tensors.values().next().map_or(DType::F32, |t| t.dtype());
        Self::new(Store::Tensors(tensors), origin.to_string(), keys, dtype, device)
    }

    /// A store that records the names and shapes a loader asks for (see [`Weights::asked`]);
    /// `known` answers the requests whose shape the loader reads from the checkpoint itself.
    pub fn recording(known: HashMap<String, Tensor>, dtype: DType, device: &Device) -> Self {
        let keys = known.keys().cloned().collect();
        let store = Store::Recording { known, asked: Mutex::new(Vec::new()) };
        Self::new(store, "parameter listing".to_string(), keys, dtype, device)
    }

    /// What a [`Weights::recording`] store was asked for, in request order, without repeats.
    pub fn asked(&self) -> Vec<(String, Vec<usize>)> {
        match &self.inner.store {
            Store::Recording { asked, .. } => asked.lock().map(|a| a.clone()).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn new(
        store: Store,
        origin: String,
        mut keys: Vec<String>,
        dtype: DType,
        device: &Device,
    ) -> Self {
        keys.sort();
        let inner = Inner { store, origin, keys, dtype, device: device.clone(), loading: None };
        Self { inner: Arc::new(inner), prefix: String::new() }
    }

    /// The same checkpoint seen under `prefix.` (appended to the current prefix).
    pub fn pp(&self, prefix: &str) -> Self {
        let prefix = if self.prefix.is_empty() {
            prefix.to_string()
        } else {
            format!("{}.{prefix}", self.prefix)
        };
        Self { inner: self.inner.clone(), prefix }
    }

    /// The full checkpoint key of `name` under this view's prefix.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// Whether the checkpoint holds the tensor `name` under this view's prefix.
    pub fn contains(&self, name: &str) -> bool {
        self.inner.keys.binary_search(&self.key(name)).is_ok()
    }

    /// True when any tensor key starts with this view's prefix followed by `name`.
    pub fn contains_prefix(&self, name: &str) -> bool {
        let wanted = self.key(name);
        self.inner.keys.iter().any(|k| k.starts_with(&wanted))
    }

    /// Every tensor key of the checkpoint, sorted, regardless of this view's prefix.
    pub fn all_keys(&self) -> &[String] {
        &self.inner.keys
    }

    /// What the weights were read from (file paths or a label), for messages.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// The device tensors are put on.
    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    /// The working dtype tensors are converted to.
    pub fn dtype(&self) -> DType {
        self.inner.dtype
    }

    /// The tensor `name` with exactly `shape`, converted to the working dtype.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        if let Store::Recording { asked, .. } = &self.inner.store {
            if !self.contains(name) {
                let key = self.key(name);
                let mut asked =
                    asked.lock().map_err(|_| anyhow::anyhow!("parameter listing poisoned"))?;
                if !asked.iter().any(|(k, _)| *k == key) {
                    asked.push((key, shape.to_vec()));
                }
                return Ok(Tensor::zeros(shape, self.inner.dtype, &self.inner.device)?);
            }
        }
        let tensor = self.get_unchecked(name)?;
        if tensor.dims() != shape {
            bail!(
                "{}: tensor `{}` has shape {:?}, expected {:?}",
                self.inner.origin,
                self.key(name),
                tensor.dims(),
                shape
            );
        }
        Ok(tensor)
    }

    /// The tensor `name` in whatever shape the checkpoint stores, converted to the working dtype.
    pub fn get_unchecked(&self, name: &str) -> Result<Tensor> {
        let key = self.key(name);
        if !self.contains(name) {
            bail!("{}: missing tensor `{key}`", self.inner.origin);
        }
        let device = &self.inner.device;
        let raw = match &self.inner.store {
            Store::Files { paths, index } => {
                let located = index
                    .get(&key)
                    .with_context(|| format!("{}: missing tensor `{key}`", self.inner.origin))?;
                if let Some(loading) = &self.inner.loading {
                    loading.inc(located.end - located.start);
                }
                read_tensor(&paths[located.file], located, device)
                    .with_context(|| format!("tensor `{key}`"))
                    .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))
            }
            Store::Embedded(st) => st.load(&key, device),
            Store::Tensors(map) | Store::Recording { known: map, .. } => map
                .get(&key)
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg(format!("no tensor `{key}`"))),
        }
        .with_context(|| format!("{}: cannot read tensor `{key}`", self.inner.origin))?;
        raw.to_dtype(self.inner.dtype)
            .with_context(|| format!("{}: cannot convert tensor `{key}`", self.inner.origin))
    }

    /// Storage dtype and element count of every tensor, for `inspect`.
    pub fn summary(&self) -> Result<Vec<(String, String, usize)>> {
        let views = match &self.inner.store {
            Store::Files { index, .. } => {
                let mut rows: Vec<(String, String, usize)> = index
                    .iter()
                    .map(|(k, l)| (k.clone(), format!("{:?}", l.dtype), l.shape.iter().product()))
                    .collect();
                rows.sort();
                return Ok(rows);
            }
            Store::Embedded(st) => st.tensors(),
            Store::Tensors(map) | Store::Recording { known: map, .. } => {
                let mut rows: Vec<(String, String, usize)> = map
                    .iter()
                    .map(|(k, t)| (k.clone(), format!("{:?}", t.dtype()), t.elem_count()))
                    .collect();
                rows.sort();
                return Ok(rows);
            }
        };
        let mut rows: Vec<(String, String, usize)> = views
            .into_iter()
            .map(|(k, v)| (k, format!("{:?}", v.dtype()), v.shape().iter().product()))
            .collect();
        rows.sort();
        Ok(rows)
    }
}

/// Checks the header length and the data size before mapping, so a truncated file is an error
/// naming the file instead of a failure deep inside the mapping.
fn validate_safetensors_file(
    path: &Path,
) -> Result<(u64, serde_json::Map<String, serde_json::Value>)> {
    let bytes_len =
        std::fs::metadata(path).with_context(|| format!("{}: cannot open", path.display()))?.len();
    let mut file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut head = [0u8; 8];
    std::io::Read::read_exact(&mut file, &mut head).map_err(|_| {
        anyhow::anyhow!("{}: truncated safetensors file (no header)", path.display())
    })?;
    let header_len = u64::from_le_bytes(head);
    // Compared without adding to the declared length, which may be near u64::MAX.
    if header_len == 0 || header_len > bytes_len.saturating_sub(8) {
        bail!(
            "{}: truncated or corrupt safetensors file (header length {header_len})",
            path.display()
        );
    }
    let mut header = vec![0u8; header_len as usize];
    std::io::Read::read_exact(&mut file, &mut header)
        .map_err(|_| anyhow::anyhow!("{}: truncated safetensors header", path.display()))?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| anyhow::anyhow!("{}: corrupt safetensors header: {e}", path.display()))?;
    let mut data_end = 0u64;
    if let Some(map) = json.as_object() {
        for (key, entry) in map {
            if key == "__metadata__" {
                continue;
            }
            if let Some(end) =
                entry.get("data_offsets").and_then(|o| o.get(1)).and_then(|e| e.as_u64())
            {
                data_end = data_end.max(end);
            }
        }
    }
    if data_end > bytes_len - 8 - header_len {
        bail!(
            "{}: truncated safetensors file: data needs {} bytes, file has {}",
            path.display(),
            8u64.saturating_add(header_len).saturating_add(data_end),
            bytes_len
        );
    }
    let mut map = match json {
        serde_json::Value::Object(map) => map,
        _ => bail!("{}: corrupt safetensors header: not a JSON object", path.display()),
    };
    map.remove("__metadata__");
    Ok((8 + header_len, map))
}

/// The storage dtype and shape of every tensor in one safetensors file (header only, checked
/// against the file's size).
pub fn tensor_table(path: &Path) -> Result<Vec<(DType, Vec<usize>)>> {
    let (data_start, header) = validate_safetensors_file(path)?;
    header
        .iter()
        .map(|(key, entry)| locate(path, 0, data_start, key, entry).map(|l| (l.dtype, l.shape)))
        .collect()
}

fn dtype_named(name: &str) -> Option<DType> {
    Some(match name {
        "BF16" => DType::BF16,
        "F16" => DType::F16,
        "F32" => DType::F32,
        "F64" => DType::F64,
        "I64" => DType::I64,
        "U32" => DType::U32,
        "U8" => DType::U8,
        _ => return None,
    })
}

/// One header entry as a byte range of the file, checked against its dtype and shape.
fn locate(
    path: &Path,
    file: usize,
    data_start: u64,
    key: &str,
    entry: &serde_json::Value,
) -> Result<Located> {
    let bad = |what: &str| anyhow::anyhow!("{}: tensor `{key}`: {what}", path.display());
    let name = entry.get("dtype").and_then(|d| d.as_str()).ok_or_else(|| bad("missing `dtype`"))?;
    let dtype = dtype_named(name).ok_or_else(|| bad(&format!("unsupported dtype {name}")))?;
    let shape: Vec<usize> = entry
        .get("shape")
        .and_then(|s| s.as_array())
        .ok_or_else(|| bad("missing `shape`"))?
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize))
        .collect::<Option<_>>()
        .ok_or_else(|| bad("`shape` is not a list of sizes"))?;
    let offsets = entry
        .get("data_offsets")
        .and_then(|o| o.as_array())
        .ok_or_else(|| bad("missing `data_offsets`"))?;
    let (begin, end) =
        match (offsets.first().and_then(|v| v.as_u64()), offsets.get(1).and_then(|v| v.as_u64())) {
            (Some(b), Some(e)) if b <= e => (b, e),
            _ => return Err(bad("invalid `data_offsets`")),
        };
    // Checked: a shape whose size wraps around could otherwise match a small byte range.
    let want = shape
        .iter()
        .try_fold(dtype.size_in_bytes(), |bytes, &d| bytes.checked_mul(d))
        .ok_or_else(|| bad(&format!("shape {shape:?} is too large")))?;
    if (end - begin) as usize != want {
        return Err(bad(&format!(
            "{} data bytes for shape {shape:?} of {name} ({want} expected)",
            end - begin
        )));
    }
    Ok(Located { file, dtype, shape, start: data_start + begin, end: data_start + end })
}

/// Element types whose every byte pattern is a valid value and that have no padding.
trait Plain: Copy {}
impl Plain for u16 {}
impl Plain for f32 {}

fn read_tensor(path: &Path, located: &Located, device: &Device) -> Result<Tensor> {
    use half::vec::HalfBitsVecExt;
    use std::io::{Read, Seek, SeekFrom};
    let mut file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    file.seek(SeekFrom::Start(located.start))?;
    let count: usize = located.shape.iter().product();
    // Read straight into the tensor's own buffer: one copy (the read), no intermediate bytes.
    // The buffer starts as zeroed plain numbers (u16, f32), which the allocator hands out as
    // fresh zero pages: `vec![bf16::ZERO; n]` would write every element first (~8% of a bf16
    // load in a profile, half of it page faults taken before the read).
    let mut read = |bytes: &mut [u8]| {
        file.read_exact(bytes).with_context(|| format!("{}: cannot read", path.display()))
    };
    let tensor = match located.dtype {
        DType::BF16 | DType::F16 if cfg!(target_endian = "little") => {
            let mut bits = vec![0u16; count];
            read(as_bytes_mut(&mut bits))?;
            if located.dtype == DType::BF16 {
                Tensor::from_vec(
                    bits.reinterpret_into::<tokenscale_kernels::bf16>(),
                    located.shape.as_slice(),
                    device,
                )?
            } else {
                Tensor::from_vec(
                    bits.reinterpret_into::<tokenscale_kernels::f16>(),
                    located.shape.as_slice(),
                    device,
                )?
            }
        }
        DType::F32 if cfg!(target_endian = "little") => {
            let mut values = vec![0f32; count];
            read(as_bytes_mut(&mut values))?;
            Tensor::from_vec(values, located.shape.as_slice(), device)?
        }
        _ => {
            let mut bytes = vec![0u8; (located.end - located.start) as usize];
            read(&mut bytes)?;
            Tensor::from_raw_buffer(&bytes, located.dtype, &located.shape, device)?
        }
    };
    Ok(tensor)
}

/// The bytes of a slice of plain numbers (u16, f32: no padding, every bit pattern valid).
fn as_bytes_mut<T: Plain>(values: &mut [T]) -> &mut [u8] {
    let len = std::mem::size_of_val(values);
    // SAFETY: T is u16 or f32 (`Plain`), plain numbers without padding for which every byte
    // pattern is a valid value; the byte view covers exactly the slice's memory and
    // borrows it mutably for its lifetime, so nothing else can observe it meanwhile.
    unsafe { std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<u8>(), len) }
}
