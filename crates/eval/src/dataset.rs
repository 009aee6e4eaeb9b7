//! VLMEvalKit benchmark TSV files, read unchanged.

use crate::kind::{self, Kind};
use crate::py;
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenscale_base::fnv1a;

/// Values that `pandas.read_csv` reads as NaN by default.
const NA_VALUES: &[&str] = &[
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
];

/// Whether pandas would read this cell as NaN (Py quirk: an option whose text is `None` or `NA`
/// disappears, exactly as in VLMEvalKit).
pub fn is_na(cell: &str) -> bool {
    NA_VALUES.contains(&cell)
}

/// Where an image comes from.
#[derive(Clone, Debug)]
pub enum ImageSource {
    /// Base64 text held in the TSV (shared between rows that refer to it).
    Base64(Arc<String>),
    /// A file (meta-only TSVs).
    Path(PathBuf),
}

/// One benchmark row.
#[derive(Clone, Debug)]
pub struct Item {
    /// 1-based line number in the TSV (header is line 1).
    pub line: u64,
    /// Row position in the file (0-based, after dropped rows).
    pub row: usize,
    /// The `index` cell as text.
    pub index: String,
    /// The row's images (usually one), from its `image` cell or `image_path` cell.
    pub images: Vec<ImageSource>,
    /// Identity of the image data: the index of the row that holds it (rows that refer to another
    /// row's image share its key), used to reuse prepared images.
    pub image_key: String,
    /// The `image_path` cell's paths, as written (empty without that column).
    pub image_path: Vec<String>,
    /// The `question` cell.
    pub question: String,
    /// The `hint` cell, if present and not NaN.
    pub hint: Option<String>,
    /// Options present and not NaN, in letter order.
    pub options: Vec<(char, String)>,
    /// The `answer` cell, if present and not NaN (unanswered rows are not scored).
    pub answer: Option<String>,
    /// The `category` cell, used for per-category metrics.
    pub category: Option<String>,
    /// The `l2-category` cell (MMBench's second-level category).
    pub l2_category: Option<String>,
    /// The `split` cell (e.g. `dev`, `test`), used for per-split metrics.
    pub split: Option<String>,
    /// All other non-NaN columns (e.g. `g_index`, dataset-specific extras).
    pub extra: BTreeMap<String, String>,
}

impl Item {
    /// The ground-truth answers: the elements of a Python list literal, or the answer itself.
    pub fn answers(&self) -> Vec<String> {
        match &self.answer {
            None => vec![],
            Some(a) => py::parse_list(a).unwrap_or_else(|| vec![a.clone()]),
        }
    }

    /// Decode this row's images.
    pub fn decode_images(&self) -> Result<Vec<image::DynamicImage>> {
        self.images
            .iter()
            .enumerate()
            .map(|(i, src)| {
                decode_image(src).with_context(|| {
                    format!("line {}: index {}: image {}", self.line, self.index, i)
                })
            })
            .collect()
    }
}

impl tokenscale_vlmeval::Question for Item {
    fn question(&self) -> &str {
        &self.question
    }
    fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
    fn options(&self) -> &[(char, String)] {
        &self.options
    }
}

/// Decode one image source.
pub fn decode_image(src: &ImageSource) -> Result<image::DynamicImage> {
    match src {
        ImageSource::Base64(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim().as_bytes())
                .or_else(|_| {
                    base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64.trim().as_bytes())
                })
                .map_err(|e| anyhow!("undecodable base64 in column 'image': {e}"))?;
            tokenscale_base::image::decode_image_bytes(&bytes, "column 'image'")
        }
        ImageSource::Path(p) => tokenscale_base::image::open_image(p),
    }
}

/// A loaded benchmark.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The dataset name: the TSV's file stem, as VLMEvalKit names it.
    pub name: String,
    /// The dataset kind decided from the name, or given explicitly.
    pub kind: Kind,
    /// The TSV file it was loaded from.
    pub path: PathBuf,
    /// The TSV's header columns, in file order.
    pub columns: Vec<String>,
    /// The rows, in file order.
    pub items: Vec<Item>,
    /// FNV-1a 64 of the file bytes (for run fingerprints).
    pub content_hash: u64,
}

fn cell_list(s: &str) -> Vec<String> {
    // VLMEvalKit's toliststr: text that starts with '[' and ends with ']' is a list literal.
    if s.starts_with('[') && s.ends_with(']') {
        if let Some(v) = py::parse_list(s) {
            return v;
        }
    }
    vec![s.to_string()]
}

impl Dataset {
    /// Read a VLMEvalKit TSV. The kind comes from the file name unless `kind` is given.
    pub fn load(path: &Path, kind: Option<Kind>) -> Result<Dataset> {
        let name = kind::dataset_name(path);
        let kind = match kind {
            Some(k) => k,
            None => kind::kind_from_name(&name).with_context(|| format!("{}", path.display()))?,
        };
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut ds = Self::parse(&bytes, &name, kind, path.parent().unwrap_or(Path::new(".")))
            .with_context(|| format!("{}", path.display()))?;
        ds.path = path.to_path_buf();
        Ok(ds)
    }

    /// Parse TSV bytes (what `load` does after reading the file).
    pub fn parse(bytes: &[u8], name: &str, kind: Kind, base_dir: &Path) -> Result<Dataset> {
        let content_hash = fnv1a(bytes);
        let mut rdr = csv::ReaderBuilder::new()
            .delimiter(b'\t')
            .has_headers(false)
            .flexible(true)
            .quoting(true)
            .double_quote(true)
            .from_reader(bytes);
        let mut records = rdr.records();
        let header = match records.next() {
            None => bail!("empty file: no header line"),
            Some(r) => r.map_err(|e| anyhow!("line 1: {e}"))?,
        };
        let columns: Vec<String> =
            header.iter().map(|s| s.trim_start_matches('\u{feff}').to_string()).collect();
        let col = |n: &str| columns.iter().position(|c| c == n);
        let c_index = col("index").ok_or_else(|| {
            anyhow!("line 1: no 'index' column (columns: {})", columns.join(", "))
        })?;
        let c_image = col("image");
        let c_image_path = col("image_path");
        if c_image.is_none() && c_image_path.is_none() {
            bail!("line 1: neither an 'image' nor an 'image_path' column");
        }
        let c_question = col("question");
        let c_hint = col("hint");
        let c_answer = col("answer");
        let c_category = col("category");
        let c_l2 = col("l2-category");
        let c_split = col("split");
        let option_cols: Vec<(char, usize)> =
            ('A'..='Z').filter_map(|l| col(&l.to_string()).map(|i| (l, i))).collect();
        let known: Vec<usize> = [
            Some(c_index),
            c_image,
            c_image_path,
            c_question,
            c_hint,
            c_answer,
            c_category,
            c_l2,
            c_split,
        ]
        .into_iter()
        .flatten()
        .chain(option_cols.iter().map(|x| x.1))
        .collect();

        struct Raw {
            line: u64,
            cells: Vec<String>,
        }
        let mut raws = Vec::new();
        for rec in records {
            let rec = rec.map_err(|e| {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                anyhow!("line {line}: malformed TSV row: {e}")
            })?;
            let line = rec.position().map(|p| p.line()).unwrap_or(0);
            if rec.len() == 1 && rec.get(0) == Some("") {
                continue; // blank line
            }
            if rec.len() > columns.len() {
                bail!(
                    "line {line}: expected {} fields (the header's columns), saw {}; column {} has no header",
                    columns.len(),
                    rec.len(),
                    columns.len() + 1
                );
            }
            let mut cells: Vec<String> = rec.iter().map(str::to_string).collect();
            cells.resize(columns.len(), String::new());
            raws.push(Raw { line, cells });
        }

        let get = |r: &Raw, c: Option<usize>| -> Option<String> {
            c.and_then(|c| {
                let v = &r.cells[c];
                if is_na(v) {
                    None
                } else {
                    Some(v.clone())
                }
            })
        };

        // Drop rows without an image (VLMEvalKit's skip_noimg), then resolve image references.
        if let Some(ci) = c_image {
            raws.retain(|r| !is_na(&r.cells[ci]));
        }
        let mut by_index: HashMap<String, usize> = HashMap::new();
        for (i, r) in raws.iter().enumerate() {
            let idx = r.cells[c_index].clone();
            if is_na(&idx) {
                bail!("line {}: column 'index': empty index", r.line);
            }
            if let Some(prev) = by_index.insert(idx.clone(), i) {
                bail!(
                    "line {}: column 'index': duplicate index {idx:?} (first on line {})",
                    r.line,
                    raws[prev].line
                );
            }
        }
        let mut shared: HashMap<usize, Arc<Vec<Arc<String>>>> = HashMap::new();
        let mut items = Vec::with_capacity(raws.len());
        for (row, r) in raws.iter().enumerate() {
            let index = r.cells[c_index].clone();
            let image_path = get(r, c_image_path).map(|s| cell_list(&s)).unwrap_or_default();
            let (images, image_key) = if let Some(ci) = c_image {
                let cell = &r.cells[ci];
                let src_row = if cell.chars().count() <= 64 {
                    let target = *by_index.get(cell.as_str()).ok_or_else(|| {
                        anyhow!(
                            "line {}: column 'image': {cell:?} is too short for base64 and is no other row's index",
                            r.line
                        )
                    })?;
                    if raws[target].cells[ci].chars().count() <= 64 {
                        bail!(
                            "line {}: column 'image': refers to index {cell:?} (line {}), whose image is itself a reference",
                            r.line,
                            raws[target].line
                        );
                    }
                    target
                } else {
                    row
                };
                let list = shared
                    .entry(src_row)
                    .or_insert_with(|| {
                        Arc::new(
                            cell_list(&raws[src_row].cells[ci]).into_iter().map(Arc::new).collect(),
                        )
                    })
                    .clone();
                (
                    list.iter().map(|b| ImageSource::Base64(b.clone())).collect::<Vec<_>>(),
                    raws[src_row].cells[c_index].clone(),
                )
            } else {
                if image_path.is_empty() {
                    bail!(
                        "line {}: column 'image_path': empty in a TSV without an 'image' column",
                        r.line
                    );
                }
                let paths: Vec<ImageSource> = image_path
                    .iter()
                    .map(|p| {
                        let p = PathBuf::from(p);
                        ImageSource::Path(if p.is_absolute() {
                            p
                        } else {
                            base_dir.join("images").join(name).join(&p)
                        })
                    })
                    .collect();
                (paths, image_path.join("|"))
            };
            let options: Vec<(char, String)> = option_cols
                .iter()
                .filter_map(|&(l, c)| {
                    let v = &r.cells[c];
                    if is_na(v) {
                        None
                    } else {
                        Some((l, v.clone()))
                    }
                })
                .collect();
            let mut extra = BTreeMap::new();
            for (c, name) in columns.iter().enumerate() {
                if !known.contains(&c) && !is_na(&r.cells[c]) {
                    extra.insert(name.clone(), r.cells[c].clone());
                }
            }
            items.push(Item {
                line: r.line,
                row,
                index,
                images,
                image_key,
                image_path,
                question: get(r, c_question).unwrap_or_default(),
                hint: get(r, c_hint),
                options,
                answer: get(r, c_answer),
                category: get(r, c_category),
                l2_category: get(r, c_l2),
                split: get(r, c_split),
                extra,
            });
        }
        // Caption sets without a question column get VLMEvalKit's default question.
        if kind == Kind::Caption && c_question.is_none() {
            for it in &mut items {
                it.question = crate::prompt::CAPTION_DEFAULT_QUESTION.to_string();
            }
        }
        Ok(Dataset {
            name: name.to_string(),
            kind,
            path: PathBuf::new(),
            columns,
            items,
            content_hash,
        })
    }

    /// Validate that every image decodes (reports the first failure with its line).
    pub fn check_images(&self) -> Result<()> {
        for it in &self.items {
            it.decode_images().with_context(|| self.path.display().to_string())?;
        }
        Ok(())
    }

    /// Whether the TSV header has column `c` (exact name).
    pub fn has_column(&self, c: &str) -> bool {
        self.columns.iter().any(|x| x == c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_b64() -> String {
        let img = image::RgbImage::from_pixel(4, 4, image::Rgb([255, 0, 0]));
        let mut buf = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(img).write_to(&mut buf, image::ImageFormat::Png).unwrap();
        let s = base64::engine::general_purpose::STANDARD.encode(buf.into_inner());
        assert!(s.len() > 64);
        s
    }

    #[test]
    fn parse_rows_refs_and_na() {
        let b = png_b64();
        let tsv = format!(
            "index\timage\tquestion\tA\tB\tC\tanswer\tcategory\n\
             1\t{b}\tWhat?\tx\tNone\ty\tA\tcat\n\
             2\t1\tWhy?\tp\tq\t\tB\t\n\
             3\t\tdropped\ta\tb\tc\tA\tz\n\
             4\t['{b}', '{b}']\tTwo\ta\tb\n"
        );
        let ds = Dataset::parse(tsv.as_bytes(), "MMStar", Kind::Mcq, Path::new(".")).unwrap();
        assert_eq!(ds.items.len(), 3);
        assert_eq!(ds.items[0].options, vec![('A', "x".to_string()), ('C', "y".to_string())]);
        assert_eq!(ds.items[1].image_key, "1");
        assert_eq!(ds.items[1].line, 3);
        assert!(ds.items[1].category.is_none());
        assert_eq!(ds.items[2].images.len(), 2);
        assert_eq!(ds.items[2].answer, None);
        assert_eq!(ds.items[1].decode_images().unwrap()[0].width(), 4);
    }

    #[test]
    fn errors_name_line_and_column() {
        let e =
            Dataset::parse(b"index\timage\n1\t2\n", "X", Kind::Mcq, Path::new(".")).unwrap_err();
        assert!(format!("{e:#}").contains("line 2: column 'image'"), "{e:#}");
        let e = Dataset::parse(b"index\timage\n1\tabc\tzz\n", "X", Kind::Mcq, Path::new("."))
            .unwrap_err();
        assert!(format!("{e:#}").contains("line 2: expected 2 fields"), "{e:#}");
        let bad = "!".repeat(80);
        let ds = Dataset::parse(
            format!("index\timage\n7\t{bad}\n").as_bytes(),
            "X",
            Kind::Mcq,
            Path::new("."),
        )
        .unwrap();
        let e = ds.check_images().unwrap_err();
        assert!(
            format!("{e:#}").contains("line 2: index 7") && format!("{e:#}").contains("base64"),
            "{e:#}"
        );
    }
}
