//! tokenscale-answer: the runtime's vision-language models as sweep [`Answerer`]s. It sits above
//! `tokenscale-model` and `tokenscale-eval` so that neither knows the other: the evaluator talks
//! to the `Answerer` trait only, and the command line and `tokenscale-reproduce` pick this
//! implementation.
//!
//! The image work that does not depend on n (LLaVA: CLIP features, plus VisionZip's attention;
//! query-fused model: HD crops through the vision tower) is done once per image and reused for
//! every n.

#![warn(missing_docs)]

use std::path::Path;
use tokenscale_model::Forward;

use anyhow::{bail, Context, Result};
use tokenscale_model::chat::Conversation;
use tokenscale_model::dtype::DtypePolicy;
use tokenscale_model::generation::{generate_pruned, GenerationConfig};
use tokenscale_model::llava::VisionCache;
use tokenscale_model::reduce::Reducer;
use tokenscale_model::runtime::Runtime;
use tokenscale_model::{Device, Tensor};

use tokenscale_eval::prompt::{llava_chat, PromptStyle};
use tokenscale_eval::sweep::Answerer;

/// A loaded LLaVA or query-fused checkpoint answering benchmark items for the sweep,
/// with an optional vision-token reducer (LLaVA only).
pub struct ModelAnswerer {
    runtime: Runtime,
    name: String,
    reducer: Option<Reducer>,
}

/// An image encoded once by [`ModelAnswerer`], reused for every budget n of the sweep.
pub enum PreparedImage {
    /// LLaVA: the vision tower's output cache and the preprocessed pixels.
    Llava {
        /// The encoded image (vision-tower features) that every budget is reduced from.
        cache: VisionCache,
        /// The preprocessed pixel tensor, kept for reducers that re-read the image.
        pixel_values: Tensor,
    },
    /// Query-fused model: the encoded crop tokens, before the query selection by n.
    ImgQue {
        /// The image's encoded crop tokens, from which n query tokens are taken per budget.
        crop_tokens: Tensor,
    },
}

impl ModelAnswerer {
    /// Loads a LLaVA or query-fused checkpoint. LLaVA needs `reducer` for budgets below its
    /// native count; the query-fused model takes n as n_l (n_s = min(trained n_s, n)). `dtype`
    /// picks the compute dtype (`DtypePolicy::Auto`: the checkpoint's storage dtype).
    pub fn load(
        dir: &Path,
        reducer: Option<&str>,
        template: Option<&str>,
        drop_query: bool,
        dtype: DtypePolicy,
    ) -> Result<Self> {
        let mut runtime = Runtime::open(dir, dtype, &Device::Cpu)?.runtime;
        tokenscale_model::runtime::configure_imgque(&mut runtime, template, drop_query)?;
        let reducer = reducer.map(Reducer::parse).transpose()?;
        match &runtime {
            Runtime::Llava(_) => {}
            Runtime::ImgQue(_) if reducer.is_some() => bail!(
                "{}: a reducer applies to LLaVA models, not to the query-fused model",
                dir.display()
            ),
            Runtime::ImgQue(_) => {}
            Runtime::Lm { .. } => {
                bail!("{}: a text-only model cannot answer image benchmarks", dir.display())
            }
        }
        let mut name = tokenscale_model::hub::model_name(dir);
        if drop_query {
            name.push_str("+dropquery");
        }
        Ok(Self { runtime, name, reducer })
    }

    /// The budgets this model can serve, for a clear error before a sweep starts.
    pub fn check_budgets(&self, budgets: &[usize]) -> Result<()> {
        for &n in budgets {
            match &self.runtime {
                Runtime::Llava(p) => {
                    let native = p.model.config.image_tokens();
                    if n != native && self.reducer.is_none() {
                        bail!("vision budget: {n} of LLaVA's {native} vision tokens needs a reducer (pool, uniform, visionzip, fastv, fastv:K)");
                    }
                    tokenscale_model::reduce::check_budget(n, native)?;
                }
                Runtime::ImgQue(p) => {
                    p.parser(n, p.trained_tokens().1.min(n))?;
                }
                Runtime::Lm { .. } => unreachable!("rejected at load"),
            }
        }
        Ok(())
    }

    fn generation(&self, max_new_tokens: usize) -> GenerationConfig {
        GenerationConfig {
            max_new_tokens,
            stop_tokens: self.runtime.stop_tokens(),
            ..Default::default()
        }
    }
}

fn single_image(images: &[image::DynamicImage]) -> Result<image::RgbImage> {
    match images {
        [one] => Ok(one.to_rgb8()),
        [] => bail!("this model needs an image, the item has none"),
        many => bail!("multi-image items ({} images) are not supported by this model", many.len()),
    }
}

impl Answerer for ModelAnswerer {
    type Prepared = PreparedImage;

    fn model_name(&self) -> String {
        self.name.clone()
    }

    fn reducer(&self) -> String {
        match (&self.runtime, &self.reducer) {
            (_, Some(r)) => r.name(),
            (Runtime::ImgQue(_), None) => "queries".into(),
            _ => "default".into(),
        }
    }

    fn prompt_style(&self) -> PromptStyle {
        match self.runtime {
            Runtime::Llava(_) => PromptStyle::Llava,
            _ => PromptStyle::Default,
        }
    }

    fn prepare_image(&mut self, images: &[image::DynamicImage]) -> Result<PreparedImage> {
        let image = single_image(images)?;
        match &self.runtime {
            Runtime::Llava(p) => {
                let pixel_values = p.pixel_values(&image)?;
                let cache = p.model.encode_image(
                    &Forward::INFERENCE,
                    &pixel_values,
                    self.reducer.unwrap_or(Reducer::Pool),
                )?;
                Ok(PreparedImage::Llava { cache, pixel_values })
            }
            Runtime::ImgQue(p) => Ok(PreparedImage::ImgQue {
                crop_tokens: p.encode_image(&Forward::INFERENCE, &image)?,
            }),
            Runtime::Lm { .. } => unreachable!("rejected at load"),
        }
    }

    fn answer(
        &mut self,
        prepared: &PreparedImage,
        prompt: &str,
        n: usize,
        max_new_tokens: usize,
    ) -> Result<String> {
        let config = self.generation(max_new_tokens);
        let tokens = match (&self.runtime, prepared) {
            (Runtime::Llava(p), PreparedImage::Llava { cache, pixel_values }) => {
                let reducer = self.reducer.unwrap_or(Reducer::Pool);
                let inputs = p.budget_inputs(
                    &Forward::INFERENCE,
                    cache,
                    pixel_values.clone(),
                    &llava_chat(prompt, 1),
                    n,
                    reducer,
                )?;
                generate_pruned(
                    &Forward::INFERENCE,
                    &p.model.llm,
                    &inputs.embeds,
                    inputs.prune.as_ref(),
                    &config,
                    |_| Ok(()),
                )?
            }
            (Runtime::ImgQue(p), PreparedImage::ImgQue { crop_tokens }) => {
                let conversation = Conversation::new().user(prompt).for_generation();
                let inputs = p.embeddings(
                    &Forward::INFERENCE,
                    crop_tokens,
                    &conversation,
                    n,
                    p.trained_tokens().1.min(n),
                )?;
                generate_pruned(
                    &Forward::INFERENCE,
                    &p.model.llm,
                    &inputs.embeds,
                    None,
                    &config,
                    |_| Ok(()),
                )?
            }
            _ => bail!("prepared image does not belong to this model"),
        };
        let text = self.runtime.tokenizer().decode(&tokens, true).context("decoding the answer")?;
        Ok(text.trim().to_string())
    }
}
