//! GMAC/s of the gemm crate on the shapes the conv kernels hand it (teacher conv2, one chunk of
//! 2,048 columns): forward, kernel gradient, input gradient, and a square reference. Diagnostic.
use std::time::Instant;

/// `dst[m×n] = lhs·rhs` with (row, column) strides for lhs and rhs.
#[allow(clippy::too_many_arguments)]
fn run(name: &str, m: usize, n: usize, k: usize, lhs_s: (isize, isize), rhs_s: (isize, isize)) {
    let lhs = vec![0.5f32; m * k];
    let rhs = vec![0.25f32; k * n];
    let mut dst = vec![0f32; m * n];
    let mut call = || unsafe {
        // SAFETY: the buffers cover the strided extents given.
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            lhs_s.1,
            lhs_s.0,
            rhs.as_ptr(),
            rhs_s.1,
            rhs_s.0,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    };
    call();
    let reps = 20;
    let t = Instant::now();
    for _ in 0..reps {
        call();
    }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    println!("{name:<34} {:7.2} ms  {:6.1} GMAC/s", s * 1e3, (m * n * k) as f64 / s / 1e9);
}

fn main() {
    let (o, k, cols) = (64, 800, 2048);
    run("forward  W[o×k]·cols[k×n]", o, cols, k, (k as isize, 1), (cols as isize, 1));
    run("kernel grad  G[o×n]·colsᵀ", o, k, cols, (cols as isize, 1), (1, cols as isize));
    run("input grad  Wᵀ[k×o]·G[o×n]", k, cols, o, (1, k as isize), (cols as isize, 1));
    run("input grad as (Gᵀ·W)ᵀ [n×o]·[o×k]", cols, k, o, (1, cols as isize), (k as isize, 1));
    run("forward as colsᵀ·Wᵀ [n×k]·[k×o]", cols, o, k, (1, cols as isize), (1, k as isize));
    run("kernel grad as cols·Gᵀ [k×n]·[n×o]", k, o, cols, (cols as isize, 1), (1, cols as isize));
    // The student's conv2 (16 → 32 channels, k = 400).
    let (o2, k2) = (32, 400);
    run("student fwd W·cols", o2, cols, k2, (k2 as isize, 1), (cols as isize, 1));
    run("student fwd (colsᵀ·Wᵀ)ᵀ", cols, o2, k2, (1, cols as isize), (1, k2 as isize));
    run("teacher fwd (colsᵀ·Wᵀ)ᵀ", cols, o, k, (1, cols as isize), (1, k as isize));
    run("student kernel grad cols·Gᵀ", k2, o2, cols, (cols as isize, 1), (1, cols as isize));
    run("student input grad Wᵀ·G", k2, cols, o2, (1, k2 as isize), (cols as isize, 1));
    run("student input grad (Gᵀ·W)ᵀ", cols, k2, o2, (1, cols as isize), (k2 as isize, 1));
    // The MLP student's middle layer (batch 128, 800 → 800): weight gradient both ways, input gradient.
    let (b, i, o) = (128, 800, 800);
    run("mlp gw = gᵀ·x [o×b]·[b×i]", o, i, b, (1, o as isize), (i as isize, 1));
    run("mlp gwᵀ = xᵀ·g [i×b]·[b×o]", i, o, b, (1, i as isize), (o as isize, 1));
    run("mlp gx = g·w [b×o]·[o×i]", b, i, o, (o as isize, 1), (i as isize, 1));
    run("mlp fwd = x·wᵀ [b×i]·[i×o]", b, o, i, (i as isize, 1), (1, i as isize));
    run("square 1024", 1024, 1024, 1024, (1024, 1), (1024, 1));
}
