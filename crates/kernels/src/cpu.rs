//! Run-time CPU-feature detection, done once per process.

use std::sync::OnceLock;

/// What this CPU (and, for AMX, the operating system) lets the kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuFeatures {
    /// AVX-512 Foundation (the gemv kernel and AMX's packing need it).
    pub avx512f: bool,
    /// AVX-512 BF16 conversions and dot products (the f16-split AMX path needs it).
    pub avx512bf16: bool,
    /// AVX-512 FP16 arithmetic (detected and reported; no kernel uses it yet).
    pub avx512fp16: bool,
    /// F16C conversions between f16 and f32.
    pub f16c: bool,
    /// AMX-TILE and AMX-BF16 reported by CPUID.
    pub amx_bf16: bool,
    /// Linux granted this process the AMX tile-data state (`arch_prctl(ARCH_REQ_XCOMP_PERM)`);
    /// without it the first tile instruction raises SIGILL.
    pub amx_permitted: bool,
}

impl CpuFeatures {
    /// Whether the AMX bf16 tile kernel may run: CPUID has it, Linux granted the tile state, and
    /// AVX-512F is there for the packing.
    pub fn amx_bf16_usable(&self) -> bool {
        self.amx_bf16 && self.amx_permitted && self.avx512f
    }
}

#[cfg(target_arch = "x86_64")]
fn detect() -> CpuFeatures {
    // std's detection of the AMX features is still unstable; read CPUID leaf 7 directly
    // (EDX bit 22 = AMX-BF16, bit 24 = AMX-TILE).
    let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
    let amx_bf16 = (leaf7.edx >> 22) & 1 == 1 && (leaf7.edx >> 24) & 1 == 1;
    CpuFeatures {
        avx512f: is_x86_feature_detected!("avx512f"),
        avx512bf16: is_x86_feature_detected!("avx512bf16"),
        avx512fp16: is_x86_feature_detected!("avx512fp16"),
        f16c: is_x86_feature_detected!("f16c"),
        amx_bf16,
        amx_permitted: amx_bf16 && request_amx_permission(),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> CpuFeatures {
    CpuFeatures {
        avx512f: false,
        avx512bf16: false,
        avx512fp16: false,
        f16c: false,
        amx_bf16: false,
        amx_permitted: false,
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_amx_permission() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with ARCH_REQ_XCOMP_PERM only asks the kernel to enlarge this process's
    // saved register state; it takes two integers and touches no memory of ours. Old kernels
    // answer with an error, which we treat as "no AMX".
    let result =
        unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) };
    result == 0
}

#[cfg(all(target_arch = "x86_64", not(target_os = "linux")))]
fn request_amx_permission() -> bool {
    false
}

/// The features of this machine (detected on the first call).
pub fn features() -> CpuFeatures {
    static FEATURES: OnceLock<CpuFeatures> = OnceLock::new();
    *FEATURES.get_or_init(detect)
}

/// `TOKENSCALE_KERNELS=portable` turns every fast path off (read once).
pub fn portable_forced() -> bool {
    static FORCED: OnceLock<bool> = OnceLock::new();
    *FORCED.get_or_init(|| {
        std::env::var("TOKENSCALE_KERNELS").is_ok_and(|v| v.eq_ignore_ascii_case("portable"))
    })
}
