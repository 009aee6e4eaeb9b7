//! The training loop: seeded batches of synthetic examples, a vision-token budget n drawn per
//! example (nested queries: one checkpoint serves every n ≤ n_max), the loss of `losses`, AdamW
//! on the schedule of `schedule`, checkpoints every K steps that a killed run resumes from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use tokenscale_model::chat::Conversation;
use tokenscale_model::generation::{generate, GenerationConfig};
use tokenscale_model::imgque_pipeline::ImgQuePipeline;
use tokenscale_model::weights::Weights;
use tokenscale_model::Forward;

use crate::batch::{batch_gradients, BatchSums};
use crate::checkpoint::{latest_checkpoint, write_checkpoint, Checkpoint};
use crate::config::TrainConfig;
use crate::data::{Example, ExampleSource};
use crate::logging::{LossRow, ValidationRow};
use crate::losses::registry::is_head_parameter;
use crate::losses::{example_loss, ExampleLoss};
use crate::optim::{AdamW, AdamWConfig};
use crate::start::starting_parameters;

/// A run in progress: the model being trained, its optimiser state and what it has recorded.
pub struct Trainer<'a> {
    /// The run's settings (equal to those of the checkpoint it resumed from).
    pub config: TrainConfig,
    /// The run's folder: `model/`, `checkpoints/`, `loss.csv`, `validation.csv`.
    pub out: PathBuf,
    source: &'a dyn ExampleSource,
    pipeline: ImgQuePipeline,
    params: HashMap<String, Var>,
    optimizer: AdamW,
    /// One row per step taken, the resumed run's earlier steps included.
    pub history: Vec<LossRow>,
    /// One row per validation pass.
    pub validation: Vec<ValidationRow>,
    /// Optimiser steps taken so far.
    pub step: u64,
}

/// The model folder of run `out`: what the run ships (no auxiliary heads).
fn model_dir(out: &Path) -> PathBuf {
    out.join("model")
}

impl<'a> Trainer<'a> {
    /// A new run in `out`, or the continuation of the run whose latest checkpoint is there.
    pub fn open(out: &Path, config: TrainConfig, source: &'a dyn ExampleSource) -> Result<Self> {
        config.validate("training config")?;
        let resumed = latest_checkpoint(out)?;
        let (files_dir, tensors, state) = match &resumed {
            Some(ck) => {
                if ck.config != config {
                    bail!(
                        "{}: holds a run with a different configuration (delete the folder or use the same config)",
                        ck.dir.display()
                    );
                }
                let tensors =
                    candle_core::safetensors::load(ck.dir.join("model.safetensors"), &Device::Cpu)
                        .with_context(|| {
                            format!("{}: cannot read model.safetensors", ck.dir.display())
                        })?;
                (ck.dir.clone(), tensors, Some(ck))
            }
            None => {
                let dir = model_dir(out);
                let tensors = starting_parameters(&dir, &config, source)?;
                (dir, tensors, None)
            }
        };
        let mut params = HashMap::new();
        for (k, t) in tensors {
            params.insert(k, Var::from_tensor(&t.to_dtype(DType::F32)?)?);
        }
        let shared = params.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
        let weights = Weights::from_tensors(shared, "model in training", &Device::Cpu);
        let pipeline = ImgQuePipeline::load_with_weights(&files_dir, &weights)?;
        let adam = AdamWConfig { weight_decay: config.weight_decay, ..Default::default() };
        let mut optimizer = AdamW::new(&params, adam)?;
        let mut trainer_state = (Vec::new(), Vec::new(), 0);
        if let Some(ck) = state {
            let saved =
                candle_core::safetensors::load(ck.dir.join("optimizer.safetensors"), &Device::Cpu)
                    .with_context(|| {
                        format!("{}: cannot read optimizer.safetensors", ck.dir.display())
                    })?;
            optimizer.load_state(
                &saved,
                ck.step,
                &ck.dir.join("optimizer.safetensors").display().to_string(),
            )?;
            trainer_state = (ck.history.clone(), ck.validation.clone(), ck.step);
        }
        let (history, validation, step) = trainer_state;
        Ok(Self {
            config,
            out: out.to_path_buf(),
            source,
            pipeline,
            params,
            optimizer,
            history,
            validation,
            step,
        })
    }

    /// The model being trained, loaded as every subcommand loads the query-fused model.
    pub fn pipeline(&self) -> &ImgQuePipeline {
        &self.pipeline
    }

    /// Forward and backward of examples `range` of batch `step` on the calling thread: the
    /// gradients of their summed (not yet averaged) loss, the summed loss, answer tokens and budgets.
    fn shard(&self, step: u64, range: std::ops::Range<usize>) -> Result<(GradStore, BatchSums)> {
        let mut total: Option<Tensor> = None;
        let mut sums = BatchSums::default();
        for j in range {
            let index = step * self.config.batch as u64 + j as u64;
            let example = self.source.example(index)?;
            let n = self.config.vision_tokens(step, j);
            let ExampleLoss { loss, answer_tokens, answer, aux } =
                example_loss(&self.pipeline, &self.params, &self.config, &example, n)?;
            total = Some(match total {
                Some(t) => (t + loss)?,
                None => loss,
            });
            sums.add(&BatchSums { answer, aux, tokens: answer_tokens, budget: n });
        }
        let grads = total.context("empty shard")?.backward()?;
        Ok((grads, sums))
    }

    /// One optimiser step on batch `self.step`; returns its loss.csv row.
    pub fn train_step(&mut self) -> Result<LossRow> {
        let started = Instant::now();
        let step = self.step;
        let batch = self.config.batch;
        let this = &*self;
        let (mut grads, sums) =
            batch_gradients(batch, &self.params, |range| this.shard(step, range))?;
        let tokens = sums.tokens;
        for var in self.params.values() {
            if let Some(g) = grads.remove(var.as_tensor()) {
                grads.insert(var.as_tensor(), (g / tokens as f64)?);
            }
        }
        let lr = self.config.learning_rate(step);
        self.optimizer.step(&grads, lr)?;
        self.step += 1;
        let row = LossRow {
            step: self.step,
            loss: sums.answer / tokens as f64,
            aux_loss: sums.aux.iter().sum::<f64>() / batch as f64,
            aux_terms: sums.aux.map(|v| v / batch as f64),
            lr,
            mean_vision_tokens: sums.budget as f64 / batch as f64,
            seconds: started.elapsed().as_secs_f64(),
        };
        self.history.push(row.clone());
        Ok(row)
    }

    /// Greedy answer of the current model.
    pub fn answer(&self, example: &Example, n: usize) -> Result<String> {
        let p = &self.pipeline;
        let crops = p.encode_image(&Forward::INFERENCE, &example.image)?;
        let conv = Conversation::new().user(example.prompt.clone()).for_generation();
        let inputs = p.embeddings(&Forward::INFERENCE, &crops, &conv, n, n)?;
        let config = GenerationConfig {
            max_new_tokens: 4,
            stop_tokens: p.stop_tokens(),
            ..Default::default()
        };
        let mut tokens =
            generate(&Forward::INFERENCE, &p.model.llm, &inputs.embeds, &config, |_| Ok(()))?;
        if tokens.last().is_some_and(|t| config.stop_tokens.contains(t)) {
            tokens.pop();
        }
        p.tokenizer.decode(&tokens, true)
    }

    /// Exact-match accuracy on the first `validation_items` validation examples at budget n.
    pub fn validate(&mut self, n: usize) -> Result<f64> {
        let items = self.config.validation_items;
        if items == 0 {
            return Ok(f64::NAN);
        }
        let mut right = 0usize;
        for i in 0..items as u64 {
            let example = self.source.validation_example(i)?;
            if self.answer(&example, n)?.trim() == example.answer.trim() {
                right += 1;
            }
        }
        let accuracy = right as f64 / items as f64;
        self.validation.push(ValidationRow { step: self.step, vision_tokens: n, accuracy });
        Ok(accuracy)
    }

    /// Every trained tensor, the auxiliary head's included (checkpoints keep it for resuming).
    pub fn parameters(&self) -> HashMap<String, Tensor> {
        self.params.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect()
    }

    /// The model's own tensors: what `out/model/model.safetensors` ships.
    pub fn model_parameters(&self) -> HashMap<String, Tensor> {
        self.parameters().into_iter().filter(|(k, _)| !is_head_parameter(k)).collect()
    }

    /// Writes a checkpoint of the current step (model folder, optimiser state, history) and
    /// refreshes `out/model/` and `out/loss.csv`.
    pub fn checkpoint(&self) -> Result<PathBuf> {
        let ck = Checkpoint {
            dir: PathBuf::new(),
            step: self.step,
            config: self.config.clone(),
            history: self.history.clone(),
            validation: self.validation.clone(),
        };
        write_checkpoint(
            &self.out,
            &model_dir(&self.out),
            &ck,
            &self.parameters(),
            &self.model_parameters(),
            &self.optimizer.state_tensors(),
        )
    }
}
