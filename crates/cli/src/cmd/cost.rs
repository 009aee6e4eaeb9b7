//! `tokenscale cost`: parameters, MACs/FLOPs, KV cache and activation estimates per component
//! for a list of vision-token counts, from a config.json alone (see the tokenscale-cost crate
//! for what is counted).

use std::path::PathBuf;

use anyhow::Result;
use tokenscale_cost::{
    parse_list, read_config, table, to_csv, to_json, to_markdown, Dtype, Reducer, Workload,
};

#[derive(clap::Args)]
pub struct Args {
    /// The model's config.json (llava, modeling_query_adapt_clip_llm, llama/qwen2/mistral,
    /// clip_vision_model/clip). For the query-fused model, num_crops is read from a
    /// preprocessor_config.json beside it.
    #[arg(long)]
    pub config: PathBuf,
    /// Vision tokens n given to the LLM, e.g. 1,64,144,576.
    #[arg(long)]
    pub vision_tokens: String,
    /// Prompt tokens besides the vision tokens.
    #[arg(long, default_value_t = 64)]
    pub text_tokens: u64,
    /// Decode steps after the prefill (each attends to the growing cache).
    #[arg(long, default_value_t = 0)]
    pub new_tokens: u64,
    /// Image views: LLaVA 1; query-fused model 1 + rows·cols (default 1 + num_crops, the full grid).
    #[arg(long)]
    pub crops: Option<u64>,
    /// Query-fused model: CLIP tokens of the question in the query decoder's row (0 = DropQuery).
    #[arg(long, default_value_t = 0)]
    pub query_tokens: u64,
    /// LLaVA reducer [values: pool, uniform, visionzip (reduce before the projector), fastv, fastv:K].
    #[arg(long, value_parser = super::reducer_name)]
    pub reducer: Option<String>,
    /// dtype of the KV cache and activations: f32, bf16, f16.
    #[arg(long, default_value = "bf16")]
    pub dtype: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = super::choices::Format::Md)]
    pub format: super::choices::Format,
    /// Write here (through a temporary file and a rename) instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let dtype = Dtype::parse(&args.dtype)?;
    let ns = parse_list(&args.vision_tokens)?;
    let reducer = args.reducer.as_deref().map(Reducer::parse).transpose()?;
    let arch = read_config(&args.config)?;
    let workload = Workload {
        text_tokens: args.text_tokens,
        new_tokens: args.new_tokens,
        crops: args.crops,
        query_text_tokens: args.query_tokens,
        reducer,
        dtype,
    };
    let rows = table(&arch, &ns, &workload)?;
    let text = match args.format {
        super::choices::Format::Json => to_json(&rows),
        super::choices::Format::Csv => to_csv(&rows),
        super::choices::Format::Md => to_markdown(&rows, dtype),
    };
    match &args.out {
        Some(path) => tokenscale_fsio::write_atomic(path, text.as_bytes()).map_err(Into::into),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}
