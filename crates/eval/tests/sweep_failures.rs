//! An item that fails is stored as an error record, the sweep goes on, a rerun retries it, and
//! `fail_fast` stops at the first failure instead.

use std::cell::Cell;
use tokenscale_eval::store::load_run_with_failures;
use tokenscale_eval::sweep::{run_sweep, Answerer};
use tokenscale_eval::{Dataset, SweepConfig};

/// Answers "A", except for the items named in `failing` while `broken` is set.
struct Flaky {
    failing: Vec<String>,
    broken: Cell<bool>,
}

impl Answerer for Flaky {
    type Prepared = ();
    fn model_name(&self) -> String {
        "flaky".into()
    }
    fn prepare_image(&mut self, _images: &[image::DynamicImage]) -> anyhow::Result<()> {
        Ok(())
    }
    fn answer(
        &mut self,
        _: &(),
        prompt: &str,
        n: usize,
        _max_new_tokens: usize,
    ) -> anyhow::Result<String> {
        match self.failing.iter().find(|q| prompt.contains(q.as_str())) {
            Some(_) if self.broken.get() => anyhow::bail!("prompt too long at n={n}"),
            _ => Ok("A".into()),
        }
    }
}

#[test]
fn failed_items_are_recorded_skipped_and_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let tsvs = tokenscale_synth::generate(&tmp.path().join("data"), 5, 4, 16).unwrap();
    let ds = Dataset::load(&tsvs[0], None).unwrap();
    let datasets = vec![ds.clone()];
    let question = ds.items[1].question.clone();
    let run = tmp.path().join("run");
    let cfg = SweepConfig::new(&run, vec![1, 8]);
    let mut model = Flaky { failing: vec![question], broken: Cell::new(true) };
    let total = ds.items.len() * 2;

    let first = run_sweep(&mut model, &datasets, &cfg).unwrap();
    let failed_items =
        ds.items.iter().filter(|it| it.question.contains(ds.items[1].question.as_str())).count();
    assert_eq!((first.answered, first.failed), (total - 2 * failed_items, 2 * failed_items));
    let (done, failed) = load_run_with_failures(&run).unwrap();
    assert_eq!((done.len(), failed.len()), (first.answered, first.failed));
    assert!(failed.values().all(|r| r.error.as_deref().unwrap().contains("prompt too long")));

    // fail_fast on a fresh run stops at the first failure with its error.
    let mut fast = SweepConfig::new(tmp.path().join("fast"), vec![1, 8]);
    fast.fail_fast = true;
    let e = format!("{:#}", run_sweep(&mut model, &datasets, &fast).unwrap_err());
    assert!(e.contains("prompt too long") && e.contains("index"), "{e}");

    // The rerun retries exactly the failed answers.
    model.broken.set(false);
    let again = run_sweep(&mut model, &datasets, &cfg).unwrap();
    assert_eq!((again.answered, again.failed, again.skipped), (first.failed, 0, first.answered));
    let (done, failed) = load_run_with_failures(&run).unwrap();
    assert_eq!((done.len(), failed.len()), (total, 0));
}
