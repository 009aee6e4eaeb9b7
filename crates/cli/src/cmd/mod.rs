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
    /// LLaVA token reducer: pool, uniform, visionzip, fastv.
    #[arg(long)]
    pub reducer: Option<String>,
}

/// Conversation options of the query-fused model.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ChatArgs {
    /// Chat template: llama-2, llama-2-vision (default), vicuna_v1.1, qwen-7b-chat, phi-3,
    /// microsoft-phi-3, llama-3, llama-3-vision.
    #[arg(long)]
    pub template: Option<String>,
    /// Leave the question text out of the query decoder's row (the "DropQuery" models).
    #[arg(long)]
    pub drop_query: bool,
}

impl ChatArgs {
    pub fn apply(&self, runtime: &mut tokenscale_model::runtime::Runtime) -> anyhow::Result<()> {
        tokenscale_model::runtime::configure_imgque(runtime, self.template.as_deref(), self.drop_query)
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
    let record = tokenscale_model::chat::read_record_file(path)?;
    for warning in &record.warnings {
        eprintln!("warning: {warning}");
    }
    let image = image.map(std::path::Path::to_path_buf).or(record.image);
    let image = image.as_deref().map(tokenscale_model::preprocess::load_image).transpose()?;
    let prepared = runtime.prepare_conversation(image.as_ref(), &record.conversation, budget)?;
    Ok((prepared, record.conversation))
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
pub mod demo;
pub mod eval;
pub mod forward;
pub mod inspect;
pub mod probe;
pub mod run;
pub mod bound;
pub mod cost;
pub mod bench;
pub mod ckpt;
pub mod fit;
pub mod score;
pub mod merge;
pub mod reproduce;
pub mod train;
pub mod synth;
