//! The scheduler: one thread owns the decoding. Between two decode steps it admits waiting
//! requests, prefills at most one chunk of one new prompt (chunked prefill: a long prompt never
//! stalls the running answers for more than one chunk), then decodes one token for every
//! running sequence in one batched step (`Llama::decode_step`: one product per layer for the
//! whole batch). Requests join and leave between steps; a request whose client went away is
//! dropped at the next step, freeing its slot.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;
use tokenscale_model::{Forward, ForwardOptions};

use anyhow::Result;
use tokenscale_model::generation::{GenerationConfig, Sampler};
use tokenscale_model::llama::{KvCache, Llama};
use tokenscale_model::runtime::{Prepared, Runtime};
use tokenscale_model::Tensor;
use tokio::sync::mpsc::UnboundedSender;

use crate::admission::Admission;
use crate::fault::{FaultPlan, FaultPoint};
use crate::metrics::Metrics;
use crate::text::AnswerText;

/// Why an answer ended (OpenAI's `finish_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its answer (end-of-answer token or a stop sequence).
    Stop,
    /// The answer reached `max_tokens`.
    Length,
}

impl Finish {
    /// OpenAI's spelling: `stop` or `length`.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// What the engine tells a request's handler.
#[derive(Debug)]
pub enum Event {
    /// More answer text, safe to send (no part of a stop sequence).
    Text(String),
    /// The answer is complete; no event follows.
    Done {
        /// Why the answer ended.
        finish: Finish,
        /// Answer tokens generated (for the usage).
        completion_tokens: usize,
    },
    /// Generation failed with this message; no event follows.
    Failed(String),
}

/// One request for the engine.
pub struct Job {
    /// The request's prompt and image, already encoded for the runtime.
    pub prepared: Prepared,
    /// Decoding settings (token limit, sampling, stop tokens).
    pub config: GenerationConfig,
    /// Stop sequences: the answer ends before the first one found (at most 4).
    pub stop: Vec<String>,
    /// Where the engine sends this request's events; a closed channel abandons the job.
    pub events: UnboundedSender<Event>,
    /// When the request arrived (time to first token is measured from here).
    pub arrived: Instant,
    /// Held until the job is dropped: the request's place in the server's capacity.
    pub admission: Admission,
}

/// Submits jobs to the running engine; cheap to clone, one per handler.
#[derive(Clone)]
pub struct EngineHandle {
    jobs: mpsc::Sender<Job>,
}

impl EngineHandle {
    /// Hands a job to the engine; `Err` gives it back when the engine has stopped.
    pub fn submit(&self, job: Job) -> Result<(), Box<Job>> {
        self.jobs.send(job).map_err(|e| Box::new(e.0))
    }
}

/// How the engine batches.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Most sequences decoding together in one batched step (≥ 1).
    pub max_batch: usize,
    /// Prompt positions prefilled between two decode steps (chunked prefill, ≥ 1).
    pub prefill_chunk: usize,
    /// Faults to inject (tests of the failure paths; empty otherwise).
    pub faults: FaultPlan,
}

/// Starts the engine thread; it ends when every handle is dropped and its work is done.
pub fn spawn(
    runtime: Arc<Runtime>,
    options: EngineOptions,
    metrics: Arc<Metrics>,
) -> Result<(EngineHandle, std::thread::JoinHandle<()>)> {
    let (jobs, inbox) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("tokenscale-engine".into())
        .spawn(move || Engine::new(&runtime, options, &metrics).run(inbox))?;
    Ok((EngineHandle { jobs }, thread))
}

/// A request on its way: prefilling, then decoding.
struct Sequence<'a> {
    job: Job,
    cache: KvCache,
    sampler: Sampler,
    text: AnswerText<'a>,
    /// Prompt positions prefilled so far.
    prefilled: usize,
    generated: usize,
    /// The token to feed at the next decode step.
    last: u32,
}

struct Engine<'a> {
    runtime: &'a Runtime,
    llm: &'a Llama,
    options: EngineOptions,
    metrics: &'a Metrics,
    waiting: VecDeque<Job>,
    prefilling: Option<Sequence<'a>>,
    running: Vec<Sequence<'a>>,
}

/// Runs `work`, turning a panic into an error so that one bad step fails its requests, not the
/// server.
fn guarded<T>(work: impl FnOnce() -> Result<T>) -> Result<T, String> {
    match std::panic::catch_unwind(AssertUnwindSafe(work)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            Err(format!(
                "internal error: {}",
                what.unwrap_or_else(|| "a panic without a message".into())
            ))
        }
    }
}

impl<'a> Engine<'a> {
    fn new(runtime: &'a Runtime, options: EngineOptions, metrics: &'a Metrics) -> Self {
        Self {
            runtime,
            llm: runtime.llm(),
            options,
            metrics,
            waiting: VecDeque::new(),
            prefilling: None,
            running: Vec::new(),
        }
    }

    fn run(mut self, inbox: mpsc::Receiver<Job>) {
        loop {
            if self.waiting.is_empty() && self.prefilling.is_none() && self.running.is_empty() {
                self.publish();
                match inbox.recv() {
                    Ok(job) => self.waiting.push_back(job),
                    Err(_) => return, // every handle dropped and nothing left to do
                }
            }
            self.waiting.extend(inbox.try_iter());
            self.drop_abandoned();
            self.admit();
            self.publish();
            self.prefill_one_chunk();
            self.decode_one_step();
        }
    }

    fn publish(&self) {
        self.metrics.queue_depth.set(self.waiting.len() as i64);
        self.metrics
            .running
            .set((self.running.len() + usize::from(self.prefilling.is_some())) as i64);
    }

    /// Requests whose client disconnected free their place now.
    fn drop_abandoned(&mut self) {
        let before =
            self.waiting.len() + self.running.len() + usize::from(self.prefilling.is_some());
        self.waiting.retain(|job| !job.events.is_closed());
        self.running.retain(|s| !s.job.events.is_closed());
        if self.prefilling.as_ref().is_some_and(|s| s.job.events.is_closed()) {
            self.prefilling = None;
        }
        let after =
            self.waiting.len() + self.running.len() + usize::from(self.prefilling.is_some());
        self.metrics.abandoned.inc_by((before - after) as u64);
    }

    /// Starts prefilling the next waiting request when a decode slot is free.
    fn admit(&mut self) {
        if self.prefilling.is_some() || self.running.len() >= self.options.max_batch {
            return;
        }
        let Some(job) = self.waiting.pop_front() else { return };
        let positions = job.prepared.embeds.dim(1).unwrap_or(0) + job.config.max_new_tokens;
        self.prefilling = Some(Sequence {
            cache: self.llm.new_cache_for(positions),
            sampler: Sampler::new(&job.config),
            text: AnswerText::new(self.runtime.tokenizer(), job.stop.clone()),
            prefilled: 0,
            generated: 0,
            last: 0,
            job,
        });
    }

    /// One chunk of the prompt being prefilled; after its last chunk the first answer token is
    /// chosen and the sequence joins the decode batch. FastV-pruned prompts are prefilled in one
    /// piece (the pruning needs the whole prompt's attention at layer K).
    fn prefill_one_chunk(&mut self) {
        let Some(mut seq) = self.prefilling.take() else { return };
        let (llm, chunk, faults) = (self.llm, self.options.prefill_chunk, &self.options.faults);
        let outcome = guarded(|| {
            faults.check(FaultPoint::Prefill, &seq.job.prepared.prompt);
            let embeds = &seq.job.prepared.embeds;
            let total = embeds.dim(1)?;
            if let Some(prune) = &seq.job.prepared.prune {
                seq.prefilled = total;
                return Ok(Some(
                    llm.forward_embeds_pruned(
                        &Forward::INFERENCE,
                        embeds,
                        &mut seq.cache,
                        ForwardOptions::LAST,
                        prune,
                    )?
                    .output
                    .logits,
                ));
            }
            let len = chunk.min(total - seq.prefilled);
            let logits = llm
                .forward_embeds(
                    &Forward::INFERENCE,
                    &embeds.narrow(1, seq.prefilled, len)?,
                    &mut seq.cache,
                    ForwardOptions::LAST,
                )?
                .logits;
            seq.prefilled += len;
            Ok((seq.prefilled == total).then_some(logits))
        });
        match outcome {
            Ok(None) => self.prefilling = Some(seq),
            Ok(Some(logits)) => {
                if let Some(seq) = self.accept(seq, &logits) {
                    self.running.push(seq);
                }
            }
            Err(message) => fail(seq, message),
        }
    }

    fn decode_one_step(&mut self) {
        if self.running.is_empty() {
            return;
        }
        let started = Instant::now();
        let tokens: Vec<u32> = self.running.iter().map(|s| s.last).collect();
        let (llm, faults) = (self.llm, &self.options.faults);
        let outcome = guarded(|| {
            for seq in &self.running {
                faults.check(FaultPoint::DecodeStep, &seq.job.prepared.prompt);
            }
            let mut caches: Vec<&mut KvCache> =
                self.running.iter_mut().map(|s| &mut s.cache).collect();
            llm.decode_step(&Forward::INFERENCE, &tokens, &mut caches)
        });
        let running = std::mem::take(&mut self.running);
        match outcome {
            Ok(logits) => {
                let seconds = started.elapsed().as_secs_f64();
                self.metrics.decode_tokens_per_s.set(tokens.len() as f64 / seconds.max(1e-9));
                for (row, seq) in running.into_iter().enumerate() {
                    match logits.get(row) {
                        Ok(row_logits) => {
                            if let Some(seq) = self.accept(seq, &row_logits) {
                                self.running.push(seq);
                            }
                        }
                        Err(e) => fail(seq, e.to_string()),
                    }
                }
            }
            Err(message) => running.into_iter().for_each(|seq| fail(seq, message.clone())),
        }
    }

    /// Picks the next token from `logits` and sends its text; the sequence comes back when it
    /// goes on, `None` when it ended (its events say how).
    fn accept(&self, mut seq: Sequence<'a>, logits: &Tensor) -> Option<Sequence<'a>> {
        let step = guarded(|| {
            let token = seq.sampler.sample(&logits.flatten_all()?)?;
            seq.generated += 1;
            if seq.generated == 1 {
                self.metrics.time_to_first_token.observe(seq.job.arrived.elapsed().as_secs_f64());
            }
            self.metrics.generated_tokens.inc();
            if seq.job.config.stop_tokens.contains(&token) {
                return Ok((String::new(), Some(Finish::Stop), token));
            }
            let (mut text, stopped) = seq.text.push(token)?;
            let finish = if stopped {
                Some(Finish::Stop)
            } else if seq.generated >= seq.job.config.max_new_tokens {
                text.push_str(&seq.text.finish());
                Some(Finish::Length)
            } else {
                None
            };
            Ok((text, finish, token))
        });
        match step {
            Ok((text, finish, token)) => {
                // One chunk per token, as OpenAI streams (its text may be empty: a token can
                // complete no character yet), so a client sees each token arrive.
                if !text.is_empty() || finish.is_none() {
                    let _ = seq.job.events.send(Event::Text(text));
                }
                match finish {
                    Some(finish) => {
                        let _ = seq
                            .job
                            .events
                            .send(Event::Done { finish, completion_tokens: seq.generated });
                        None
                    }
                    None => {
                        seq.last = token;
                        Some(seq)
                    }
                }
            }
            Err(message) => {
                fail(seq, message);
                None
            }
        }
    }
}

fn fail(seq: Sequence<'_>, message: String) {
    let _ = seq.job.events.send(Event::Failed(message));
}
