//! The `gpt` model: no position sees the future, the KV cache gives the uncached logits, and the
//! taps a feature loss indexes exist with their shapes.
use candle_core::{Device, Tensor};
use retort::{Host, Inputs, Library, ModelInstance};
use retort_e2e::plugin;

const SMALL: &str = r#"{"context": 32, "layers": 2, "width": 32, "heads": 4}"#;

fn tokens(n: usize, seed: u32) -> Vec<u32> {
    (0..n as u32).map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed.wrapping_mul(97)) >> 7) % 256).collect()
}

fn logits(m: &mut ModelInstance, ids: &[u32], rows: usize, cache: Option<f64>) -> Tensor {
    let x = Tensor::from_vec(ids.to_vec(), (rows, ids.len() / rows), &Device::Cpu).unwrap();
    let mut inputs = Inputs::new().tensor("input", &x).scalar("train", 0.0);
    if let Some(c) = cache {
        inputs = inputs.scalar("kv_cache", c);
    }
    m.forward(&inputs).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn no_position_sees_the_future() {
    let host = Host::cpu(7);
    let lib = Library::load(&plugin("retort-model-gpt")).unwrap();
    let mut m = ModelInstance::new(&host, &lib, "gpt", "lm", SMALL).unwrap();
    let ids = tokens(2 * 16, 1);
    let z = logits(&mut m, &ids, 2, None);
    assert_eq!(z.dims(), &[2, 16, 256]);
    for t in [0usize, 5, 15] {
        let mut changed = ids.clone();
        changed[t] = (changed[t] + 1) % 256;
        let z2 = logits(&mut m, &changed, 2, None);
        let row = |z: &Tensor| z.get(0).unwrap();
        if t > 0 {
            let before = |z: &Tensor| row(z).narrow(0, 0, t).unwrap();
            assert_eq!(max_diff(&before(&z), &before(&z2)), 0.0, "positions before {t} do not move");
        }
        let after = |z: &Tensor| row(z).narrow(0, t, 16 - t).unwrap();
        assert!(max_diff(&after(&z), &after(&z2)) > 1e-4, "position {t} and later see token {t}");
        assert_eq!(max_diff(&z.get(1).unwrap(), &z2.get(1).unwrap()), 0.0, "the other row is untouched");
    }
}

#[test]
fn kv_cache_logits_equal_uncached_logits() {
    let host = Host::cpu(8);
    let lib = Library::load(&plugin("retort-model-gpt")).unwrap();
    let mut m = ModelInstance::new(&host, &lib, "gpt", "lm", SMALL).unwrap();
    let ids = tokens(2 * 24, 2);
    let full = logits(&mut m, &ids, 2, None);
    let part = |from: usize, to: usize| -> Vec<u32> {
        (0..2).flat_map(|b| ids[b * 24 + from..b * 24 + to].to_vec()).collect()
    };
    // A prompt of 10 tokens, then one token per call, then a chunk of 5 more.
    let mut parts = vec![logits(&mut m, &part(0, 10), 2, Some(2.0))];
    for t in 10..19 {
        parts.push(logits(&mut m, &part(t, t + 1), 2, Some(1.0)));
    }
    parts.push(logits(&mut m, &part(19, 24), 2, Some(1.0)));
    let cached = Tensor::cat(&parts, 1).unwrap();
    assert_eq!(cached.dims(), full.dims());
    let d = max_diff(&cached, &full);
    assert!(d < 1e-4, "cached and uncached logits differ by {d}");
    // A call without the scalar neither reads nor changes the cache.
    let again = logits(&mut m, &ids, 2, None);
    assert_eq!(max_diff(&again, &full), 0.0);
    // Past the context the model refuses rather than wrapping positions.
    let x = Tensor::from_vec(tokens(2 * 9, 3), (2, 9), &Device::Cpu).unwrap();
    let e = m.forward(&Inputs::new().tensor("input", &x).scalar("train", 0.0).scalar("kv_cache", 1.0));
    assert!(e.err().unwrap().to_string().contains("exceed the context"));
}

#[test]
fn taps_hidden_states_and_attention_maps() {
    let host = Host::cpu(9);
    let lib = Library::load(&plugin("retort-model-gpt")).unwrap();
    let mut m = ModelInstance::new(&host, &lib, "gpt", "lm", SMALL).unwrap();
    let ids = tokens(3 * 8, 4);
    logits(&mut m, &ids, 3, None);
    let shape = |t: &str| host.taps.get("lm", t).unwrap_or_else(|| panic!("tap {t}")).dims().to_vec();
    assert_eq!(shape("block1"), [3, 8, 32]);
    assert_eq!(shape("block2"), [3, 8, 32]);
    assert_eq!(shape("hidden"), [3, 8, 32]);
    assert_eq!(shape("attention2"), [3, 4, 8, 8]);
    // Each attention row is a distribution over the positions up to its own.
    let a = host.taps.get("lm", "attention1").unwrap();
    let sums = a.sum(3).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5));
    let upper = a.narrow(2, 0, 1).unwrap().narrow(3, 1, 7).unwrap().abs().unwrap().sum_all().unwrap();
    assert_eq!(upper.to_scalar::<f32>().unwrap(), 0.0, "the first position attends only to itself");
    let bad = ModelInstance::new(&host, &lib, "gpt", "bad", r#"{"width": 30, "heads": 4}"#);
    assert!(bad.err().unwrap().to_string().contains("multiple of heads"));
}
