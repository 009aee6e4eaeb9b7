//! Training runs the same model code with candle's fused kernels swapped for differentiable
//! formulas (`Forward::TRAINING`). Both modes must give the same outputs (within the 1e-4 of the parity tests), and the gradients
//! must reach every parameter and agree with finite differences.
//! (The mode is the forward context's, per call.)

mod common;

use std::collections::HashMap;
use tokenscale_model::{Forward, ForwardOptions};

use candle_core::{DType, Device, Tensor, Var};
use common::{fixture, max_abs_diff};
use tokenscale_model::chat::Conversation;
use tokenscale_model::imgque_pipeline::ImgQuePipeline;
use tokenscale_model::preprocess::load_image;
use tokenscale_model::weights::Weights;

fn answer_loss(ctx: &Forward, pipe: &ImgQuePipeline, image: &image::RgbImage) -> (Tensor, Tensor) {
    let conv = Conversation::new().user("what is in the image?").assistant("a cat");
    let crops = pipe.encode_image(ctx, image).unwrap();
    let inputs = pipe.embeddings(ctx, &crops, &conv, 8, 8).unwrap();
    let out = pipe
        .model
        .llm
        .forward_embeds(ctx, &inputs.embeds, &mut pipe.model.llm.new_cache(), ForwardOptions::ALL)
        .unwrap();
    let logits = out.logits.squeeze(0).unwrap();
    let ids = &inputs.record.llm.input_ids;
    let t = ids.len();
    let targets = Tensor::new(&ids[1..], &Device::Cpu).unwrap();
    let loss =
        candle_nn::loss::cross_entropy(&logits.narrow(0, 0, t - 1).unwrap(), &targets).unwrap();
    (logits, loss)
}

#[test]
fn differentiable_mode_matches_and_gradients_are_right() {
    let dir = fixture("imgque");
    let stored =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let vars: HashMap<String, Var> = stored
        .into_iter()
        .map(|(k, t)| (k, Var::from_tensor(&t.to_dtype(DType::F32).unwrap()).unwrap()))
        .collect();
    let tensors = vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
    let pipe = ImgQuePipeline::load_with_weights(
        &dir,
        &Weights::from_tensors(tensors, "fixture vars", &Device::Cpu),
    )
    .unwrap();
    let image = load_image(&dir.join("small.png")).unwrap();

    let (fast_logits, fast_loss) = answer_loss(&Forward::INFERENCE, &pipe, &image);
    let (logits, loss) = answer_loss(&Forward::TRAINING, &pipe, &image);
    let diff = max_abs_diff(&logits, &fast_logits, "logits");
    assert!(diff <= 1e-4, "differentiable logits differ from the fused kernels' by {diff}");
    let (l0, lf) = (loss.to_scalar::<f32>().unwrap(), fast_loss.to_scalar::<f32>().unwrap());
    assert!((l0 - lf).abs() <= 1e-5, "loss {l0} vs {lf}");

    let grads = loss.backward().unwrap();
    let unused: Vec<&String> = vars
        .iter()
        .filter(|(k, _)| {
            !k.ends_with("post_layernorm.weight") && !k.ends_with("post_layernorm.bias")
        })
        .filter(|(_, v)| grads.get(v.as_tensor()).is_none())
        .map(|(k, _)| k)
        .collect();
    assert!(unused.is_empty(), "parameters without a gradient: {unused:?}");

    // Central differences on single elements of parameters from each part of the model.
    let h = 1e-2f32;
    for key in [
        "imgque_backbone.clip_model.vision_model.encoder.layers.0.layer_norm1.weight",
        "imgque_backbone.clip_model.vision_model.vision_embed_merge.weight",
        "imgque_backbone.imgque_model.layers.1.self_attn.q_proj.weight",
        "fusion_backbone.imgque_proj.weight",
        "llm_backbone.model.layers.0.mlp.gate_proj.weight",
    ] {
        let var = &vars[key];
        let analytic = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .get(3)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let original = var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let shifted = |delta: f32| {
            let mut values = original.clone();
            values[3] += delta;
            var.set(&Tensor::from_vec(values, var.as_tensor().shape(), &Device::Cpu).unwrap())
                .unwrap();
            answer_loss(&Forward::TRAINING, &pipe, &image).1.to_scalar::<f32>().unwrap()
        };
        let numeric = (shifted(h) - shifted(-h)) / (2.0 * h);
        shifted(0.0);
        let tol = 2e-3 + 0.05 * numeric.abs().max(analytic.abs());
        assert!(
            (numeric - analytic).abs() <= tol,
            "{key}[3]: analytic {analytic} vs numeric {numeric}"
        );
    }
}
