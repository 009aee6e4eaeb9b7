//! Every path of `matmul_transposed` against the exact product of the same 16-bit inputs.

mod common;

use common::{random, reference, worst_ratio};
use tokenscale_kernels::{
    bf16, f16, features, matmul_transposed, Backend, Half16, HalfFormat, Kernel, KernelError,
    MatMut, MatRef,
};

/// m, n, k: tiny, odd, one-row and one-column, k = 1, k not a multiple of 32, several panels of
/// columns (256) and several depth blocks (2048) with tails.
const SHAPES: [(usize, usize, usize); 13] = [
    (1, 1, 1),
    (1, 37, 70),
    (2, 5, 3),
    (3, 1, 64),
    (3, 17, 1),
    (5, 33, 31),
    (32, 32, 32),
    (33, 35, 65),
    (64, 64, 64),
    (31, 300, 100),
    (70, 280, 1100),
    (96, 64, 1024),
    (40, 70, 2100),
];

/// Row strides larger than the rows, and y's padding checked to stay untouched.
fn check<T: Half16>(
    m: usize,
    n: usize,
    k: usize,
    strided: bool,
    backend: Backend,
    from_f32: fn(f32) -> T,
) -> Kernel {
    let (ldx, ldw, ldy) = if strided { (k + 5, k + 3, n + 7) } else { (k, k, n) };
    let x = random(m * ldx, 1 + (m * 31 + k) as u64, from_f32);
    let w = random(n * ldw, 2 + (n * 17 + k) as u64, from_f32);
    let sentinel = 12345.0f32;
    let mut y = vec![sentinel; m * ldy];
    let kernel = matmul_transposed(
        MatRef::new("x", &x, m, k, ldx).unwrap(),
        MatRef::new("w", &w, n, k, ldw).unwrap(),
        MatMut::new("y", &mut y, m, n, ldy).unwrap(),
        backend,
    )
    .unwrap();
    let (expected, scale) = reference(&x, ldx, &w, ldw, m, n, k);
    let worst = worst_ratio(&y, ldy, &expected, &scale, m, n, k);
    assert!(
        worst <= 1.0,
        "{m}x{n}x{k} strided={strided} {backend:?} via {}: error {worst:.2}× the tolerance",
        kernel.name()
    );
    for i in 0..m {
        assert!(
            y[i * ldy + n..(i + 1) * ldy].iter().all(|&v| v == sentinel),
            "{m}x{n}x{k}: wrote past column {n} of row {i}"
        );
    }
    kernel
}

fn expected_kernel(format: HalfFormat, m: usize, backend: Backend) -> Kernel {
    let cpu = features();
    // TOKENSCALE_KERNELS=portable runs this whole suite as on a CPU without the fast paths.
    let forced =
        std::env::var("TOKENSCALE_KERNELS").is_ok_and(|v| v.eq_ignore_ascii_case("portable"));
    let fast = backend == Backend::Auto && !forced;
    if m <= 2 {
        if fast && cpu.avx512f {
            Kernel::Avx512Gemv
        } else {
            Kernel::ScalarGemv
        }
    } else if fast && format == HalfFormat::Bf16 && cpu.amx_bf16_usable() {
        Kernel::AmxBf16
    } else if fast && format == HalfFormat::F16 && cpu.amx_bf16_usable() && cpu.avx512bf16 {
        Kernel::AmxF16Split
    } else {
        Kernel::PortableF32Gemm
    }
}

fn all_shapes<T: Half16>(from_f32: fn(f32) -> T) {
    for backend in [Backend::Auto, Backend::Portable] {
        for &(m, n, k) in &SHAPES {
            for strided in [false, true] {
                let kernel = check(m, n, k, strided, backend, from_f32);
                assert_eq!(
                    kernel,
                    expected_kernel(T::FORMAT, m, backend),
                    "{m}x{n}x{k} {backend:?}"
                );
            }
        }
    }
}

#[test]
fn bf16_products_match_the_exact_reference_on_every_path() {
    eprintln!("cpu: {:?}", features());
    all_shapes(bf16::from_f32);
}

#[test]
fn f16_products_match_the_exact_reference_on_every_path() {
    all_shapes(f16::from_f32);
}

#[test]
fn empty_dimensions_give_zeros_or_nothing() {
    let (x, w) = (vec![bf16::ONE; 6], vec![bf16::ONE; 9]);
    let mut y = vec![7f32; 6];
    // k = 0: the sum of no products is 0.
    for backend in [Backend::Auto, Backend::Portable] {
        y.fill(7.0);
        let x0 = MatRef::new("x", &x[..0], 3, 0, 0).unwrap();
        let w0 = MatRef::new("w", &w[..0], 2, 0, 0).unwrap();
        matmul_transposed(x0, w0, MatMut::new("y", &mut y, 3, 2, 2).unwrap(), backend).unwrap();
        assert!(y.iter().all(|&v| v == 0.0), "{backend:?}: {y:?}");
    }
    // m = 0 writes nothing.
    let x0 = MatRef::new("x", &x[..0], 0, 3, 3).unwrap();
    let w3 = MatRef::new("w", &w, 3, 3, 3).unwrap();
    matmul_transposed(x0, w3, MatMut::new("y", &mut y[..0], 0, 3, 3).unwrap(), Backend::Auto)
        .unwrap();
}

#[test]
fn bad_arguments_are_named() {
    let data = vec![bf16::ONE; 10];
    assert_eq!(
        MatRef::new("weight", &data, 3, 4, 4).unwrap_err(),
        KernelError::TooShort {
            name: "weight",
            rows: 3,
            cols: 4,
            row_stride: 4,
            needed: 12,
            len: 10
        }
    );
    assert!(matches!(
        MatRef::new("x", &data, 2, 4, 3),
        Err(KernelError::StrideTooSmall { name: "x", .. })
    ));
    let message = MatRef::new("weight", &data, 3, 4, 4).unwrap_err().to_string();
    assert!(
        message.contains("weight") && message.contains("12") && message.contains("10"),
        "{message}"
    );
    let x = MatRef::new("x", &data, 2, 5, 5).unwrap();
    let w = MatRef::new("w", &data, 2, 4, 4).unwrap();
    let mut y = vec![0f32; 4];
    let err = matmul_transposed(x, w, MatMut::new("y", &mut y, 2, 2, 2).unwrap(), Backend::Auto)
        .unwrap_err();
    assert!(matches!(err, KernelError::ShapeMismatch { x_cols: 5, w_cols: 4, .. }), "{err}");
}

fn infinite_weight_gives_an_infinite_column<T: Half16 + PartialEq>(
    from_f32: fn(f32) -> T,
    infinity: T,
) {
    // An infinite weight makes its output column infinite on every path (every x is non-zero):
    // neither the zero padding of the tile kernel nor the f16 parts may turn it into NaN.
    let (m, n, k) = (40, 40, 40);
    let zero = from_f32(0.0);
    let x: Vec<T> = random(m * k, 7, from_f32)
        .into_iter()
        .map(|v| if v == zero { from_f32(1.0) } else { v })
        .collect();
    let mut w = random(n * k, 8, from_f32);
    w[3 * k + 5] = infinity;
    for backend in [Backend::Auto, Backend::Portable] {
        let mut y = vec![0f32; m * n];
        let kernel = matmul_transposed(
            MatRef::new("x", &x, m, k, k).unwrap(),
            MatRef::new("w", &w, n, k, k).unwrap(),
            MatMut::new("y", &mut y, m, n, n).unwrap(),
            backend,
        )
        .unwrap();
        for i in 0..m {
            for j in 0..n {
                assert_eq!(
                    y[i * n + j].is_infinite(),
                    j == 3,
                    "{backend:?} {} ({i},{j}) = {}",
                    kernel.name(),
                    y[i * n + j]
                );
            }
        }
    }
}

#[test]
fn special_values_propagate_like_f32() {
    infinite_weight_gives_an_infinite_column(bf16::from_f32, bf16::INFINITY);
    infinite_weight_gives_an_infinite_column(f16::from_f32, f16::INFINITY);
}

#[test]
fn linear_adds_the_bias_in_f32_and_rounds_once() {
    use tokenscale_kernels::linear;
    let (m, n, k) = (37, 45, 70);
    let x = random(m * k, 11, bf16::from_f32);
    let w = random(n * k, 12, bf16::from_f32);
    let b = random(n, 13, bf16::from_f32);
    let (exact, scale) = reference(&x, k, &w, k, m, n, k);
    for backend in [Backend::Auto, Backend::Portable] {
        let mut out = vec![bf16::ZERO; m * n];
        linear(
            MatRef::new("x", &x, m, k, k).unwrap(),
            MatRef::new("w", &w, n, k, k).unwrap(),
            Some(&b),
            &mut out,
            backend,
        )
        .unwrap();
        for i in 0..m {
            for j in 0..n {
                let want = exact[i * n + j] + b[j].to_f64();
                // One bf16 rounding (half an ulp: 2⁻⁸ relative, 8 significant bits) plus the f32 summation error.
                let allowed =
                    want.abs() * 2f64.powi(-8) + common::tolerance(k, scale[i * n + j]) + 1e-30;
                let got = out[i * n + j].to_f64();
                assert!((got - want).abs() <= allowed, "{backend:?} ({i},{j}): {got} vs {want}");
            }
        }
    }
    let mut short = vec![bf16::ZERO; 3];
    let err = linear(
        MatRef::new("x", &x, m, k, k).unwrap(),
        MatRef::new("w", &w, n, k, k).unwrap(),
        Some(&b[..4]),
        &mut short,
        Backend::Auto,
    )
    .unwrap_err();
    assert_eq!(err, KernelError::BiasLength { expected: n, len: 4 });
}

#[test]
fn batched_products_equal_one_product_per_batch() {
    use tokenscale_kernels::{batched_transposed, BatchShape};
    let shape = BatchShape { batch: 5, m: 35, n: 9, k: 64 };
    let BatchShape { batch, m, n, k } = shape;
    let x = random(batch * m * k, 21, bf16::from_f32);
    let w = random(batch * n * k, 22, bf16::from_f32);
    for backend in [Backend::Auto, Backend::Portable] {
        let mut out = vec![bf16::ZERO; batch * m * n];
        batched_transposed(&x, &w, shape, &mut out, backend).unwrap();
        for b in 0..batch {
            let (exact, scale) = reference(&x[b * m * k..], k, &w[b * n * k..], k, m, n, k);
            for i in 0..m * n {
                let (got, want) = (out[b * m * n + i].to_f64(), exact[i]);
                assert!(
                    (got - want).abs()
                        <= want.abs() * 2f64.powi(-8) + common::tolerance(k, scale[i]),
                    "{backend:?} batch {b} element {i}: {got} vs {want}"
                );
            }
        }
    }
    let mut short = vec![bf16::ZERO; 3];
    assert!(matches!(
        batched_transposed(&x, &w, shape, &mut short, Backend::Auto),
        Err(KernelError::OutputLength { .. })
    ));
    assert!(matches!(
        batched_transposed(&x[..10], &w, shape, &mut short, Backend::Auto),
        Err(KernelError::TooShort { name: "batched x", .. })
    ));
}
