//! The README's five-minute tour, verbatim: every line of the block after the `<!-- tour` marker
//! runs against the built binary in a fresh folder (with the repository's `models/` beside it, as
//! on a fresh clone), and the figure it promises is there.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The command lines of the README's tour block.
fn tour_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let after_marker = readme.split_once("<!-- tour").expect("README has a `<!-- tour` marker").1;
    let block =
        after_marker.split_once("```bash\n").expect("a bash block follows the tour marker").1;
    let block = block.split_once("```").expect("the tour block is closed").0;
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_command_of_the_five_minute_tour_works() {
    let commands = tour_commands();
    assert!(commands.len() >= 4, "{commands:?}");
    let tmp = tempfile::tempdir().unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        repo().join("models").canonicalize().unwrap(),
        tmp.path().join("models"),
    )
    .unwrap();
    let start = Instant::now();
    for line in &commands {
        // Plain words only: the test splits on whitespace, so quoting would be misread.
        assert!(
            !line.contains(['"', '\'', '\\', '|', '>', '$']),
            "tour line needs a shell: {line}"
        );
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[0], "tokenscale", "tour lines run the binary: {line}");
        let t = Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_tokenscale"))
            .args(&words[1..])
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "`{line}` failed:\n{}", String::from_utf8_lossy(&o.stderr));
        eprintln!("{:5.1} s  {line}", t.elapsed().as_secs_f64());
    }
    eprintln!("{:5.1} s  whole tour", start.elapsed().as_secs_f64());
    let figure = tmp.path().join("tour/fit/grid_tiny-imgque_queries.png");
    assert!(
        std::fs::metadata(&figure).map(|m| m.len() > 1000).unwrap_or(false),
        "the tour's figure {} is missing",
        figure.display()
    );
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.contains("tour/fit/grid_tiny-imgque_queries.png"),
        "the README names the figure the tour writes"
    );
    assert!(readme.lines().count() <= 200, "README is {} lines", readme.lines().count());
}
