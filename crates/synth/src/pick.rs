//! Choosing what to ask about a scene so that the question text gives the answer away as little
//! as possible. The asked value is balanced over the answer set where the scene allows; where it
//! does not (counts: few scenes hold six circles) the values offered beside the truth — MCQ
//! distractors, the claim of a false yes/no question — are the answers of the same question
//! about *other* random scenes, and the truth and those decoys are accepted or redrawn together
//! (all distinct). The draws are then exchangeable: without the image, no offered value is
//! likelier to be the truth than another.

use super::questions::{answer_set, candidates, claim_set, Candidate};
use super::rng::Rng;
use super::scene::Scene;

/// Draws of a wanted answer before settling for any candidate.
const ANSWER_TRIES: usize = 16;
/// Joint draws of the truth and its decoys before falling back to uniform decoys.
const DECOY_TRIES: usize = 64;

/// A candidate whose answer is drawn uniformly from `values` (among those the scene offers).
fn balanced<'a>(cands: &'a [Candidate], values: &[&str], rng: &mut Rng) -> Option<&'a Candidate> {
    for _ in 0..ANSWER_TRIES {
        let value = values[rng.below(values.len())];
        let fits: Vec<&Candidate> = cands.iter().filter(|c| c.answer == value).collect();
        if let Some(c) = rng.pick(&fits) {
            return Some(*c);
        }
    }
    None
}

/// The candidate an open question asks about.
pub fn open_question(subtask: usize, cands: &[Candidate], rng: &mut Rng) -> Candidate {
    balanced(cands, &answer_set(subtask), rng)
        .copied()
        .unwrap_or_else(|| cands[rng.below(cands.len())])
}

/// The answer of the open question about a fresh random scene.
fn typical_answer(subtask: usize, rng: &mut Rng) -> Option<&'static str> {
    let scene = Scene::random(rng);
    let cands = candidates(subtask, &scene);
    if cands.is_empty() {
        return None;
    }
    Some(open_question(subtask, &cands, rng).answer)
}

/// A candidate of this scene and `n` decoy answers, all distinct and accepted by `keep`.
fn with_decoys(
    subtask: usize,
    cands: &[Candidate],
    n: usize,
    rng: &mut Rng,
    keep: impl Fn(&str, &[&str]) -> bool,
) -> Option<(Candidate, Vec<&'static str>)> {
    for _ in 0..DECOY_TRIES {
        let c = open_question(subtask, cands, rng);
        let decoys: Vec<&'static str> =
            (0..n).filter_map(|_| typical_answer(subtask, rng)).collect();
        let mut all = decoys.clone();
        all.push(c.answer);
        all.sort_unstable();
        all.dedup();
        if decoys.len() == n && all.len() == n + 1 && keep(c.answer, &decoys) {
            return Some((c, decoys));
        }
    }
    None
}

/// A multiple-choice question: the candidate and three distractors.
pub fn choice_question(
    subtask: usize,
    cands: &[Candidate],
    rng: &mut Rng,
) -> (Candidate, Vec<&'static str>) {
    if let Some(found) = with_decoys(subtask, cands, 3, rng, |_, _| true) {
        return found;
    }
    let c = open_question(subtask, cands, rng);
    let mut others: Vec<&'static str> =
        answer_set(subtask).into_iter().filter(|v| *v != c.answer).collect();
    rng.shuffle(&mut others);
    others.truncate(3);
    (c, others)
}

/// A yes/no question: the candidate and the claimed value (a word of `claim_set`).
pub fn claim_question(
    subtask: usize,
    cands: &[Candidate],
    rng: &mut Rng,
) -> (Candidate, &'static str) {
    let claims = claim_set(subtask);
    let claimable = |v: &str| claims.contains(&v);
    let want_yes = rng.chance(0.5);
    let found = if want_yes {
        with_decoys(subtask, cands, 1, rng, |truth, _| claimable(truth)).map(|(c, _)| (c, c.answer))
    } else {
        with_decoys(subtask, cands, 1, rng, |_, decoys| claimable(decoys[0]))
            .map(|(c, d)| (c, d[0]))
    };
    found.unwrap_or_else(|| {
        let c = open_question(subtask, cands, rng);
        let others: Vec<&'static str> = claims.iter().copied().filter(|v| *v != c.answer).collect();
        (c, others[rng.below(others.len())])
    })
}
