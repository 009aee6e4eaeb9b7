//! The training curves of `tokenscale train`: loss per step and validation exact match per budget.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::figures::{line_panel_over, Line};
use crate::{draw_err, Figure, Result, FAMILY};

/// Loss per step (left) and validation accuracy per budget (right) of a training run.
#[derive(Clone, Debug)]
pub struct TrainingFigure {
    /// Caption above the two panels.
    pub title: String,
    /// Optimiser steps of `loss`.
    pub steps: Vec<f64>,
    /// Training loss at each step (answer cross-entropy per token).
    pub loss: Vec<f64>,
    /// Smoothing window for the loss line (steps); 1 draws it raw.
    pub window: usize,
    /// Steps at which validation ran (the x of every `validation` series).
    pub validation_steps: Vec<f64>,
    /// (label, accuracy per validation step).
    pub validation: Vec<(String, Vec<Option<f64>>)>,
}

fn moving_average(values: &[f64], window: usize) -> Vec<Option<f64>> {
    let window = window.max(1);
    (0..values.len())
        .map(|i| {
            let from = (i + 1).saturating_sub(window);
            let slice = &values[from..=i];
            Some(slice.iter().sum::<f64>() / slice.len() as f64)
        })
        .collect()
}

impl Figure for TrainingFigure {
    fn size(&self) -> (u32, u32) {
        (1100, 420)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let root = root.titled(&self.title, (FAMILY, 20)).map_err(draw_err)?;
        let areas = root.split_evenly((1, 2));
        let raw =
            Line { label: "loss".into(), values: self.loss.iter().map(|v| Some(*v)).collect() };
        let smooth = Line {
            label: format!("mean of {} steps", self.window),
            values: moving_average(&self.loss, self.window),
        };
        line_panel_over(
            &areas[0],
            "answer cross-entropy",
            (&self.steps, "step"),
            &[(7, &raw), (0, &smooth)],
            "loss (nats/token)",
        )?;
        if !self.validation_steps.is_empty() {
            let lines: Vec<Line> = self
                .validation
                .iter()
                .map(|(label, values)| Line { label: label.clone(), values: values.clone() })
                .collect();
            let indexed: Vec<(usize, &Line)> = lines.iter().enumerate().collect();
            line_panel_over(
                &areas[1],
                "validation exact match",
                (&self.validation_steps, "step"),
                &indexed,
                "accuracy",
            )?;
        }
        Ok(())
    }
}
