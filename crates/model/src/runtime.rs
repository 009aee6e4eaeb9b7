//! One entry point over every supported checkpoint kind that generates text: load a folder,
//! turn (image, prompt) into the exact model inputs, and hand out the LLM for decoding.

use std::path::Path;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use image::RgbImage;

use crate::chat::{ChatTemplate, Conversation};
use crate::checkpoint::{load_causal_lm, Architecture};
use crate::dtype::{DtypePolicy, ResolvedDtype};
use crate::forward::Forward;
use crate::generation::{generate_pruned, GenerationConfig};
use crate::imgque_pipeline::ImgQuePipeline;
use crate::llama::{ForwardOptions, Llama, LlamaOutput};
use crate::llava::{vicuna_v1_prompt, LlavaPipeline};
use crate::reducers::{Reducer, SpanPrune};
use crate::tokenizer::Tokenizer;

/// A loaded checkpoint that generates text, by kind.
// One value per loaded model, so the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Runtime {
    /// A llava-hf LLaVA checkpoint.
    Llava(LlavaPipeline),
    /// A query-fused (imgque) checkpoint.
    ImgQue(ImgQuePipeline),
    /// A text-only `*ForCausalLM` checkpoint.
    Lm {
        /// The decoder.
        llm: Llama,
        /// Its tokenizer (`tokenizer.json`).
        tokenizer: Tokenizer,
    },
}

/// How many vision tokens to give the LLM. `tokens: None` keeps the model's native count.
/// For LLaVA, `reducer` picks how 576 CLIP tokens become `tokens` (pool, uniform, visionzip,
/// fastv); for the query-fused model `tokens` is n_l and `short_tokens` n_s.
#[derive(Debug, Clone, Default)]
pub struct VisionBudget {
    /// Vision tokens per image (n_l for the query-fused model); `None` keeps the native count.
    pub tokens: Option<usize>,
    /// The query-fused model's n_s (slots before each later question); `None` keeps its own.
    pub short_tokens: Option<usize>,
    /// LLaVA's reducer (pool, uniform, visionzip, fastv, fastv:K); needed when `tokens` is
    /// below the native count.
    pub reducer: Option<String>,
}

/// The inputs fed to the LLM for one prompt.
pub struct Prepared {
    /// The LLM's input token ids.
    pub input_ids: Vec<u32>,
    /// What the vision tower took: `[1, 3, H, W]` for LLaVA, the `[K, 3, crop, crop]` views for
    /// the query-fused model; `None` for text-only models.
    pub pixel_values: Option<Tensor>,
    /// `[1, T, H]`
    pub embeds: Tensor,
    /// The prompt text after templating.
    pub prompt: String,
    /// How many vision tokens the LLM receives (0 for text).
    pub vision_tokens: usize,
    /// FastV's pruning of the prompt's image span, applied by [`Runtime::forward`] and
    /// [`Runtime::generate`] (the LLM then sees `vision_tokens` image tokens from layer K on);
    /// `None` otherwise.
    pub prune: Option<SpanPrune>,
    /// Where the LLM input holds vision tokens (LLaVA's image tokens before any FastV pruning,
    /// the query-fused model's QED slots); empty for text.
    pub vision_positions: Vec<usize>,
}

/// What the query-fused model computed on the way to the LLM input (`forward` writes it for parity
/// checks); the views are [`Prepared::pixel_values`] and the fused embeddings [`Prepared::embeds`].
pub struct ImgQueTrace {
    /// `[K, tokens_per_crop, vision_hidden]`: the vision tokens of each view.
    pub crop_tokens: Tensor,
    /// `[n, vision_hidden]`: the query decoder's QED|EOS output rows, before the projection, in
    /// the order they fill the QED slots.
    pub query_states: Tensor,
}

fn positions_where(values: &[u32], keep: impl Fn(u32) -> bool) -> Vec<usize> {
    values.iter().enumerate().filter(|(_, &v)| keep(v)).map(|(i, _)| i).collect()
}

/// A loaded model and how it was loaded.
pub struct Loaded {
    /// The loaded model.
    pub runtime: Runtime,
    /// The compute dtype and why it was chosen.
    pub dtype: ResolvedDtype,
    /// Wall time of reading and building the model, in seconds.
    pub load_s: f64,
}

impl Runtime {
    /// Loads a checkpoint folder under a dtype policy (`DType::F32` etc. convert into
    /// [`DtypePolicy::Fixed`]); see [`Runtime::open`] for what is checked first.
    pub fn load(dir: &Path, policy: impl Into<DtypePolicy>, device: &Device) -> Result<Self> {
        Ok(Self::open(dir, policy.into(), device)?.runtime)
    }

    /// Loads a checkpoint folder: the compute dtype is resolved from the policy and the
    /// safetensors headers, the parameters' size at that dtype is checked against the memory
    /// available (a clear error instead of an out-of-memory kill), and a warning is printed
    /// when 16-bit products must take the portable path on this CPU.
    pub fn open(dir: &Path, policy: DtypePolicy, device: &Device) -> Result<Loaded> {
        let start = std::time::Instant::now();
        let (arch, _) = Architecture::detect(dir)?;
        let resolved = crate::dtype::resolve_for(dir, policy)?;
        crate::dtype::check_fits(dir, &resolved)?;
        if let Some(warning) = crate::dtype::warn_if_portable(resolved.dtype) {
            eprintln!("warning: {warning}");
        }
        let runtime = crate::checkpoint::naming_folder(
            dir,
            Self::load_as(dir, arch, resolved.dtype, device),
        )?;
        Ok(Loaded { runtime, dtype: resolved, load_s: start.elapsed().as_secs_f64() })
    }

    fn load_as(dir: &Path, arch: Architecture, dtype: DType, device: &Device) -> Result<Self> {
        match arch {
            Architecture::Llava => Ok(Self::Llava(LlavaPipeline::load(dir, dtype, device)?)),
            Architecture::ImgQue => Ok(Self::ImgQue(ImgQuePipeline::load(dir, dtype, device)?)),
            Architecture::CausalLm(_) => {
                let llm = load_causal_lm(dir, dtype, device)?;
                let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"))?;
                Ok(Self::Lm { llm, tokenizer })
            }
            other => bail!(
                "{}: {} checkpoints do not generate text (use a LLaVA or causal LM folder)",
                dir.display(),
                other.name()
            ),
        }
    }

    /// The language model that decodes (for VLMs, the one behind the vision side).
    pub fn llm(&self) -> &Llama {
        match self {
            Self::Llava(p) => &p.model.llm,
            Self::ImgQue(p) => &p.model.llm,
            Self::Lm { llm, .. } => llm,
        }
    }

    /// The tokenizer of the language model.
    pub fn tokenizer(&self) -> &Tokenizer {
        match self {
            Self::Llava(p) => &p.tokenizer,
            Self::ImgQue(p) => &p.tokenizer,
            Self::Lm { tokenizer, .. } => tokenizer,
        }
    }

    /// Whether the model takes an image (LLaVA or query-fused).
    pub fn is_vlm(&self) -> bool {
        matches!(self, Self::Llava(_) | Self::ImgQue(_))
    }

    /// The ids generation stops at: eos ids, plus the end-of-turn tokens the tokenizer has.
    pub fn stop_tokens(&self) -> Vec<u32> {
        match self {
            Self::Llava(p) => p.stop_tokens(),
            Self::ImgQue(p) => p.stop_tokens(),
            Self::Lm { llm, .. } => llm.config.eos_token_ids(),
        }
    }

    /// Templating: LLaVA wraps `prompt` in the vicuna_v1 conversation unless `raw`, in which case
    /// the prompt must carry its own `<image>`. Causal LMs take the prompt as it is.
    pub fn prepare(
        &self,
        ctx: &Forward,
        image: Option<&RgbImage>,
        prompt: &str,
        raw: bool,
        budget: &VisionBudget,
    ) -> Result<Prepared> {
        match self {
            Self::Llava(p) => {
                let image = image.ok_or_else(|| anyhow::anyhow!("this model needs an image"))?;
                let text = if raw { prompt.to_string() } else { vicuna_v1_prompt(prompt) };
                let image_id = p.model.config.image_token_index;
                if let Some((n, reducer)) = llava_reduction(p, budget)? {
                    let inputs = p.prepare_budget(ctx, image, &text, n, reducer)?;
                    return Ok(Prepared {
                        vision_positions: positions_where(&inputs.input_ids, |t| t == image_id),
                        input_ids: inputs.input_ids,
                        pixel_values: Some(inputs.pixel_values),
                        embeds: inputs.embeds,
                        prompt: text,
                        vision_tokens: inputs.vision_tokens,
                        prune: inputs.prune,
                    });
                }
                let inputs = p.prepare(image, &text)?;
                let embeds = p.embeddings(ctx, &inputs)?;
                Ok(Prepared {
                    vision_positions: positions_where(&inputs.input_ids, |t| t == image_id),
                    input_ids: inputs.input_ids,
                    pixel_values: Some(inputs.pixel_values),
                    embeds,
                    prompt: text,
                    vision_tokens: p.model.config.image_tokens(),
                    prune: None,
                })
            }
            Self::ImgQue(p) => Ok(prepare_imgque(ctx, p, image, prompt, raw, budget)?.0),
            Self::Lm { llm, tokenizer } => {
                let input_ids = lm_input_ids(tokenizer, image.is_some(), prompt, budget)?;
                let ids = Tensor::new(input_ids.as_slice(), llm.device())?.unsqueeze(0)?;
                let embeds = llm.embed(&ids)?;
                Ok(Prepared {
                    input_ids,
                    pixel_values: None,
                    embeds,
                    prompt: prompt.to_string(),
                    vision_tokens: 0,
                    prune: None,
                    vision_positions: Vec::new(),
                })
            }
        }
    }
}

/// LLaVA's budget: `None` for the native count (no reduction), else N and its parsed reducer.
pub(crate) fn llava_reduction(
    p: &LlavaPipeline,
    budget: &VisionBudget,
) -> Result<Option<(usize, Reducer)>> {
    if budget.short_tokens.is_some() {
        bail!("vision budget: short tokens (n_s) apply to the query-fused model only");
    }
    let native = p.model.config.image_tokens();
    // The native count is no reduction: it needs no reducer.
    let native_only = budget.tokens == Some(native) && budget.reducer.is_none();
    if native_only || (budget.tokens.is_none() && budget.reducer.is_none()) {
        return Ok(None);
    }
    let Some(n) = budget.tokens else {
        bail!("vision budget: a reducer needs a vision-token count N (1 ≤ N ≤ {native})");
    };
    let Some(name) = budget.reducer.as_deref() else {
        bail!("vision budget: {n} of LLaVA's {native} vision tokens needs a reducer (pool, uniform, visionzip, fastv, fastv:K)");
    };
    Ok(Some((n, Reducer::parse(name)?)))
}

/// A causal LM's prompt ids (it takes no image and no vision budget).
pub(crate) fn lm_input_ids(
    tokenizer: &Tokenizer,
    has_image: bool,
    prompt: &str,
    budget: &VisionBudget,
) -> Result<Vec<u32>> {
    if budget.tokens.is_some() {
        bail!("vision budget: a vision-token count needs a vision-language model");
    }
    if has_image {
        bail!("this is a text-only model: it takes no image");
    }
    let input_ids = tokenizer.encode(prompt, true)?;
    if input_ids.is_empty() {
        bail!("the prompt encodes to no tokens");
    }
    Ok(input_ids)
}

/// The query-fused model's conversation options: chat template (default: the checkpoint's, else llama-2-vision) and
/// DropQuery (question text left out of the query decoder's row).
pub fn configure_imgque(
    runtime: &mut Runtime,
    template: Option<&str>,
    drop_query: bool,
) -> Result<()> {
    match runtime {
        Runtime::ImgQue(p) => {
            if let Some(name) = template {
                p.template = ChatTemplate::by_name(name)?;
            }
            p.drop_query = drop_query;
            Ok(())
        }
        _ if template.is_some() || drop_query => {
            bail!("a chat template and drop_query apply to the query-fused model only")
        }
        _ => Ok(()),
    }
}

/// n_l from `--vision-tokens` (default: the checkpoint's), n_s from `--short-tokens` (default: the
/// checkpoint's, capped at n_l); values the checkpoint was not trained for run with a warning.
pub fn imgque_budget(p: &ImgQuePipeline, budget: &VisionBudget) -> Result<(usize, usize)> {
    let (tokens, warning) = imgque_budget_checked(p, budget)?;
    if let Some(warning) = warning {
        eprintln!("warning: {warning}");
    }
    Ok(tokens)
}

/// [`imgque_budget`] with the warning returned instead of printed (a server says it once, not
/// once per request).
pub fn imgque_budget_checked(
    p: &ImgQuePipeline,
    budget: &VisionBudget,
) -> Result<((usize, usize), Option<String>)> {
    if budget.reducer.is_some() {
        bail!("vision budget: a reducer applies to LLaVA; the query-fused model sets its budget with the vision-token count (n_l) and short tokens (n_s)");
    }
    let (trained_l, trained_s) = p.trained_tokens();
    let n_l = budget.tokens.unwrap_or(trained_l);
    let n_s = budget.short_tokens.unwrap_or(trained_s.min(n_l));
    p.parser(n_l, n_s)?; // a budget the checkpoint cannot serve is an error, not a warning
    let warning = (n_l != trained_l || n_s != trained_s)
        .then(|| format!("this checkpoint was trained with n_l = {trained_l}, n_s = {trained_s}; running with n_l = {n_l}, n_s = {n_s}"));
    Ok(((n_l, n_s), warning))
}

/// How the query-fused model's (n_l, n_s) come from a budget: [`imgque_budget`] (warning
/// printed) or [`imgque_budget_unannounced`].
type BudgetResolver = fn(&ImgQuePipeline, &VisionBudget) -> Result<(usize, usize)>;

/// [`imgque_budget_checked`] without its warning.
fn imgque_budget_unannounced(p: &ImgQuePipeline, budget: &VisionBudget) -> Result<(usize, usize)> {
    Ok(imgque_budget_checked(p, budget)?.0)
}

/// The one user message that a model other than the query-fused one answers in a chat.
pub(crate) fn single_message(
    conversation: &Conversation,
    drop_query: Option<bool>,
) -> Result<&str> {
    if drop_query == Some(true) {
        bail!("drop_query applies to the query-fused model only");
    }
    if conversation.system.is_some() {
        bail!("a system message is supported for the query-fused model only");
    }
    match conversation.messages.as_slice() {
        [only] => Ok(&only.content),
        _ => bail!("multi-turn conversations are supported for the query-fused model; send one user message"),
    }
}

fn prepare_imgque(
    ctx: &Forward,
    p: &ImgQuePipeline,
    image: Option<&RgbImage>,
    prompt: &str,
    raw: bool,
    budget: &VisionBudget,
) -> Result<(Prepared, Option<ImgQueTrace>)> {
    if raw {
        bail!("a raw prompt is not supported for the query-fused model: its prompt is built from the chat template");
    }
    prepare_imgque_conversation(
        ctx,
        p,
        image,
        &Conversation::new().user(prompt).for_generation(),
        budget,
        p.drop_query,
        imgque_budget,
    )
}

impl Runtime {
    /// [`Runtime::prepare`], plus the query-fused model's intermediates (`None` for other models
    /// and for a text-only prompt).
    pub fn prepare_traced(
        &self,
        ctx: &Forward,
        image: Option<&RgbImage>,
        prompt: &str,
        raw: bool,
        budget: &VisionBudget,
    ) -> Result<(Prepared, Option<ImgQueTrace>)> {
        match self {
            Self::ImgQue(p) => prepare_imgque(ctx, p, image, prompt, raw, budget),
            _ => Ok((self.prepare(ctx, image, prompt, raw, budget)?, None)),
        }
    }

    /// Inputs for the next answer of a multi-turn conversation (earlier questions and answers,
    /// then the new question): the query-fused model gives n_l tokens to the first question and
    /// n_s to each later one. Other models take single prompts.
    pub fn prepare_conversation(
        &self,
        ctx: &Forward,
        image: Option<&RgbImage>,
        conversation: &Conversation,
        budget: &VisionBudget,
    ) -> Result<Prepared> {
        Ok(self.prepare_conversation_traced(ctx, image, conversation, budget)?.0)
    }

    /// [`Runtime::prepare_conversation`], plus the query-fused model's intermediates (`None`
    /// without an image).
    pub fn prepare_conversation_traced(
        &self,
        ctx: &Forward,
        image: Option<&RgbImage>,
        conversation: &Conversation,
        budget: &VisionBudget,
    ) -> Result<(Prepared, Option<ImgQueTrace>)> {
        match self {
            Self::ImgQue(p) => prepare_imgque_conversation(
                ctx,
                p,
                image,
                &conversation.clone().for_generation(),
                budget,
                p.drop_query,
                imgque_budget,
            ),
            _ => bail!(
                "multi-turn conversations are supported for the query-fused model; give one prompt"
            ),
        }
    }

    /// Inputs for the next answer of a chat (a server request): the query-fused model takes the
    /// whole conversation (system message, earlier turns; DropQuery when `drop_query`, else the
    /// loaded setting); other models take one user message under their own template. A budget
    /// the query-fused model was not trained with is not warned about here: a server takes the
    /// warning from [`Runtime::plan_chat`] and says it once.
    pub fn prepare_chat(
        &self,
        ctx: &Forward,
        image: Option<&RgbImage>,
        conversation: &Conversation,
        budget: &VisionBudget,
        drop_query: Option<bool>,
    ) -> Result<Prepared> {
        match self {
            Self::ImgQue(p) => {
                let drop_query = drop_query.unwrap_or(p.drop_query);
                Ok(prepare_imgque_conversation(
                    ctx,
                    p,
                    image,
                    &conversation.clone().for_generation(),
                    budget,
                    drop_query,
                    imgque_budget_unannounced,
                )?
                .0)
            }
            _ => self.prepare(ctx, image, single_message(conversation, drop_query)?, false, budget),
        }
    }
}

fn prepare_imgque_conversation(
    ctx: &Forward,
    p: &ImgQuePipeline,
    image: Option<&RgbImage>,
    conversation: &Conversation,
    budget: &VisionBudget,
    drop_query: bool,
    resolve_budget: BudgetResolver,
) -> Result<(Prepared, Option<ImgQueTrace>)> {
    let conversation = conversation.clone();
    let Some(image) = image else {
        let record = p.parser_with(p.trained_tokens().0, p.trained_tokens().1, drop_query)?.parse(
            &p.tokenizer,
            &p.clip_tokenizer,
            &conversation,
            false,
        )?;
        let ids =
            Tensor::new(record.llm.input_ids.as_slice(), p.model.llm.device())?.unsqueeze(0)?;
        let embeds = p.model.llm.embed(&ids)?;
        let text = p.template.prompt(&conversation, false)?;
        let prepared = Prepared {
            input_ids: record.llm.input_ids,
            pixel_values: None,
            embeds,
            prompt: text,
            vision_tokens: 0,
            prune: None,
            vision_positions: Vec::new(),
        };
        return Ok((prepared, None));
    };
    let (n_l, n_s) = resolve_budget(p, budget)?;
    let (pixel_values, crop_tokens) = p.encode_views(ctx, image)?;
    let inputs = p.embeddings_with(ctx, &crop_tokens, &conversation, n_l, n_s, drop_query)?;
    let prepared = Prepared {
        vision_positions: positions_where(&inputs.record.llm.input_tps, |t| {
            t & crate::chat::token_type::QED != 0
        }),
        input_ids: inputs.record.llm.input_ids,
        pixel_values: Some(pixel_values),
        embeds: inputs.embeds,
        prompt: p.template.prompt(&conversation, false)?,
        vision_tokens: inputs.vision_tokens,
        prune: None,
    };
    Ok((prepared, Some(ImgQueTrace { crop_tokens, query_states: inputs.query_states })))
}

impl Runtime {
    /// One forward pass over prepared inputs from an empty cache, applying FastV's pruning when
    /// the budget asked for it (then `logits`/later hidden states cover the surviving positions).
    pub fn forward(
        &self,
        ctx: &Forward,
        prepared: &Prepared,
        options: ForwardOptions,
    ) -> Result<LlamaOutput> {
        let llm = self.llm();
        let mut cache = llm.new_cache();
        match &prepared.prune {
            Some(prune) => Ok(llm
                .forward_embeds_pruned(ctx, &prepared.embeds, &mut cache, options, prune)?
                .output),
            None => llm.forward_embeds(ctx, &prepared.embeds, &mut cache, options),
        }
    }

    /// Generates after prepared inputs (FastV-pruned prefill when asked), streaming tokens.
    pub fn generate(
        &self,
        ctx: &Forward,
        prepared: &Prepared,
        config: &GenerationConfig,
        on_token: impl FnMut(u32) -> Result<()>,
    ) -> Result<Vec<u32>> {
        generate_pruned(
            ctx,
            self.llm(),
            &prepared.embeds,
            prepared.prune.as_ref(),
            config,
            on_token,
        )
    }
}
