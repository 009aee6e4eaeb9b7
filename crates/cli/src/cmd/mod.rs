// One module per subcommand.

/// Vision-token budget flags shared by the commands that run a model.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct BudgetArgs {
    /// Vision tokens given to the LLM: LLaVA reduces its 576 tokens to N with --reducer; the
    /// query-fused model emits N queries for the first question (n_l).
    #[arg(long)]
    pub vision_tokens: Option<usize>,
    /// Query-fused model: tokens for each later question (n_s).
    #[arg(long)]
    pub short_tokens: Option<usize>,
    /// LLaVA token reducer, needed below the native 576 tokens [values: pool, uniform, visionzip,
    /// fastv, fastv:K (FastV after LLM layer K, default 2)].
    #[arg(long, value_parser = reducer_name)]
    pub reducer: Option<String>,
}

/// The compute dtype a model runs in.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DtypeName {
    /// The checkpoint's storage dtype (most of its parameter bytes; config.json breaks ties).
    #[default]
    Auto,
    Bf16,
    F16,
    F32,
}

/// `--dtype`, shared by every command that loads a model.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct DtypeArgs {
    /// Compute dtype: auto runs the checkpoint in the dtype it is stored in (bf16 for most
    /// published checkpoints: memory ≈ file size); f32 doubles a 16-bit checkpoint's memory.
    #[arg(long, value_enum, default_value_t = DtypeName::Auto)]
    pub dtype: DtypeName,
}

impl DtypeArgs {
    pub fn policy(&self) -> tokenscale_model::dtype::DtypePolicy {
        use tokenscale_model::dtype::DtypePolicy;
        use tokenscale_model::DType;
        match self.dtype {
            DtypeName::Auto => DtypePolicy::Auto,
            DtypeName::Bf16 => DtypePolicy::Fixed(DType::BF16),
            DtypeName::F16 => DtypePolicy::Fixed(DType::F16),
            DtypeName::F32 => DtypePolicy::Fixed(DType::F32),
        }
    }

    /// Loads `dir` under this policy; with `verbose`, says on stderr which dtype was chosen and
    /// why, how long loading took and the peak resident memory so far.
    pub fn load(
        &self,
        dir: &std::path::Path,
        verbose: bool,
    ) -> anyhow::Result<tokenscale_model::runtime::Runtime> {
        let loaded = tokenscale_model::runtime::Runtime::open(
            dir,
            self.policy(),
            &tokenscale_model::Device::Cpu,
        )?;
        if verbose {
            report_load(&loaded);
        }
        Ok(loaded.runtime)
    }
}

/// One stderr line: dtype and why, load time, peak RSS.
pub fn report_load(loaded: &tokenscale_model::runtime::Loaded) {
    eprintln!(
        "loaded in {:.2} s, dtype {}, {}",
        loaded.load_s,
        loaded.dtype.reason,
        peak_rss_text()
    );
}

/// "peak RSS 1234.5 MiB" (or that the platform does not report it).
pub fn peak_rss_text() -> String {
    match tokenscale_model::dtype::peak_rss_bytes() {
        Some(bytes) => format!("peak RSS {}", tokenscale_model::dtype::human_bytes(bytes)),
        None => "peak RSS not reported by this platform".to_string(),
    }
}

/// `--model` values: a checkpoint folder, or a Hugging Face repository id (`ORG/NAME`, optionally
/// `ORG/NAME@REVISION`) found in the local Hugging Face cache.
pub fn model_folder(value: &str) -> Result<std::path::PathBuf, String> {
    tokenscale_model::hub::resolve_model(value).map_err(|e| {
        let (repo, revision) = value.split_once('@').map_or((value, None), |(r, v)| (r, Some(v)));
        let revision = revision.map_or(String::new(), |r| format!(" --revision {r}"));
        format!("{e:#}; download it with `tokenscale download {repo}{revision}`")
    })
}

/// `--reducer` values, checked when the flags are read: pool, uniform, visionzip, fastv, fastv:K.
pub fn reducer_name(value: &str) -> Result<String, String> {
    tokenscale_model::reduce::Reducer::parse(value)
        .map(|_| value.to_string())
        .map_err(|e| format!("{e:#}"))
}

/// `--data` values: a benchmark TSV, or a VLMEvalKit benchmark name (`MME`) found in the LMUData folder.
pub fn data_file(value: &str) -> Result<std::path::PathBuf, String> {
    tokenscale_eval::lmudata::resolve_data(value).map_err(|e| format!("{e:#}"))
}

/// Which rows of a score table make series (`fit`, `advise`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SelectArgs {
    /// Keep only rows whose COLUMN equals VALUE (comma separated or repeated; an empty VALUE keeps
    /// empty cells; the same column twice keeps either value), e.g. `dataset=MME,metric=Overall`.
    #[arg(long, value_name = "COLUMN=VALUE", value_delimiter = ',')]
    pub select: Vec<String>,
    /// Also use the per-category rows of an eval table (by default only its overall rows, those
    /// with an empty category, unless --select names a category).
    #[arg(long)]
    pub categories: bool,
}

impl SelectArgs {
    /// The series of the score table at `path` that these flags select.
    pub fn read(
        &self,
        path: &std::path::Path,
    ) -> anyhow::Result<Vec<tokenscale_law::data::SeriesData>> {
        use anyhow::Context;
        let selection = tokenscale_law::data::Selection::parse(&self.select, self.categories)
            .context("--select")?;
        Ok(tokenscale_law::data::read_scores_with(path, &selection)?)
    }
}

/// Conversation options of the query-fused model.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ChatArgs {
    /// Query-fused model: chat template (default llama-2-vision).
    #[arg(long, value_enum)]
    pub template: Option<choices::Template>,
    /// Leave the question text out of the query decoder's row (the "DropQuery" models).
    #[arg(long)]
    pub drop_query: bool,
}

impl ChatArgs {
    pub fn apply(&self, runtime: &mut tokenscale_model::runtime::Runtime) -> anyhow::Result<()> {
        tokenscale_model::runtime::configure_imgque(
            runtime,
            self.template.map(choices::Template::name),
            self.drop_query,
        )
    }
}

pub const RECORD_HELP: &str = "A conversation record file: one JSON record, {\"image\", \"messages\": [{\"role\", \"content\"}]}, \
a [{\"role\": image|system|user|assistant, \"content\"}] list or a VLMEvalKit [{\"type\", \"value\"}] list. Assistant turns \
are kept as given; the image path is relative to the file (--image overrides it). Query-fused model only.";

/// `--chat FILE`: the record's conversation and image (`image` overrides the record's), prepared
/// for the next answer; also returns the conversation.
pub fn prepare_record(
    runtime: &tokenscale_model::runtime::Runtime,
    path: &std::path::Path,
    image: Option<&std::path::Path>,
    budget: &tokenscale_model::runtime::VisionBudget,
) -> anyhow::Result<(tokenscale_model::runtime::Prepared, tokenscale_model::chat::Conversation)> {
    let (prepared, conversation, _) = prepare_record_traced(runtime, path, image, budget)?;
    Ok((prepared, conversation))
}

/// [`prepare_record`], plus the query-fused model's intermediates.
pub fn prepare_record_traced(
    runtime: &tokenscale_model::runtime::Runtime,
    path: &std::path::Path,
    image: Option<&std::path::Path>,
    budget: &tokenscale_model::runtime::VisionBudget,
) -> anyhow::Result<(
    tokenscale_model::runtime::Prepared,
    tokenscale_model::chat::Conversation,
    Option<tokenscale_model::runtime::ImgQueTrace>,
)> {
    let record = tokenscale_model::chat::read_record_file(path)?;
    for warning in &record.warnings {
        eprintln!("warning: {warning}");
    }
    let image = image.map(std::path::Path::to_path_buf).or(record.image);
    let image = image.as_deref().map(tokenscale_model::preprocess::load_image).transpose()?;
    let (prepared, trace) = runtime.prepare_conversation_traced(
        &tokenscale_model::Forward::INFERENCE,
        image.as_ref(),
        &record.conversation,
        budget,
    )?;
    Ok((prepared, record.conversation, trace))
}

impl BudgetArgs {
    pub fn to_budget(&self) -> tokenscale_model::runtime::VisionBudget {
        tokenscale_model::runtime::VisionBudget {
            tokens: self.vision_tokens,
            short_tokens: self.short_tokens,
            reducer: self.reducer.clone(),
        }
    }
}
pub mod advise;
pub mod bench;
pub mod bound;
pub mod choices;
pub mod ckpt;
pub mod cost;
pub mod demo;
pub mod download;
pub mod eval;
pub mod fit;
pub mod forward;
pub mod inspect;
pub mod merge;
pub mod probe;
pub mod reproduce;
pub mod run;
pub mod score;
pub mod serve;
pub mod synth;
pub mod train;
