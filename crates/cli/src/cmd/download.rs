//! `tokenscale download`: fetch a model repository from the Hugging Face Hub into the local
//! Hugging Face cache, where `--model ORG/NAME` finds it (hf-hub's blocking client; files already
//! there are kept, interrupted downloads resume).

use anyhow::{bail, Context, Result};
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use tokenscale_base::progress::Progress;

#[derive(clap::Args)]
pub struct Args {
    /// Repository id on the Hub, e.g. llava-hf/llava-1.5-7b-hf. Needs a network (not tested offline).
    pub repo: String,
    /// Branch, tag or commit to fetch (default: main).
    #[arg(long)]
    pub revision: Option<String>,
    /// Fetch every file, also weights in formats tokenscale does not read (.bin, .h5, .onnx, …).
    #[arg(long)]
    pub all_files: bool,
}

/// Weight formats other than safetensors: skipped unless asked for.
const OTHER_WEIGHTS: &[&str] =
    &[".bin", ".pt", ".pth", ".h5", ".msgpack", ".ckpt", ".onnx", ".gguf", ".ot", ".tflite"];

/// hf-hub's per-file progress, reported through the shared progress lines.
struct FileProgress(Option<Progress>);

impl hf_hub::api::Progress for FileProgress {
    fn init(&mut self, size: usize, filename: &str) {
        self.0 = Some(Progress::new(filename, size as u64, "bytes"));
    }
    fn update(&mut self, size: usize) {
        if let Some(p) = &self.0 {
            p.inc(size as u64);
        }
    }
    fn finish(&mut self) {
        if let Some(p) = self.0.take() {
            p.finish();
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    if !tokenscale_model::hub::is_repo_id(&args.repo) {
        bail!("`{}` is not a Hugging Face repository id (expected ORG/NAME)", args.repo);
    }
    let cache_dir = tokenscale_model::hub::cache_dir()?;
    let cache = Cache::new(cache_dir.clone());
    let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()).or_else(|| cache.token());
    let api = ApiBuilder::from_cache(cache)
        .with_token(token)
        .with_progress(false)
        .build()
        .context("cannot start the Hugging Face client")?;
    let revision = args.revision.clone().unwrap_or_else(|| "main".into());
    let id = Repo::with_revision(args.repo.clone(), RepoType::Model, revision.clone());
    let cached = Cache::new(cache_dir.clone()).repo(id.clone());
    let repo = api.repo(id);
    let info = repo.info().with_context(|| {
        format!(
            "{}@{revision}: cannot list the repository's files (network, name or access token?)",
            args.repo
        )
    })?;
    let files: Vec<String> = info
        .siblings
        .into_iter()
        .map(|s| s.rfilename)
        .filter(|f| args.all_files || !OTHER_WEIGHTS.iter().any(|ext| f.ends_with(ext)))
        .collect();
    eprintln!(
        "{}@{revision} (commit {}): {} files into {}",
        args.repo,
        info.sha,
        files.len(),
        cache_dir.display()
    );
    for (i, file) in files.iter().enumerate() {
        if cached.get(file).is_some() {
            eprintln!("[{}/{}] {file}: already in the cache", i + 1, files.len());
            continue;
        }
        eprintln!("[{}/{}] {file}", i + 1, files.len());
        repo.download_with_progress(file, FileProgress(None))
            .with_context(|| format!("{}: downloading {file}", args.repo))?;
    }
    let snapshot = tokenscale_model::hub::snapshot_in(&cache_dir, &args.repo, Some(&revision))?;
    println!("{}", snapshot.display());
    eprintln!(
        "use it as --model {}{}",
        args.repo,
        args.revision.as_deref().map_or(String::new(), |r| format!("@{r}"))
    );
    Ok(())
}
