//! bf16 products on Intel AMX: `y = x · wᵀ` with TDPBF16PS (16 × 16 f32 tile += 16 × 32 bf16
//! tile · 32 × 16 bf16 tile, the second in pair-interleaved "VNNI" order).
//!
//! Blocking (Goto style): x is copied once into tile order; the columns of y are split into
//! panels of `PANEL_COLS` weights, one rayon task each; within a panel, k is cut into blocks of
//! `DEPTH` and each block of weights is repacked once into VNNI tiles (kept in L2) and reused for
//! every row block of x. The micro-kernel holds a 32 × 32 block of y in four tile registers
//! (2 × 2). Both packed operands are zero-padded to whole tiles, so edges (m, n, k not multiples
//! of 32) need no special tile shapes; partial blocks of y go through a scratch block.
//!
//! Only called after `CpuFeatures::amx_bf16_usable()`; the tile instructions are emitted with
//! `asm!` because Rust's AMX intrinsics are not stable.

use std::arch::asm;
use std::cell::RefCell;

use rayon::prelude::*;

use crate::matrix::{MatMut, MatRef};

mod pack;
pub(crate) use pack::Operands;
use pack::{pack_weights, pack_x};

/// y columns (= weight rows) per task; a multiple of 32.
const PANEL_COLS: usize = 256;
/// k per packed block; a multiple of 32. PANEL_COLS × DEPTH × 2 bytes = 1 MiB stays in L2. Long
/// blocks win (measured 512 → 2048: +20-40%): y's tiles are loaded and stored once per block.
const DEPTH: usize = 2048;
/// u16 per tile row (64 bytes) and per tile (16 rows).
const TILE_ROW: usize = 32;
const TILE: usize = 16 * TILE_ROW;

/// A 64-byte line of u16, so buffers of them are cache-line aligned.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u16; TILE_ROW]);

/// The 64-byte tile configuration read by LDTILECFG (palette 1).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

/// Every one of the 8 tiles is 16 rows × 64 bytes: tmm0-3 the f32 block of y, tmm4-5 x, tmm6-7 w.
fn full_tiles() -> TileConfig {
    let mut c = TileConfig {
        palette: 1,
        start_row: 0,
        reserved: [0; 14],
        bytes_per_row: [0; 16],
        rows: [0; 16],
    };
    for t in 0..8 {
        c.bytes_per_row[t] = 64;
        c.rows[t] = 16;
    }
    c
}

/// The f32 output, shared by tasks that write disjoint column ranges of it.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks only write the columns of their own panel, so no two threads touch one element.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

#[derive(Default)]
struct Scratch {
    packed_w: Vec<Line>,
    edge_y: Vec<f32>,
}

thread_local! {
    /// Per worker: the weight panel being used and a scratch block for partial tiles of y.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
    /// Per calling thread: x in tile order, kept between calls so its pages stay mapped.
    static PACKED_X: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
}

/// Only called after `CpuFeatures::amx_bf16_usable()` (and, for `F16Split`, `avx512bf16`).
pub(crate) fn matmul(x: &MatRef<u16>, w: &MatRef<u16>, y: &mut MatMut, operands: Operands) {
    let n = w.rows;
    let out = OutPtr(y.data.as_mut_ptr());
    let ldy = y.row_stride;
    crate::scratch::with_buffer(&PACKED_X, |packed_x| {
        let x_steps = pack_x(x, operands, packed_x);
        let packed_x: &[Line] = packed_x;
        (0..n.div_ceil(PANEL_COLS)).into_par_iter().for_each(|panel| {
            let cols = panel * PANEL_COLS..n.min((panel + 1) * PANEL_COLS);
            SCRATCH.with(|s| {
                let s = &mut *s.borrow_mut();
                let config = full_tiles();
                // SAFETY: AMX use was checked by the caller (CPUID + OS permission); the
                // configuration is a valid palette-1 layout that lives through the call.
                unsafe { asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly)) };
                let packed = PackedX { lines: packed_x, rows: x.rows, steps: x_steps, operands };
                panel_product(&packed, w, out, ldy, cols, s);
                // SAFETY: as above; releases the tile state so context switches stay cheap.
                unsafe { asm!("tilerelease", options(nostack, nomem)) };
            });
        });
    });
}

fn round_up(v: usize, to: usize) -> usize {
    v.div_ceil(to) * to
}

/// Tile steps (of 32 k) covering k; at least one, so k = 0 still runs (on zeros).
fn total_steps(k: usize) -> usize {
    k.div_ceil(TILE_ROW).max(1)
}

/// x packed by `pack_x`: `steps` expanded tile steps per 32-row block.
struct PackedX<'a> {
    lines: &'a [Line],
    rows: usize,
    steps: usize,
    operands: Operands,
}

/// Columns `cols` of y (for all rows): for each depth block, pack the weights and sweep x.
fn panel_product(
    x: &PackedX,
    w: &MatRef<u16>,
    out: OutPtr,
    ldy: usize,
    cols: std::ops::Range<usize>,
    s: &mut Scratch,
) {
    let (m, k) = (x.rows, w.cols);
    let width = round_up(cols.len(), 32);
    let passes = x.operands.passes();
    let original_steps = total_steps(k);
    // DEPTH counts expanded steps (the packed panel's size), so f16 blocks cover 4× less k.
    let block = (DEPTH / TILE_ROW / passes).max(1);
    for first in (0..original_steps).step_by(block) {
        let steps = block.min(original_steps - first);
        let k0 = first * TILE_ROW;
        pack_weights(
            w,
            cols.start,
            width,
            k0,
            k.min(k0 + steps * TILE_ROW) - k0,
            steps,
            x.operands,
            &mut s.packed_w,
        );
        let expanded = steps * passes;
        let accumulate = first > 0;
        for row in (0..m).step_by(32) {
            let a_ptr =
                x.lines[((row / 32) * x.steps + first * passes) * 32..].as_ptr() as *const u16;
            for col in (0..width).step_by(32) {
                let b_ptr = s.packed_w[(col / 16) * expanded * 16..].as_ptr() as *const u16;
                let first_col = cols.start + col;
                if row + 32 <= m && first_col + 32 <= cols.end {
                    // SAFETY: rows row..row+32 and columns first_col..first_col+32 lie inside y
                    // (checked on construction of y), and only this task writes these columns.
                    unsafe {
                        let c = out.0.add(row * ldy + first_col);
                        kernel_2x2(a_ptr, b_ptr, expanded, c, ldy, accumulate);
                    }
                } else {
                    let rows_here = 32.min(m - row);
                    let cols_here = 32.min(cols.end - first_col);
                    edge_block(
                        out,
                        ldy,
                        (row, first_col),
                        (rows_here, cols_here),
                        accumulate,
                        a_ptr,
                        b_ptr,
                        expanded,
                        &mut s.edge_y,
                    );
                }
            }
        }
    }
}

/// A partial 32 × 32 block of y (at `at`, of `size` rows × columns) through a scratch block.
#[allow(clippy::too_many_arguments)]
fn edge_block(
    out: OutPtr,
    ldy: usize,
    at: (usize, usize),
    size: (usize, usize),
    accumulate: bool,
    a_ptr: *const u16,
    b_ptr: *const u16,
    steps: usize,
    scratch: &mut Vec<f32>,
) {
    let ((row, col), (rows, cols)) = (at, size);
    scratch.clear();
    scratch.resize(32 * 32, 0.0);
    // SAFETY: the (rows × cols) block at (row, col) lies inside y and belongs to this task;
    // scratch holds 32 × 32 f32; a_ptr/b_ptr point at full padded tiles.
    unsafe {
        if accumulate {
            for r in 0..rows {
                std::ptr::copy_nonoverlapping(
                    out.0.add((row + r) * ldy + col),
                    scratch.as_mut_ptr().add(r * 32),
                    cols,
                );
            }
        }
        kernel_2x2(a_ptr, b_ptr, steps, scratch.as_mut_ptr(), 32, accumulate);
        for r in 0..rows {
            std::ptr::copy_nonoverlapping(
                scratch.as_ptr().add(r * 32),
                out.0.add((row + r) * ldy + col),
                cols,
            );
        }
    }
}

/// y[32 × 32] (+)= x[32 × 32·steps] · w-tiles: tmm0..3 hold y's four 16 × 16 quarters.
///
/// # Safety
/// Tiles configured by `full_tiles`; `a` readable for `steps` packed pairs of x tiles (rows 0..16
/// then 16..32 of each step); `b` readable for two column groups of `steps` packed tiles; `c`
/// readable/writable for 32 rows of 32 f32 at `c_stride`.
unsafe fn kernel_2x2(
    a: *const u16,
    b: *const u16,
    steps: usize,
    c: *mut f32,
    c_stride: usize,
    accumulate: bool,
) {
    let c_bytes = c_stride * 4;
    // SAFETY: all addresses below stay inside the regions of the contract above.
    unsafe {
        let c_low = c.add(16 * c_stride);
        if accumulate {
            asm!("tileloadd tmm0, [{p} + {s}*1]", p = in(reg) c, s = in(reg) c_bytes, options(nostack, readonly));
            asm!("tileloadd tmm1, [{p} + {s}*1]", p = in(reg) c.add(16), s = in(reg) c_bytes, options(nostack, readonly));
            asm!("tileloadd tmm2, [{p} + {s}*1]", p = in(reg) c_low, s = in(reg) c_bytes, options(nostack, readonly));
            asm!("tileloadd tmm3, [{p} + {s}*1]", p = in(reg) c_low.add(16), s = in(reg) c_bytes, options(nostack, readonly));
        } else {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
        }
        let b_second = b.add(steps * TILE);
        for t in 0..steps {
            asm!(
                "tileloadd tmm4, [{a0} + {sb}*1]",
                "tileloadd tmm6, [{b0} + {sb}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tileloadd tmm7, [{b1} + {sb}*1]",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tileloadd tmm5, [{a1} + {sb}*1]",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a0 = in(reg) a.add(2 * t * TILE),
                a1 = in(reg) a.add((2 * t + 1) * TILE),
                b0 = in(reg) b.add(t * TILE),
                b1 = in(reg) b_second.add(t * TILE),
                sb = in(reg) 64usize,
                options(nostack, readonly),
            );
        }
        asm!("tilestored [{p} + {s}*1], tmm0", p = in(reg) c, s = in(reg) c_bytes, options(nostack));
        asm!("tilestored [{p} + {s}*1], tmm1", p = in(reg) c.add(16), s = in(reg) c_bytes, options(nostack));
        asm!("tilestored [{p} + {s}*1], tmm2", p = in(reg) c_low, s = in(reg) c_bytes, options(nostack));
        asm!("tilestored [{p} + {s}*1], tmm3", p = in(reg) c_low.add(16), s = in(reg) c_bytes, options(nostack));
    }
}
