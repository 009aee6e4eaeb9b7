//! `tokenscale demo`: the embedded default model end to end, with no download.
//!
//! The embedded model is the tiny LLaVA-1.5-shaped checkpoint of the parity fixtures (random
//! weights; its answers carry no meaning) until a trained model ships in its place.

use std::path::{Path, PathBuf};

use anyhow::Result;
use tokenscale_model::generation::GenerationConfig;
use tokenscale_model::llava::{vicuna_v1_prompt, LlavaPipeline};
use tokenscale_model::preprocess::{decode_image, load_image, ClipImageProcessorConfig};
use tokenscale_model::runtime::Runtime;
use tokenscale_model::tokenizer::Tokenizer;
use tokenscale_model::weights::Weights;
use tokenscale_model::{DType, Device};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../model/tests/fixtures");
static CONFIG: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../model/tests/fixtures/llava/config.json"));
static WEIGHTS: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../model/tests/fixtures/llava/model.safetensors"));
static TOKENIZER: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../model/tests/fixtures/llava/tokenizer.json"));
static PROCESSOR: &[u8] =
    include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../model/tests/fixtures/llava/preprocessor_config.json"));
static IMAGE: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../model/tests/fixtures/preprocess/coffee.png"));

#[derive(clap::Args)]
pub struct Args {
    /// Use this image instead of the embedded photograph.
    #[arg(long)]
    pub image: Option<PathBuf>,
    #[arg(long, default_value = "What is shown in this image?")]
    pub prompt: String,
    #[arg(long, default_value_t = 24)]
    pub max_new_tokens: usize,
}

pub fn embedded_pipeline() -> Result<LlavaPipeline> {
    let origin = "embedded demo model";
    let config: serde_json::Value = serde_json::from_slice(CONFIG)?;
    let weights = Weights::from_static(WEIGHTS, origin, DType::F32, &Device::Cpu)?;
    let tokenizer = Tokenizer::from_bytes(TOKENIZER, origin)?;
    let processor = ClipImageProcessorConfig::from_value(&serde_json::from_slice(PROCESSOR)?, origin)?;
    LlavaPipeline::from_parts(&config, origin, &weights, tokenizer, processor, Path::new(FIXTURE))
}

pub fn run(args: Args) -> Result<()> {
    let pipeline = embedded_pipeline()?;
    let (image, image_name) = match &args.image {
        Some(path) => (load_image(path)?, path.display().to_string()),
        None => (decode_image(IMAGE, "embedded coffee.png")?, "embedded photograph coffee.png (scikit-image)".to_string()),
    };
    let (vision, text) = (pipeline.model.config.vision.clone(), pipeline.model.config.text.clone());
    let vision_tokens = pipeline.model.config.image_tokens();
    let runtime = Runtime::Llava(pipeline);
    println!("model:         embedded tiny LLaVA-1.5 layout (CLIP {}px/{} patches, {} layers; Llama {} layers, hidden {}), random weights: answers are not meaningful", vision.image_size, vision.patch_size, vision.num_hidden_layers, text.num_hidden_layers, text.hidden_size);
    println!("image:         {image_name}, {}x{} px, padded to a square and resized to {}x{}", image.width(), image.height(), vision.image_size, vision.image_size);
    println!("vision tokens: {vision_tokens}");
    println!("prompt:        {:?}", vicuna_v1_prompt(&args.prompt));
    print!("answer:        ");
    let config = GenerationConfig { max_new_tokens: args.max_new_tokens, stop_tokens: runtime.stop_tokens(), ..Default::default() };
    super::run::generate_streaming(&runtime, Some(&image), &args.prompt, false, &Default::default(), &config)?;
    Ok(())
}
