//! SDK tensor ops through the real host table, checked against hand-computed values.
// Reference values are quoted to the spec's precision.
#![allow(clippy::excessive_precision, clippy::approx_constant)]
mod common;
use common::{close, host, vec};
use retort_sdk::{DType, Tensor};

#[test]
fn creation_queries_and_casts() {
    let h = host(0);
    let x = h.ctx.tensor(&[1f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
    assert_eq!(x.dims(), vec![2, 3]);
    assert_eq!(x.dtype().unwrap(), DType::F32);
    assert_eq!(x.dim(-1).unwrap(), 3);
    assert!(x.dim(5).is_err());
    assert_eq!(x.to_vec2::<f32>().unwrap(), vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]]);
    let i = h.ctx.tensor(&[3i64, -1], &[2]).unwrap();
    assert_eq!(i.to_vec1::<i64>().unwrap(), vec![3, -1]);
    assert_eq!(h.ctx.arange(0.0, 5.0, 2.0, DType::I64).unwrap().to_vec1::<i64>().unwrap(), vec![0, 2, 4]);
    assert_eq!(vec(&h.ctx.full(&[2], 7.5, DType::F32).unwrap()), vec![7.5, 7.5]);
    assert_eq!(x.to_dtype(DType::I64).unwrap().dtype().unwrap(), DType::I64);
    assert!(h.ctx.tensor(&[1f32, 2.0], &[3]).is_err(), "length/shape mismatch is an error");
}

#[test]
fn unary_binary_scalar() {
    let h = host(0);
    let x = h.ctx.tensor(&[-1f32, 0.0, 2.0], &[3]).unwrap();
    close(&vec(&x.relu().unwrap()), &[0.0, 0.0, 2.0], 0.0);
    close(&vec(&x.abs().unwrap()), &[1.0, 0.0, 2.0], 0.0);
    close(&vec(&x.sigmoid().unwrap()), &[0.26894142, 0.5, 0.880797], 1e-6);
    close(&vec(&x.softplus().unwrap()), &[0.31326169, 0.69314718, 2.12692801], 1e-6);
    close(&vec(&x.sign().unwrap()), &[-1.0, 0.0, 1.0], 0.0);
    close(&vec(&x.affine(2.0, 1.0).unwrap()), &[-1.0, 1.0, 5.0], 0.0);
    close(&vec(&x.clamp(-0.5, 1.0).unwrap()), &[-0.5, 0.0, 1.0], 0.0);
    close(&vec(&(&x * 3.0).unwrap()), &[-3.0, 0.0, 6.0], 0.0);
    // Broadcasting [2,1] with [3].
    let col = h.ctx.tensor(&[10f32, 20.0], &[2, 1]).unwrap();
    let s = (&col + &x).unwrap();
    assert_eq!(s.dims(), vec![2, 3]);
    close(&vec(&s), &[9.0, 10.0, 12.0, 19.0, 20.0, 22.0], 0.0);
    let gt = x.gt(&h.ctx.zeros(&[1]).unwrap()).unwrap();
    assert_eq!(gt.to_vec1::<u8>().unwrap(), vec![0, 0, 1]);
    // Mixed dtypes promote (u8 mask times f32).
    close(&vec(&gt.mul(&x).unwrap()), &[0.0, 0.0, 2.0], 0.0);
}

#[test]
fn reductions_and_softmax() {
    let h = host(0);
    let x = h.ctx.tensor(&[1f32, 2.0, 3.0, 4.0, 6.0, 8.0], &[2, 3]).unwrap();
    close(&vec(&x.sum(1).unwrap()), &[6.0, 18.0], 0.0);
    assert_eq!(x.sum_keepdim(1).unwrap().dims(), vec![2, 1]);
    close(&vec(&x.mean([0, 1]).unwrap().reshape(&[1]).unwrap()), &[4.0], 1e-6);
    close(&vec(&x.max(1).unwrap()), &[3.0, 8.0], 0.0);
    close(&vec(&x.min(0).unwrap()), &[1.0, 2.0, 3.0], 0.0);
    assert_eq!(x.argmax(1).unwrap().to_vec1::<u32>().unwrap(), vec![2, 2]);
    close(&vec(&x.var(1).unwrap()), &[1.0, 4.0], 1e-6);
    close(&vec(&x.std(1).unwrap()), &[1.0, 2.0], 1e-6);
    close(&vec(&x.var_biased(1).unwrap()), &[2.0 / 3.0, 8.0 / 3.0], 1e-6);
    close(&vec(&x.logsumexp(1).unwrap()), &[3.40760596, 8.14293163], 1e-5);
    let p = x.softmax(-1).unwrap();
    close(&vec(&p.sum(1).unwrap()), &[1.0, 1.0], 1e-6);
    close(&vec(&x.log_softmax(-1).unwrap().exp().unwrap()), &vec(&p), 1e-6);
    assert_eq!(x.sum_all().unwrap().to_scalar::<f32>().unwrap(), 24.0);
}

#[test]
fn layout_ops() {
    let h = host(0);
    let x = h.ctx.arange(0.0, 24.0, 1.0, DType::F32).unwrap().reshape(&[2, 3, 4]).unwrap();
    assert_eq!(x.reshape_infer(&[-1, 4]).unwrap().dims(), vec![6, 4]);
    assert_eq!(x.transpose(0, 2).unwrap().dims(), vec![4, 3, 2]);
    assert_eq!(x.permute([2, 0, 1]).unwrap().dims(), vec![4, 2, 3]);
    close(&vec(&x.narrow(2, 1, 2).unwrap().flatten_all().unwrap()).as_slice()[..4], &[1.0, 2.0, 5.0, 6.0], 0.0);
    assert_eq!(x.unsqueeze(-1).unwrap().dims(), vec![2, 3, 4, 1]);
    assert_eq!(x.unsqueeze(0).unwrap().squeeze(0).unwrap().dims(), vec![2, 3, 4]);
    assert_eq!(x.flatten_from(1).unwrap().dims(), vec![2, 12]);
    let r = h.ctx.tensor(&[1f32, 2.0], &[2, 1]).unwrap().broadcast_as(&[2, 3]).unwrap().contiguous().unwrap();
    close(&vec(&r), &[1.0, 1.0, 1.0, 2.0, 2.0, 2.0], 0.0);
    let a = h.ctx.ones(&[2, 2]).unwrap();
    assert_eq!(Tensor::cat(&[&a, &a], 0).unwrap().dims(), vec![4, 2]);
    assert_eq!(Tensor::stack(&[&a, &a, &a], 1).unwrap().dims(), vec![2, 3, 2]);
    let m = h.ctx.tensor(&[1f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    close(&vec(&m.matmul(&m.t().unwrap()).unwrap()), &[5.0, 11.0, 11.0, 25.0], 0.0);
    assert!(x.transpose(0, 3).is_err(), "out-of-range dims are errors");
}

#[test]
fn index_ops() {
    let h = host(0);
    let x = h.ctx.tensor(&[1f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
    let idx = h.ctx.tensor(&[2u32, 0], &[2]).unwrap();
    close(&vec(&x.index_select(&idx, 1).unwrap()), &[3.0, 1.0, 6.0, 4.0], 0.0);
    let g = h.ctx.tensor(&[2i64, 1], &[2, 1]).unwrap();
    close(&vec(&x.gather(&g, 1).unwrap()), &[3.0, 5.0], 0.0);
    let z = h.ctx.zeros(&[2, 3]).unwrap();
    let src = h.ctx.ones(&[2, 1]).unwrap();
    close(&vec(&z.scatter_add(&g, &src, 1).unwrap()), &[0.0, 0.0, 1.0, 0.0, 1.0, 0.0], 0.0);
    let mask = h.ctx.tensor(&[1u8, 0, 1], &[3]).unwrap();
    close(&vec(&mask.where_cond(&x, &z).unwrap()), &[1.0, 0.0, 3.0, 4.0, 0.0, 6.0], 0.0);
    let oh = h.ctx.tensor(&[0i64, 2], &[2]).unwrap().one_hot(3).unwrap();
    close(&vec(&oh), &[1.0, 0.0, 0.0, 0.0, 0.0, 1.0], 0.0);
}

#[test]
fn conv_pool_dropout_and_rng() {
    let h = host(7);
    let x = h.ctx.arange(0.0, 16.0, 1.0, DType::F32).unwrap().reshape(&[1, 1, 4, 4]).unwrap();
    let k = h.ctx.ones(&[1, 1, 2, 2]).unwrap();
    let y = x.conv2d(&k, 0, 2, 1, 1).unwrap();
    close(&vec(&y), &[10.0, 18.0, 42.0, 50.0], 0.0);
    let b = h.ctx.tensor(&[0.5f32], &[1]).unwrap();
    close(&vec(&x.conv2d_bias(&k, &b, 0, 2).unwrap()), &[10.5, 18.5, 42.5, 50.5], 0.0);
    close(&vec(&x.max_pool2d(2).unwrap()), &[5.0, 7.0, 13.0, 15.0], 0.0);
    close(&vec(&x.avg_pool2d(2).unwrap()), &[2.5, 4.5, 10.5, 12.5], 0.0);
    let ones = h.ctx.ones(&[1000]).unwrap();
    let d = h.ctx.dropout(&ones, 0.5, true).unwrap();
    let kept = vec(&d).iter().filter(|&&v| v > 0.0).count();
    assert!((400..600).contains(&kept), "kept {kept} of 1000");
    assert!(vec(&d).iter().all(|&v| v == 0.0 || v == 2.0), "inverted dropout scales by 1/(1-p)");
    assert_eq!(vec(&h.ctx.dropout(&ones, 0.5, false).unwrap()), vec![1.0; 1000]);
    // Same seed and role: same stream.
    let a = vec(&host(7).ctx.randn(0.0, 1.0, &[5]).unwrap());
    let b = vec(&host(7).ctx.randn(0.0, 1.0, &[5]).unwrap());
    let c = vec(&host(8).ctx.randn(0.0, 1.0, &[5]).unwrap());
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn dho_inference_reference_12b() {
    let h = host(0);
    let h_ce = h.ctx.tensor(&[2f32, 1.0, 0.1, 0.5, 2.5, -1.0], &[2, 3]).unwrap();
    let h_kd = h.ctx.tensor(&[1.5f32, 0.5, 0.0, 0.2, 1.0, 0.8], &[2, 3]).unwrap();
    let p = retort_sdk::functional::dho_combine(&h_ce, &h_kd, 0.5, 0.5).unwrap().exp().unwrap();
    let rows = p.to_vec2::<f32>().unwrap();
    close(&rows[0], &[0.75139794, 0.17831409, 0.07028798], 1e-5);
    close(&rows[1], &[0.11197638, 0.69605153, 0.19197209], 1e-5);
    assert_eq!(p.argmax(1).unwrap().to_vec1::<u32>().unwrap(), vec![0, 1]);
}

/// The fused softmax losses through the table agree with the SDK's composition (the fallback
/// used on older hosts), values and masked-label handling.
#[test]
fn fused_softmax_losses_match_the_composition() {
    use retort_sdk::functional as f;
    let h = host(3);
    let zs = h.ctx.randn(0.0, 2.0, &[5, 7]).unwrap();
    let zt = h.ctx.randn(0.0, 2.0, &[5, 7]).unwrap();
    let fused = zt.kl_div_rows(&zs, 4.0).unwrap();
    let plain = f::kl_rows(&f::log_probs(&zt, 4.0).unwrap(), &f::log_probs(&zs, 4.0).unwrap()).unwrap();
    close(&vec(&fused), &vec(&plain), 1e-6);
    let labels = h.ctx.tensor(&[0i64, 6, -100, 3, 1], &[5]).unwrap();
    let fused = zs.cross_entropy_rows(&labels).unwrap();
    let plain = f::hard_ce_rows(&zs.log_softmax(-1).unwrap(), &labels).unwrap();
    close(&vec(&fused), &vec(&plain), 1e-6);
    assert_eq!(vec(&fused)[2], 0.0);
    let bad = h.ctx.tensor(&[0i64, 7, 0, 0, 0], &[5]).unwrap();
    let err = zs.cross_entropy_rows(&bad).unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
}
