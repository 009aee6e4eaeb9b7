//! `tokenscale run`: generate an answer for an image and a prompt, streaming it to stdout.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;
use tokenscale_model::Forward;

use anyhow::{bail, Result};
use tokenscale_model::chat::{Conversation, Role};
use tokenscale_model::generation::GenerationConfig;
use tokenscale_model::preprocess::load_image;
use tokenscale_model::runtime::{Prepared, Runtime};
use tokenscale_model::tokenizer::TokenStream;

#[derive(clap::Args)]
pub struct Args {
    /// Model: checkpoint folder (config.json, *.safetensors, tokenizer.json), or a Hugging Face id
    /// such as llava-hf/llava-1.5-7b-hf[@REVISION] found in the local Hugging Face cache.
    #[arg(long, value_parser = super::model_folder)]
    pub model: PathBuf,
    /// Image file (PNG or JPEG); required by vision-language models.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// The user's question; wrapped in the model's chat template unless --raw-prompt. Repeat it
    /// for a multi-turn conversation (query-fused model: n_l tokens for the first question, n_s
    /// for each later one); each answer is streamed and kept in the conversation.
    #[arg(long, required_unless_present = "record")]
    pub prompt: Vec<String>,
    /// Answer the last question of a conversation record file (JSON); --help lists its shapes.
    #[arg(long = "chat", value_name = "FILE", conflicts_with_all = ["prompt", "raw_prompt"], long_help = super::RECORD_HELP)]
    pub record: Option<PathBuf>,
    /// Use --prompt as the exact model input (it must contain <image> for LLaVA).
    #[arg(long)]
    pub raw_prompt: bool,
    #[command(flatten)]
    pub budget: super::BudgetArgs,
    #[command(flatten)]
    pub chat: super::ChatArgs,
    /// Most answer tokens to generate (fewer when the model stops).
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// With --temperature > 0: sample from the smallest set of tokens whose probability reaches P.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Seed of the sampler (the project's own SplitMix64: the same seed gives the same answer).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub dtype: super::DtypeArgs,
    /// Say on stderr which dtype the model runs in, its load time, time to first token, decode
    /// speed and the peak resident memory.
    #[arg(long, short)]
    pub verbose: bool,
}

pub fn run(args: Args) -> Result<()> {
    let mut runtime = args.dtype.load(&args.model, args.verbose)?;
    args.chat.apply(&mut runtime)?;
    let config = config_from(&args, &runtime);
    let budget = args.budget.to_budget();
    if let Some(path) = &args.record {
        let (prepared, conversation) =
            super::prepare_record(&runtime, path, args.image.as_deref(), &budget)?;
        if conversation
            .messages
            .last()
            .is_some_and(|m| m.role == Role::Assistant && !m.content.is_empty())
        {
            bail!("{}: the record ends with an assistant answer, so there is no question to answer (`forward --chat` scores it)", path.display());
        }
        stream(&runtime, &prepared, &config)?;
        return Ok(());
    }
    let image = args.image.as_deref().map(load_image).transpose()?;
    let mut conversation = Conversation::new();
    let mut seen = 0;
    for (turn, question) in args.prompt.iter().enumerate() {
        let started = Instant::now();
        let prepared = if args.prompt.len() == 1 {
            runtime.prepare(
                &Forward::INFERENCE,
                image.as_ref(),
                question,
                args.raw_prompt,
                &budget,
            )?
        } else {
            conversation = conversation.user(question.as_str());
            let prepared = runtime.prepare_conversation(
                &Forward::INFERENCE,
                image.as_ref(),
                &conversation,
                &budget,
            )?;
            let new = prepared.vision_tokens - seen;
            seen = prepared.vision_tokens;
            println!(
                "[turn {}: {new} vision tokens, {seen} in the conversation] {question}",
                turn + 1
            );
            prepared
        };
        let vision_s = started.elapsed().as_secs_f64();
        let (answer, timing) = stream(&runtime, &prepared, &config)?;
        if args.verbose {
            let decode = timing
                .decode_tokens_per_s()
                .map_or("–".to_string(), |r| format!("{r:.2} tokens/s"));
            eprintln!(
                "{} prompt tokens ({} vision): inputs {vision_s:.2} s, time to first token {:.2} s, {} new tokens, decode {decode}, {}",
                prepared.input_ids.len(),
                prepared.vision_tokens,
                timing.first_token_s,
                timing.tokens,
                super::peak_rss_text()
            );
        }
        conversation = conversation.assistant(answer);
    }
    Ok(())
}

/// When the tokens of one answer came.
struct Timing {
    first_token_s: f64,
    total_s: f64,
    tokens: usize,
}

impl Timing {
    fn decode_tokens_per_s(&self) -> Option<f64> {
        (self.tokens > 1)
            .then(|| (self.tokens - 1) as f64 / (self.total_s - self.first_token_s).max(1e-9))
    }
}

fn config_from(args: &Args, runtime: &Runtime) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
        stop_tokens: runtime.stop_tokens(),
    }
}

/// Streams the answer to stdout as it is generated; returns it whole, with its timing.
fn stream(
    runtime: &Runtime,
    prepared: &Prepared,
    config: &GenerationConfig,
) -> Result<(String, Timing)> {
    let mut pieces = TokenStream::new(runtime.tokenizer());
    let mut answer = String::new();
    let mut stdout = std::io::stdout();
    let begin = Instant::now();
    let mut first = None;
    let tokens = runtime.generate(&Forward::INFERENCE, prepared, config, |token| {
        first.get_or_insert_with(|| begin.elapsed().as_secs_f64());
        let piece = pieces.push(token)?;
        stdout.write_all(piece.as_bytes())?;
        stdout.flush()?;
        answer.push_str(&piece);
        Ok(())
    })?;
    println!();
    let total_s = begin.elapsed().as_secs_f64();
    let timing = Timing { first_token_s: first.unwrap_or(total_s), total_s, tokens: tokens.len() };
    Ok((answer.trim().to_string(), timing))
}
