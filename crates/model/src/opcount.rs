//! Counting the multiply-accumulates (MACs) the runtime executes, to check the analytic count of
//! tokenscale-cost against what really runs.
//!
//! The runtime's matrix products go through three wrappers, which report here: `nn::matmul`
//! (attention's QKᵀ and AV; MACs = output elements · inner dimension), `matvec::apply` (every
//! linear layer; output elements · input features, bias adds not counted) and `nn::conv`
//! (convolutions; output elements · input channels per group · kernel area, padding included).
//! Products outside them (the RoPE angle table, the reducers' pooling and similarity products)
//! are not counted, matching the analytic convention.
//!
//! A counter counts what the thread that started it executes while it is alive (tests running in
//! parallel do not see each other's work); nested counters all count. With no counter alive
//! anywhere, a report costs one relaxed atomic load.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Which wrapper executed the MACs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `nn::matmul`: attention products.
    Matmul,
    /// `matvec::apply`: linear layers.
    Linear,
    /// `nn::conv`: convolutions.
    Conv,
}

#[derive(Debug, Default)]
struct Counts {
    by_op: [AtomicU64; 3],
}

/// Counters alive on any thread: the fast path when none is.
static ALIVE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static RUNNING: RefCell<Vec<Arc<Counts>>> = const { RefCell::new(Vec::new()) };
}

/// A running count of the MACs this thread executes; stops when dropped.
#[derive(Debug)]
pub struct OpCounter {
    counts: Arc<Counts>,
    /// Bound to the thread that started it.
    _not_send: PhantomData<*const ()>,
}

impl OpCounter {
    pub fn start() -> Self {
        let counts = Arc::new(Counts::default());
        RUNNING.with(|r| r.borrow_mut().push(counts.clone()));
        ALIVE.fetch_add(1, Ordering::SeqCst);
        Self { counts, _not_send: PhantomData }
    }

    /// All MACs counted so far.
    pub fn macs(&self) -> u64 {
        self.counts.by_op.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The MACs one wrapper executed.
    pub fn macs_of(&self, op: Op) -> u64 {
        self.counts.by_op[op as usize].load(Ordering::Relaxed)
    }
}

impl Drop for OpCounter {
    fn drop(&mut self) {
        RUNNING.with(|r| r.borrow_mut().retain(|c| !Arc::ptr_eq(c, &self.counts)));
        ALIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Adds `macs()` to every counter running on this thread (`macs` is evaluated only then).
#[inline]
pub fn record(op: Op, macs: impl FnOnce() -> u64) {
    if ALIVE.load(Ordering::Relaxed) == 0 {
        return;
    }
    RUNNING.with(|r| {
        let running = r.borrow();
        if running.is_empty() {
            return;
        }
        let m = macs();
        for c in running.iter() {
            c.by_op[op as usize].fetch_add(m, Ordering::Relaxed);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};
    use candle_nn::{Conv2d, Conv2dConfig, Linear};

    #[test]
    fn wrappers_report_their_products() {
        let dev = Device::Cpu;
        let outer = OpCounter::start();
        let a = Tensor::zeros((2, 3, 5, 7), candle_core::DType::F32, &dev).unwrap();
        let b = Tensor::zeros((2, 3, 7, 4), candle_core::DType::F32, &dev).unwrap();
        crate::nn::matmul(&a, &b).unwrap();
        assert_eq!(outer.macs_of(Op::Matmul), 2 * 3 * 5 * 7 * 4);
        let inner = OpCounter::start();
        // one row (the row-parallel path) and several rows (the layer's forward), with a bias
        let layer = Linear::new(Tensor::zeros((6, 10), candle_core::DType::F32, &dev).unwrap(), Some(Tensor::zeros(6, candle_core::DType::F32, &dev).unwrap()));
        crate::matvec::apply(&layer, &Tensor::zeros((1, 1, 10), candle_core::DType::F32, &dev).unwrap()).unwrap();
        crate::matvec::apply(&layer, &Tensor::zeros((2, 9, 10), candle_core::DType::F32, &dev).unwrap()).unwrap();
        assert_eq!(inner.macs_of(Op::Linear), 6 * 10 + 2 * 9 * 6 * 10);
        // 3×3, stride 2, padding 1 over 8×8 → 4×4 outputs, each the full 3·3·3 kernel
        let conv = Conv2d::new(Tensor::zeros((5, 3, 3, 3), candle_core::DType::F32, &dev).unwrap(), None, Conv2dConfig { stride: 2, padding: 1, ..Default::default() });
        crate::nn::conv(&conv, &Tensor::zeros((1, 3, 8, 8), candle_core::DType::F32, &dev).unwrap()).unwrap();
        assert_eq!(inner.macs_of(Op::Conv), 5 * 4 * 4 * 3 * 3 * 3);
        drop(inner);
        assert_eq!(outer.macs(), 2 * 3 * 5 * 7 * 4 + 6 * 10 + 2 * 9 * 6 * 10 + 5 * 16 * 27, "nested counters both count");
        // another thread's work is not this counter's
        std::thread::spawn(move || crate::nn::matmul(&a, &b).unwrap()).join().unwrap();
        assert_eq!(outer.macs_of(Op::Matmul), 2 * 3 * 5 * 7 * 4);
    }
}
