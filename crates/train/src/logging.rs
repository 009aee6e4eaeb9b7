//! What a run records as it goes: one `LossRow` per step and one `ValidationRow` per validation
//! pass, kept in every checkpoint's state.json and written out as `loss.csv` and `validation.csv`.
//! The auxiliary-loss columns come from the loss registry, in its order.

use serde::{Deserialize, Serialize};

use crate::losses::registry::{AuxTerms, AUX_LOSSES, AUX_TERMS};

/// One row of loss.csv.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossRow {
    /// Optimiser steps taken after this one (1 for the first step).
    pub step: u64,
    /// Answer cross-entropy per answer token.
    pub loss: f64,
    /// Weighted auxiliary losses per example (0 without auxiliary heads).
    #[serde(default)]
    pub aux_loss: f64,
    /// `aux_loss` term by term, in `AUX_LOSSES` order, each per example.
    #[serde(default, deserialize_with = "aux_terms_of_any_age")]
    pub aux_terms: AuxTerms,
    /// The learning rate this step used.
    pub lr: f64,
    /// The batch's vision-token budgets averaged over its examples.
    pub mean_vision_tokens: f64,
    /// Wall-clock seconds the step took (forward, backward and update).
    pub seconds: f64,
}

/// Validation accuracy at one checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidationRow {
    /// Optimiser steps taken when the validation ran.
    pub step: u64,
    /// The vision-token budget n the examples were answered at.
    pub vision_tokens: usize,
    /// Exact-match accuracy of greedy answers, in [0, 1].
    pub accuracy: f64,
}

/// Reads the terms of a checkpoint written when fewer auxiliary losses existed (they were 0):
/// losses are only ever added at the end of the registry, so a shorter list is a prefix.
fn aux_terms_of_any_age<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<AuxTerms, D::Error> {
    let stored = Vec::<f64>::deserialize(d)?;
    if stored.len() > AUX_TERMS {
        return Err(serde::de::Error::custom(format!(
            "{} auxiliary terms, this build knows {AUX_TERMS}",
            stored.len()
        )));
    }
    let mut terms = [0.0; AUX_TERMS];
    terms[..stored.len()].copy_from_slice(&stored);
    Ok(terms)
}

/// `loss.csv`: a header naming every auxiliary term, then one line per row.
pub fn loss_csv(rows: &[LossRow]) -> String {
    let names: Vec<&str> = AUX_LOSSES.iter().map(|l| l.name).collect();
    let mut s = format!("step,loss,aux_loss,{},lr,mean_vision_tokens,seconds\n", names.join(","));
    for r in rows {
        let terms: Vec<String> = r.aux_terms.iter().map(|v| format!("{v:.6}")).collect();
        s.push_str(&format!(
            "{},{:.6},{:.6},{},{:.6e},{:.2},{:.3}\n",
            r.step,
            r.loss,
            r.aux_loss,
            terms.join(","),
            r.lr,
            r.mean_vision_tokens,
            r.seconds
        ));
    }
    s
}

/// `validation.csv`: `step,vision_tokens,accuracy`, one line per validation pass.
pub fn validation_csv(rows: &[ValidationRow]) -> String {
    let mut s = String::from("step,vision_tokens,accuracy\n");
    for r in rows {
        s.push_str(&format!("{},{},{:.4}\n", r.step, r.vision_tokens, r.accuracy));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row_with_terms(terms: usize) -> String {
        let terms = vec!["0.5"; terms].join(",");
        format!(
            r#"{{"step":1,"loss":1.0,"aux_loss":0.5,"aux_terms":[{terms}],"lr":0.1,"mean_vision_tokens":2.0,"seconds":0.1}}"#
        )
    }

    #[test]
    fn older_rows_with_fewer_terms_read_as_a_prefix_and_longer_ones_are_refused() {
        let row: LossRow = serde_json::from_str(&row_with_terms(10)).unwrap();
        assert_eq!(row.aux_terms[..10], [0.5; 10]);
        assert!(row.aux_terms[10..].iter().all(|&t| t == 0.0), "{row:?}");
        let err = serde_json::from_str::<LossRow>(&row_with_terms(AUX_TERMS + 1))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(&format!("this build knows {AUX_TERMS}")), "{err}");
        let header = loss_csv(&[row]).lines().next().unwrap().to_string();
        assert!(
            header.starts_with("step,loss,aux_loss,aux_cell,aux_slot,")
                && header.ends_with(",aux_anchor_fetch,lr,mean_vision_tokens,seconds"),
            "{header}"
        );
    }
}
