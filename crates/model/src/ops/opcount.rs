//! Counting the multiply-accumulates (MACs) the runtime executes, to check the analytic count of
//! tokenscale-cost against what really runs.
//!
//! A counter counts the forward passes whose [`crate::forward::Forward`] context carries it
//! (`Forward::INFERENCE.counting(&counter)`). The runtime's matrix products go through three
//! wrappers, which report to it: `nn::matmul` (attention's QKᵀ and AV; MACs = output elements ·
//! inner dimension), `nn::Linear::forward` (every linear layer; output elements · input
//! features, bias adds not counted) and `nn::conv` (convolutions; output elements · input
//! channels per group · kernel area, padding included). Products outside them (the RoPE angle
//! table, the reducers' pooling and similarity products) are not counted, matching the analytic
//! convention. With no counter in the context, a product costs one branch.

use std::sync::atomic::{AtomicU64, Ordering};

/// Which wrapper executed the MACs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `nn::matmul`: attention products.
    Matmul,
    /// `nn::Linear::forward`: linear layers.
    Linear,
    /// `nn::conv`: convolutions.
    Conv,
}

/// A running count of the MACs of the forward passes given it.
#[derive(Debug, Default)]
pub struct OpCounter {
    by_op: [AtomicU64; 3],
}

impl OpCounter {
    /// A counter at zero.
    pub fn start() -> Self {
        Self::default()
    }

    /// All MACs counted so far.
    pub fn macs(&self) -> u64 {
        self.by_op.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The MACs one wrapper executed.
    pub fn macs_of(&self, op: Op) -> u64 {
        self.by_op[op as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, op: Op, macs: u64) {
        self.by_op[op as usize].fetch_add(macs, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::Forward;
    use crate::nn::Linear;
    use candle_core::{Device, Tensor};
    use candle_nn::{Conv2d, Conv2dConfig};

    #[test]
    fn wrappers_report_their_products() {
        let dev = Device::Cpu;
        let outer = OpCounter::start();
        let counting = Forward::INFERENCE.counting(&outer);
        let a = Tensor::zeros((2, 3, 5, 7), candle_core::DType::F32, &dev).unwrap();
        let b = Tensor::zeros((2, 3, 7, 4), candle_core::DType::F32, &dev).unwrap();
        crate::nn::matmul(&counting, &a, &b).unwrap();
        assert_eq!(outer.macs_of(Op::Matmul), 2 * 3 * 5 * 7 * 4);
        let inner = OpCounter::start();
        let inner_ctx = Forward::INFERENCE.counting(&inner);
        // one row (the row-parallel path) and several rows (the layer's forward), with a bias
        let layer = Linear::new(
            Tensor::zeros((6, 10), candle_core::DType::F32, &dev).unwrap(),
            Some(Tensor::zeros(6, candle_core::DType::F32, &dev).unwrap()),
        );
        layer
            .forward(&inner_ctx, &Tensor::zeros((1, 1, 10), candle_core::DType::F32, &dev).unwrap())
            .unwrap();
        layer
            .forward(&inner_ctx, &Tensor::zeros((2, 9, 10), candle_core::DType::F32, &dev).unwrap())
            .unwrap();
        assert_eq!(inner.macs_of(Op::Linear), 6 * 10 + 2 * 9 * 6 * 10);
        // 3×3, stride 2, padding 1 over 8×8 → 4×4 outputs, each the full 3·3·3 kernel
        let conv = Conv2d::new(
            Tensor::zeros((5, 3, 3, 3), candle_core::DType::F32, &dev).unwrap(),
            None,
            Conv2dConfig { stride: 2, padding: 1, ..Default::default() },
        );
        crate::nn::conv(
            &inner_ctx,
            &conv,
            &Tensor::zeros((1, 3, 8, 8), candle_core::DType::F32, &dev).unwrap(),
        )
        .unwrap();
        assert_eq!(inner.macs_of(Op::Conv), 5 * 4 * 4 * 3 * 3 * 3);
        assert_eq!(inner.macs(), 6 * 10 + 2 * 9 * 6 * 10 + 5 * 16 * 27);
        assert_eq!(outer.macs(), 2 * 3 * 5 * 7 * 4, "a counter counts only the passes given it");
        // a pass without a counter (here on another thread) is nobody's
        std::thread::spawn(move || crate::nn::matmul(&Forward::INFERENCE, &a, &b).unwrap())
            .join()
            .unwrap();
        assert_eq!(outer.macs_of(Op::Matmul), 2 * 3 * 5 * 7 * 4);
    }
}
