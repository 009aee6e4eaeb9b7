//! The synthetic benchmark's small fixture (`tokenscale_synth::generate`) is deterministic and
//! reads back through the dataset reader (moved here from the fixture's module when the
//! benchmark left this crate: the reader lives here).

use tokenscale_eval::Dataset;
use tokenscale_synth::generate;

#[test]
fn deterministic_and_loadable() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let pa = generate(a.path(), 7, 6, 32).unwrap();
    let pb = generate(b.path(), 7, 6, 32).unwrap();
    for (x, y) in pa.iter().zip(&pb) {
        assert_eq!(std::fs::read(x).unwrap(), std::fs::read(y).unwrap());
        let ds = Dataset::load(x, None).unwrap();
        assert_eq!(ds.items.len(), 6);
        ds.check_images().unwrap();
    }
    let y = Dataset::load(&pa[1], None).unwrap();
    assert_eq!(y.items[1].image_key, y.items[0].index);
}
