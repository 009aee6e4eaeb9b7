//! `TOKENSCALE_KERNELS=portable` turns the fast paths off for the whole process (its own test
//! binary, since the variable is read once).

mod common;

use common::{random, reference, worst_ratio};
use tokenscale_kernels::{bf16, matmul_transposed, Backend, Kernel, MatMut, MatRef};

#[test]
fn the_environment_variable_forces_the_portable_path_with_the_same_results() {
    std::env::set_var("TOKENSCALE_KERNELS", "portable");
    for (m, n, k) in [(1, 40, 64), (48, 70, 96)] {
        let x = random(m * k, 3, bf16::from_f32);
        let w = random(n * k, 4, bf16::from_f32);
        let mut y = vec![0f32; m * n];
        let kernel = matmul_transposed(
            MatRef::new("x", &x, m, k, k).unwrap(),
            MatRef::new("w", &w, n, k, k).unwrap(),
            MatMut::new("y", &mut y, m, n, n).unwrap(),
            Backend::Auto,
        )
        .unwrap();
        let expected_kernel = if m == 1 { Kernel::ScalarGemv } else { Kernel::PortableF32Gemm };
        assert_eq!(kernel, expected_kernel);
        let (expected, scale) = reference(&x, k, &w, k, m, n, k);
        assert!(worst_ratio(&y, n, &expected, &scale, m, n, k) <= 1.0);
    }
}
