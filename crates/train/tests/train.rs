//! The trainer on a toy task (name the colour of a plain image): it writes a checkpoint folder
//! the runtime loads, its optimiser equals candle-nn's AdamW, loss falls, and a run stopped and
//! resumed from a checkpoint ends bit-identical to an uninterrupted one.

use std::collections::{BTreeSet, HashMap};

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::Optimizer;
use image::{Rgb, RgbImage};
use tokenscale_model::imgque_pipeline::ImgQuePipeline;
use tokenscale_model::{AttentionCapture, Forward, ForwardOptions};
use tokenscale_train::data::{Example, ExampleSource};
use tokenscale_train::optim::{AdamW, AdamWConfig};
use tokenscale_train::tiny::{words_of, TinyShape};
use tokenscale_train::{TrainConfig, Trainer};

const COLOURS: [(&str, [u8; 3]); 3] =
    [("red", [220, 20, 20]), ("green", [20, 200, 20]), ("blue", [20, 20, 220])];
const PROMPT: &str = "What colour is the image?";

struct Plain;

impl Plain {
    fn make(index: u64) -> Example {
        let (name, rgb) = COLOURS[(index % 3) as usize];
        Example {
            image: RgbImage::from_pixel(24, 24, Rgb(rgb)),
            prompt: PROMPT.into(),
            answer: name.into(),
            cells: Vec::new(),
            answer_cell: None,
            asked_cell: None,
            anchor_cell: None,
            counted_cells: None,
            summary: None,
            asks_summary: false,
        }
    }
}

impl ExampleSource for Plain {
    fn example(&self, index: u64) -> Result<Example> {
        Ok(Self::make(index * 7 + 1))
    }
    fn validation_example(&self, index: u64) -> Result<Example> {
        Ok(Self::make(index))
    }
    fn words(&self) -> BTreeSet<String> {
        let mut words = BTreeSet::new();
        words_of(&format!("{PROMPT} USER: ASSISTANT: red green blue"), &mut words);
        words
    }
}

fn toy_config(steps: u64) -> TrainConfig {
    TrainConfig {
        model: TinyShape {
            crop: 16,
            patch: 4,
            num_crops: 1,
            vision_hidden: 64,
            vision_intermediate: 64,
            vision_layers: 1,
            vision_heads: 1,
            decoder_layers: 1,
            max_vision_tokens: 4,
            llm_hidden: 64,
            llm_intermediate: 64,
            llm_layers: 2,
            llm_heads: 2,
            llm_max_positions: 64,
        },
        steps,
        batch: 3,
        lr: 1e-3,
        min_lr: 1e-4,
        warmup: 2,
        checkpoint_every: 2,
        validation_items: 3,
        ..Default::default()
    }
}

#[test]
fn checkpoint_loads_in_the_runtime_and_loss_falls() {
    let out = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::open(out.path(), toy_config(200), &Plain).unwrap();
    let first = trainer.train_step().unwrap().loss;
    let mut last = first;
    for _ in 1..200 {
        last = trainer.train_step().unwrap().loss;
    }
    assert!(last < 0.3 * first, "loss {first} → {last}");
    assert_eq!(trainer.validate(4).unwrap(), 1.0, "the toy task is learnt");
    trainer.checkpoint().unwrap();
    let model = out.path().join("model");
    let pipe = ImgQuePipeline::load(&model, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(pipe.trained_tokens(), (4, 4));
    let csv = std::fs::read_to_string(out.path().join("loss.csv")).unwrap();
    assert_eq!(csv.lines().count(), 201, "header + one row per step");
}

#[test]
fn a_resumed_run_equals_an_uninterrupted_one() {
    let straight = tempfile::tempdir().unwrap();
    let mut a = Trainer::open(straight.path(), toy_config(4), &Plain).unwrap();
    for _ in 0..4 {
        a.train_step().unwrap();
    }
    let resumed = tempfile::tempdir().unwrap();
    {
        let mut b = Trainer::open(resumed.path(), toy_config(4), &Plain).unwrap();
        b.train_step().unwrap();
        b.train_step().unwrap();
        b.checkpoint().unwrap();
        b.train_step().unwrap(); // lost: the "kill" comes before the next checkpoint
    }
    let mut b = Trainer::open(resumed.path(), toy_config(4), &Plain).unwrap();
    assert_eq!(b.step, 2);
    b.train_step().unwrap();
    b.train_step().unwrap();
    let (pa, pb) = (a.parameters(), b.parameters());
    for (k, ta) in &pa {
        let diff = (ta - &pb[k])
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0, "{k} differs after resuming");
    }
    assert_eq!(
        a.history.iter().map(|r| r.loss).collect::<Vec<_>>(),
        b.history.iter().map(|r| r.loss).collect::<Vec<_>>()
    );
    let mut other = toy_config(4);
    other.lr = 5e-3;
    let err = Trainer::open(resumed.path(), other, &Plain).err().unwrap().to_string();
    assert!(err.contains("different configuration"), "{err}");
}

#[test]
fn adamw_equals_candle_nn_on_matrices() {
    let init: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
    let target = Tensor::from_vec(
        (0..12).map(|i| i as f32 / 12.0).collect::<Vec<_>>(),
        (3, 4),
        &Device::Cpu,
    )
    .unwrap();
    let ours =
        Var::from_tensor(&Tensor::from_vec(init.clone(), (3, 4), &Device::Cpu).unwrap()).unwrap();
    let theirs = Var::from_tensor(&Tensor::from_vec(init, (3, 4), &Device::Cpu).unwrap()).unwrap();
    let config = AdamWConfig { weight_decay: 0.1, ..Default::default() };
    let mut opt =
        AdamW::new(&HashMap::from([("w".to_string(), ours.clone())]), config.clone()).unwrap();
    let params = candle_nn::ParamsAdamW {
        lr: 0.05,
        beta1: config.beta1,
        beta2: config.beta2,
        eps: config.eps,
        weight_decay: 0.1,
    };
    let mut reference = candle_nn::AdamW::new(vec![theirs.clone()], params).unwrap();
    for _ in 0..5 {
        let loss = (ours.as_tensor() - &target).unwrap().sqr().unwrap().sum_all().unwrap();
        opt.step(&loss.backward().unwrap(), 0.05).unwrap();
        let loss = (theirs.as_tensor() - &target).unwrap().sqr().unwrap().sum_all().unwrap();
        reference.backward_step(&loss).unwrap();
    }
    let diff = (ours.as_tensor() - theirs.as_tensor())
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
}

#[test]
fn the_auxiliary_heads_train_but_are_not_shipped() {
    use tokenscale_train::data::SynthSource;
    let source = SynthSource { mix: Default::default() };
    let mut config = toy_config(2);
    config.model.crop = 32; // 8×8 patches → a 4×4 merged grid, one token per scene cell
    config.aux_cell_weight = 1.0;
    config.aux_slot_weight = 0.5;
    config.aux_routed_weight = 0.5;
    config.routed_from_slot = 1;
    config.aux_query_weight = 0.5;
    config.aux_query_layer = 1;
    config.aux_prev_weight = 0.5;
    config.aux_summary_weight = 0.5;
    config.validation_items = 0;
    let out = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::open(out.path(), config.clone(), &source).unwrap();
    let values =
        |t: &Trainer, k: &str| t.parameters()[k].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let heads = [
        "aux_cells.weight",
        "aux_slots.weight",
        "aux_routed.weight",
        "aux_query.weight",
        "aux_prev.weight",
        "aux_summary.weight",
    ];
    let before = heads.map(|k| values(&trainer, k));
    trainer.train_step().unwrap();
    let row = trainer.train_step().unwrap();
    assert!(row.aux_loss > 0.0 && row.loss > 0.0, "{row:?}");
    assert!((row.aux_terms.iter().sum::<f64>() - row.aux_loss).abs() < 1e-9, "{row:?}");
    assert!(
        row.aux_terms[0] > 0.0 && row.aux_terms[5] == 0.0,
        "the cell head is on, the attention loss off: {row:?}"
    );
    assert!(row.aux_terms[8] > 0.0, "the summary head is on: {row:?}");
    let after = heads.map(|k| values(&trainer, k));
    for (k, (b, a)) in heads.iter().zip(before.iter().zip(&after)) {
        assert_ne!(b, a, "{k} gets gradients");
    }
    let ck = trainer.checkpoint().unwrap();
    let csv = std::fs::read_to_string(out.path().join("loss.csv")).unwrap();
    assert!(csv.starts_with("step,loss,aux_loss,aux_cell,aux_slot,aux_routed,aux_query,aux_prev,aux_attend,aux_anchor,aux_count,aux_summary,aux_fetch,aux_llm_slot,aux_anchor_query,aux_early_answer,aux_anchor_fetch,lr,"), "{csv}");
    let shipped =
        candle_core::safetensors::load(out.path().join("model/model.safetensors"), &Device::Cpu)
            .unwrap();
    assert!(
        !shipped.keys().any(|k| k.starts_with("aux_")),
        "the model folder has no auxiliary tensors"
    );
    let kept = candle_core::safetensors::load(ck.join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(
        heads.iter().all(|k| kept.contains_key(*k)),
        "the checkpoint keeps the heads for resuming"
    );
    assert_eq!(Trainer::open(out.path(), config.clone(), &source).unwrap().step, 2);

    // A later stage that starts from the checkpoint folder inherits the trained heads; one that
    // starts from the model folder, or asks for fresh heads, gets fresh ones.
    let mut next = config.clone();
    next.seed = 99;
    for (from, fresh_heads, inherits) in [
        (ck.clone(), false, true),
        (out.path().join("model"), false, false),
        (ck.clone(), true, false),
    ] {
        next.init_from = Some(from);
        next.fresh_heads = fresh_heads;
        let stage = tempfile::tempdir().unwrap();
        let opened = Trainer::open(stage.path(), next.clone(), &source).unwrap();
        for (k, trained) in heads.iter().zip(&after) {
            assert_eq!(&values(&opened, k) == trained, inherits, "{k}");
        }
    }

    let mut mismatched = config;
    mismatched.model.crop = 16;
    let out = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::open(out.path(), mismatched, &source).unwrap();
    let err = trainer.train_step().err().unwrap().to_string();
    assert!(err.contains("one merged token per grid cell"), "{err}");
}

#[test]
fn a_deeper_model_starts_from_a_shallower_one_only_with_init_partial() {
    let out = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::open(out.path(), toy_config(1), &Plain).unwrap();
    trainer.train_step().unwrap();
    trainer.checkpoint().unwrap();
    let shallow = trainer.parameters();

    let mut deeper = toy_config(1);
    deeper.model.llm_layers = 3;
    deeper.init_from = Some(out.path().join("model"));
    let refused = tempfile::tempdir().unwrap();
    let err = Trainer::open(refused.path(), deeper.clone(), &Plain).err().unwrap().to_string();
    assert!(err.contains("missing tensor") && err.contains("layers.2"), "{err}");

    deeper.init_partial = true;
    deeper.model.crop = 24; // a 6×6 patch grid: position embeddings of another shape start fresh too
    let grown = tempfile::tempdir().unwrap();
    let params = Trainer::open(grown.path(), deeper, &Plain).unwrap().parameters();
    assert!(params.keys().any(|k| k.contains("layers.2.")), "the new layer is there");
    let positions = "imgque_backbone.clip_model.vision_model.embeddings.position_embedding.weight";
    assert_eq!(params[positions].dims(), [37, 64]);
    for (key, value) in shallow.iter().filter(|(k, _)| k.as_str() != positions) {
        let new = params[key].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(
            new,
            value.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            "{key} carried over"
        );
    }
}

#[test]
fn auxiliary_settings_outside_the_model_are_refused_by_name() {
    type Case = (fn(&mut TrainConfig), &'static str);
    let cases: [Case; 3] = [
        (|c| (c.aux_query_weight, c.aux_query_layer) = (1.0, 3), "aux_query_layer"),
        (|c| (c.aux_routed_weight, c.routed_from_slot) = (1.0, 4), "routed_from_slot"),
        (|c| c.aux_prev_weight = f64::NAN, "aux_*_weight"),
    ];
    for (change, field) in cases {
        let mut config = toy_config(1);
        change(&mut config);
        let out = tempfile::tempdir().unwrap();
        let err = Trainer::open(out.path(), config, &Plain).err().unwrap().to_string();
        assert!(err.contains(field), "{err}");
    }
}

#[test]
fn the_attention_loss_reads_the_llm_layers_probabilities() {
    use tokenscale_train::data::SynthSource;
    let source = SynthSource { mix: Default::default() };
    let mut config = toy_config(2);
    config.model.crop = 32;
    config.model.max_vision_tokens = 16;
    config.batch = 8;
    config.aux_attend_weight = 1.0;
    config.aux_attend_layer = 2;
    config.validation_items = 0;
    let out = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::open(out.path(), config, &source).unwrap();
    let row = trainer.train_step().unwrap();
    // −log of a probability (about ln(keys) ≈ 3.5 at a random start) for the batch's cell
    // questions whose budget has the cell's slot, averaged over the whole batch.
    assert!(row.aux_loss > 0.0 && row.aux_loss.is_finite(), "{row:?}");

    // The capture itself: one [1, heads, T, T] tensor per LLM layer, rows summing to 1.
    let pipeline = trainer.pipeline();
    let example = source.example(0).unwrap();
    let crops = pipeline.encode_image(&Forward::INFERENCE, &example.image).unwrap();
    let conv =
        tokenscale_model::chat::Conversation::new().user(example.prompt.clone()).for_generation();
    let inputs = pipeline.embeddings(&Forward::INFERENCE, &crops, &conv, 16, 16).unwrap();
    let llm = &pipeline.model.llm;
    let capture = AttentionCapture::new();
    llm.forward_embeds(
        &Forward::INFERENCE.capturing(&capture),
        &inputs.embeds,
        &mut llm.new_cache(),
        ForwardOptions::LAST,
    )
    .unwrap();
    let probs = capture.take();
    assert_eq!(probs.len(), 2);
    let t = inputs.embeds.dim(1).unwrap();
    assert_eq!(probs[1].dims(), [1, 2, t, t]);
    let sums = probs[1].sum(3).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
    assert!(capture.take().is_empty(), "taking empties the capture");
}

/// The synthetic mix with every subtask but `names` weighted 0.
fn only_subtasks(names: &[&str]) -> tokenscale_synth::Mix {
    let mut mix = tokenscale_synth::Mix::default();
    for (name, _) in tokenscale_synth::SUBTASKS {
        if !names.contains(&name) {
            mix = mix.with_subtask(name, 0.0).unwrap();
        }
    }
    mix
}

/// The toy shape on 32-px crops (one merged token per scene cell), 16 slots, always n = 16.
fn grid_config(batch: usize) -> TrainConfig {
    let mut config = toy_config(2);
    config.model.crop = 32;
    config.model.max_vision_tokens = 16;
    config.batch = batch;
    config.fixed_vision_tokens = Some(16);
    config.validation_items = 0;
    config
}

#[test]
fn the_anchor_loss_covers_relation_questions_and_turns_their_lookup_on() {
    use tokenscale_train::data::SynthSource;
    let source = SynthSource { mix: only_subtasks(&["relation_colour", "relation_shape"]) };
    let mut config = grid_config(8);
    config.aux_attend_weight = 1.0;
    config.aux_attend_layer = 2;
    let step = |config: &TrainConfig| {
        let out = tempfile::tempdir().unwrap();
        Trainer::open(out.path(), config.clone(), &source).unwrap().train_step().unwrap()
    };
    // Without the anchor loss, relation questions name no cell: nothing to attend to.
    let off = step(&config);
    assert_eq!(off.aux_terms[5..7], [0.0, 0.0], "{off:?}");
    config.aux_anchor_weight = 1.0;
    config.aux_anchor_layer = 1;
    let on = step(&config);
    assert!(on.aux_terms[5] > 0.0 && on.aux_terms[6] > 0.0, "both hops are supervised: {on:?}");
    assert!((on.aux_terms.iter().sum::<f64>() - on.aux_loss).abs() < 1e-9, "{on:?}");

    config.aux_anchor_layer = 3;
    let out = tempfile::tempdir().unwrap();
    let err = Trainer::open(out.path(), config, &source).err().unwrap().to_string();
    assert!(err.contains("aux_anchor_layer"), "{err}");
}

#[test]
fn stop_after_ends_a_run_early_on_the_full_schedule() {
    let mut config = toy_config(10);
    assert_eq!(config.last_step(), 10);
    config.stop_after = Some(4);
    assert_eq!(config.last_step(), 4);
    assert_eq!(
        config.learning_rate(3),
        toy_config(10).learning_rate(3),
        "the schedule still spans `steps`"
    );
    config.stop_after = Some(40);
    assert_eq!(config.last_step(), 10);
    config.stop_after = Some(0);
    let err = config.validate("stage.json").err().unwrap().to_string();
    assert!(err.contains("stage.json") && err.contains("stop_after"), "{err}");
}

#[test]
fn the_count_loss_spreads_attention_over_the_sink_and_the_counted_slots() {
    use tokenscale_train::data::SynthSource;
    let source = SynthSource { mix: only_subtasks(&["count_shape", "count_colour"]) };
    let example = source.example(0).unwrap();
    assert!(example.counted_cells.is_some(), "{}", example.prompt);
    let mut config = grid_config(4);
    config.aux_count_weight = 1.0;
    config.aux_count_layer = 2;
    let out = tempfile::tempdir().unwrap();
    let row = Trainer::open(out.path(), config.clone(), &source).unwrap().train_step().unwrap();
    // About ln(keys) per example at a random start, and only this term is on.
    assert!(row.aux_terms[7] > 1.0 && row.aux_terms[7] < 10.0, "{row:?}");
    assert!((row.aux_terms[7] - row.aux_loss).abs() < 1e-9, "{row:?}");
    config.aux_count_layer = 3;
    let err = Trainer::open(tempfile::tempdir().unwrap().path(), config, &source)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("aux_count_layer"), "{err}");
}

#[test]
fn whole_image_questions_look_at_the_last_slot_with_summary_lookup() {
    use tokenscale_train::data::SynthSource;
    let source = SynthSource { mix: only_subtasks(&["background", "border"]) };
    assert!(source.example(0).unwrap().asks_summary);
    let mut config = grid_config(4);
    config.aux_attend_weight = 1.0;
    config.aux_attend_layer = 2;
    let step = |config: &TrainConfig| {
        Trainer::open(tempfile::tempdir().unwrap().path(), config.clone(), &source)
            .unwrap()
            .train_step()
            .unwrap()
    };
    let off = step(&config);
    assert_eq!((off.aux_terms[5], off.aux_terms[8]), (0.0, 0.0), "{off:?}");
    config.aux_summary_weight = 1.0;
    let head_only = step(&config);
    assert!(head_only.aux_terms[5] == 0.0 && head_only.aux_terms[8] > 0.0, "{head_only:?}");
    config.summary_lookup = true;
    let on = step(&config);
    assert!(on.aux_terms[5] > 0.0 && on.aux_terms[8] > 0.0, "{on:?}");
}

#[test]
fn the_llm_side_heads_supervise_what_the_lookups_carry() {
    use tokenscale_train::data::SynthSource;
    let source =
        SynthSource { mix: only_subtasks(&["cell_shape", "relation_shape", "count_shape"]) };
    let mut config = grid_config(12);
    config.aux_attend_layer = 2;
    config.aux_anchor_layer = 2;
    let step = |config: &TrainConfig| {
        let out = tempfile::tempdir().unwrap();
        let mut trainer = Trainer::open(out.path(), config.clone(), &source).unwrap();
        let row = trainer.train_step().unwrap();
        (row, trainer, out)
    };
    let (off, ..) = step(&config);
    assert_eq!(off.aux_terms[9..], [0.0; 5], "{off:?}");
    config.aux_fetch_weight = 1.0;
    config.aux_llm_slot_weight = 1.0;
    config.aux_anchor_query_weight = 1.0;
    config.aux_early_answer_weight = 1.0;
    config.aux_anchor_fetch_weight = 1.0;
    let (on, trainer, _out) = step(&config);
    // Each term is a cross-entropy over a handful of classes (early answer: the vocabulary) at a
    // random start: positive and finite.
    for (i, name) in [
        (9, "fetch"),
        (10, "llm_slot"),
        (11, "anchor_query"),
        (12, "early_answer"),
        (13, "anchor_fetch"),
    ] {
        assert!(on.aux_terms[i] > 0.1 && on.aux_terms[i] < 20.0, "{name}: {on:?}");
    }
    assert!((on.aux_terms.iter().sum::<f64>() - on.aux_loss).abs() < 1e-9, "{on:?}");
    let ck = trainer.checkpoint().unwrap();
    let kept = candle_core::safetensors::load(ck.join("model.safetensors"), &Device::Cpu).unwrap();
    for head in [
        "aux_fetch.weight",
        "aux_llm_slots.weight",
        "aux_anchor_query.weight",
        "aux_anchor_fetch.weight",
    ] {
        assert!(kept.contains_key(head), "{head} is checkpointed");
    }
    let shipped =
        candle_core::safetensors::load(trainer.out.join("model/model.safetensors"), &Device::Cpu)
            .unwrap();
    assert!(!shipped.keys().any(|k| k.starts_with("aux_")), "no auxiliary tensor is shipped");

    // The early answer reads a state through the final norm and the LM head. On the state after
    // the last layer y (already normed, and a fresh norm's gains are 1) that is the model's own
    // logits rescaled by the second norm, 1 / sqrt(mean(y²) + eps), row by row.
    let pipeline = trainer.pipeline();
    let example = source.example(0).unwrap();
    let crops = pipeline.encode_image(&Forward::INFERENCE, &example.image).unwrap();
    let conv =
        tokenscale_model::chat::Conversation::new().user(example.prompt.clone()).for_generation();
    let inputs = pipeline.embeddings(&Forward::INFERENCE, &crops, &conv, 16, 16).unwrap();
    let fresh =
        Trainer::open(tempfile::tempdir().unwrap().path(), config.clone(), &source).unwrap();
    let llm = &fresh.pipeline().model.llm;
    let out = llm
        .forward_embeds(
            &Forward::INFERENCE,
            &inputs.embeds,
            &mut llm.new_cache(),
            ForwardOptions::ALL.with_hidden_states(),
        )
        .unwrap();
    let normed = out.hidden_states.last().unwrap();
    let lens = llm.logits_of(&Forward::INFERENCE, normed).unwrap();
    let eps = llm.config.rms_norm_eps;
    let rescale =
        ((normed.sqr().unwrap().mean_keepdim(2).unwrap() + eps).unwrap().sqrt().unwrap().recip())
            .unwrap();
    let expected = out.logits.broadcast_mul(&rescale).unwrap();
    let max_abs = |t: &candle_core::Tensor| {
        t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    };
    let (gap, scale) = (max_abs(&(lens - &expected).unwrap()), max_abs(&expected));
    assert!(
        gap <= 1e-5 * scale,
        "logit lens on the final state differs from the logits by {gap} (logits up to {scale})"
    );

    config.aux_anchor_layer = 3;
    let err = Trainer::open(tempfile::tempdir().unwrap().path(), config, &source)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("aux_anchor_layer"), "{err}");
}
