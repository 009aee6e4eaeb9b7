//! Scenes: a light background tint, a coloured 3-px border and a 4×4 grid of 16-px cells, each
//! empty or holding one small shape; drawn as a 64×64 RGB image.

use super::rng::Rng;
use image::{Rgb, RgbImage};

/// Side of the square image in pixels.
pub const IMAGE_SIZE: u32 = 64;
/// Cells per row and per column of the shape grid.
pub const GRID: usize = 4;
/// Side of one grid cell in pixels (`GRID * CELL == IMAGE_SIZE`).
pub const CELL: i32 = 16;
/// Width of the coloured border in pixels.
pub const BORDER: i32 = 3;
/// Probability that a cell is empty.
pub const EMPTY_P: f64 = 0.4;
/// Shape bounding-box sizes in pixels (inclusive).
pub const SIZE_MIN: i32 = 9;
/// Largest shape bounding-box side in pixels (inclusive).
pub const SIZE_MAX: i32 = 12;

/// Shape names, as answers and question words use them; indexed by `Placed::shape`.
pub const SHAPES: [&str; 4] = ["circle", "square", "triangle", "cross"];
/// Plural forms for counting questions, in `SHAPES` order.
pub const SHAPES_PLURAL: [&str; 4] = ["circles", "squares", "triangles", "crosses"];
/// Saturated colours of the shapes and of the border.
pub const COLORS: [(&str, [u8; 3]); 5] = [
    ("red", [220, 30, 30]),
    ("green", [30, 170, 60]),
    ("blue", [40, 70, 220]),
    ("yellow", [235, 200, 20]),
    ("purple", [140, 50, 170]),
];
/// Light background tints: pale enough that every shape colour stands out on every tint.
pub const TINTS: [(&str, [u8; 3]); 5] = [
    ("white", [250, 250, 250]),
    ("grey", [205, 205, 205]),
    ("pink", [250, 210, 225]),
    ("blue", [205, 222, 250]),
    ("green", [210, 240, 210]),
];

/// One shape in a cell, with its drawing jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    /// Index into `SHAPES`.
    pub shape: usize,
    /// Index into `COLORS`.
    pub color: usize,
    /// Bounding-box side in pixels (`SIZE_MIN..=SIZE_MAX`).
    pub size: i32,
    /// Horizontal jitter of the shape's centre in pixels (−1..=1).
    pub dx: i32,
    /// Vertical jitter of the shape's centre in pixels (−1..=1).
    pub dy: i32,
}

/// Everything an image shows; questions are answered from this, never from pixels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scene {
    /// Index into `TINTS`.
    pub background: usize,
    /// Index into `COLORS`.
    pub border: usize,
    /// Row-major cells, row 0 at the top, column 0 at the left.
    pub cells: [Option<Placed>; GRID * GRID],
}

impl Scene {
    /// Draws a scene: tint, border colour, then each cell empty with probability `EMPTY_P`
    /// or holding a random shape, colour, size and jitter.
    pub fn random(rng: &mut Rng) -> Scene {
        let background = rng.below(TINTS.len());
        let border = rng.below(COLORS.len());
        let mut cells = [None; GRID * GRID];
        for cell in cells.iter_mut() {
            if rng.chance(EMPTY_P) {
                continue;
            }
            *cell = Some(Placed {
                shape: rng.below(SHAPES.len()),
                color: rng.below(COLORS.len()),
                size: rng.range(SIZE_MIN, SIZE_MAX),
                dx: rng.range(-1, 1),
                dy: rng.range(-1, 1),
            });
        }
        Scene { background, border, cells }
    }

    /// The cell at (row, column), both 0-based.
    pub fn at(&self, row: usize, col: usize) -> Option<Placed> {
        if row < GRID && col < GRID {
            self.cells[row * GRID + col]
        } else {
            None
        }
    }

    /// Draws the scene as a 64×64 RGB image (tint, border, then each cell's shape).
    pub fn render(&self) -> RgbImage {
        let mut img = RgbImage::from_pixel(IMAGE_SIZE, IMAGE_SIZE, Rgb(TINTS[self.background].1));
        let border = Rgb(COLORS[self.border].1);
        let last = IMAGE_SIZE as i32 - 1;
        for y in 0..=last {
            for x in 0..=last {
                if x.min(y) < BORDER || x.max(y) > last - BORDER {
                    img.put_pixel(x as u32, y as u32, border);
                }
            }
        }
        for (i, cell) in self.cells.iter().enumerate() {
            if let Some(p) = cell {
                draw(&mut img, p, (i / GRID) as i32, (i % GRID) as i32);
            }
        }
        img
    }
}

/// Top-left corner of a shape's bounding box along one axis: centred in its cell, jittered, and
/// kept one pixel clear of the border (edge cells lose up to 3 px to it).
fn origin(cell: i32, size: i32, jitter: i32) -> i32 {
    let lo = BORDER + 1;
    let hi = IMAGE_SIZE as i32 - BORDER - 1 - size;
    (cell * CELL + (CELL - size) / 2 + jitter).clamp(lo, hi)
}

fn draw(img: &mut RgbImage, p: &Placed, row: i32, col: i32) {
    let (x0, y0, s) = (origin(col, p.size, p.dx), origin(row, p.size, p.dy), p.size);
    let color = Rgb(COLORS[p.color].1);
    // Pixel centres in bounding-box units, doubled so that everything stays integral.
    for y in 0..s {
        for x in 0..s {
            let (u, v) = (2 * x + 1 - s, 2 * y + 1 - s); // centre-relative, ×2
            let inside = match p.shape {
                0 => u * u + v * v <= s * s,
                1 => u.abs() < s - 1 && v.abs() < s - 1,
                // Apex up: half-width grows linearly from the top row to the full base.
                2 => 2 * u.abs() <= (v + s) + 1,
                // Plus sign with arms 3 px wide (4 px in even boxes, to stay centred).
                _ => {
                    let arm = if s % 2 == 1 { 3 } else { 4 };
                    u.abs() < arm || v.abs() < arm
                }
            };
            if inside {
                img.put_pixel((x0 + x) as u32, (y0 + y) as u32, color);
            }
        }
    }
}
