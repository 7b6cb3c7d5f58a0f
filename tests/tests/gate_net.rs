//! MST-Distill's router (methods spec §1.6 items 3 and 4): the load-balancing loss's two modes,
//! the gradient facts of the three routing modes, and top-k KD through the host's combination.
use candle_core::{DType, Device, Tensor, Var};
use retort::{train::routing, Host, Inputs, Library, LossInstance, RouterInstance};
use retort_e2e::plugin;

fn lib(name: &str) -> std::sync::Arc<Library> {
    Library::load(&plugin(name)).unwrap()
}

fn teachers() -> Tensor {
    let v: Vec<f32> = (0..3 * 4 * 5).map(|i| ((i * 37 % 23) as f32 - 11.0) / 4.0).collect();
    Tensor::from_vec(v, (3, 4, 5), &Device::Cpu).unwrap()
}

fn student() -> Var {
    let v: Vec<f32> = (0..4 * 5).map(|i| ((i * 13 % 17) as f32 - 8.0) / 5.0).collect();
    Var::from_tensor(&Tensor::from_vec(v, (4, 5), &Device::Cpu).unwrap()).unwrap()
}

/// The KD term over the teachers, combined with `route` as the host combines an `over_teachers`
/// term, and each teacher's per-sample KD rows.
fn routed_kd(host: &Host, z: &Tensor, route: &Tensor) -> (Tensor, Vec<Tensor>) {
    let mut kd =
        LossInstance::new(host, &lib("retort-loss-hinton-kd"), "hinton-kd", "kd", r#"{"temperature": 4.0}"#).unwrap();
    let t = teachers();
    let rows: Vec<Tensor> = (0..3)
        .map(|i| kd.rows(&Inputs::new().tensor("student", z).tensor("teacher", &t.get(i).unwrap())).unwrap())
        .collect();
    (routing::combine(&rows, Some(route), None).unwrap(), rows)
}

fn route(host: &Host, cfg: &str, z: &Tensor) -> Tensor {
    let mut r = RouterInstance::new(host, &lib("retort-router-gate-net"), "gate-net", "r", cfg).unwrap();
    r.route(&Inputs::new().tensor("student", z).tensor("teachers", &teachers())).unwrap()
}

#[test]
fn load_balance_kl_and_cv_match_their_formulas() {
    let g = [[0.7f32, 0.2, 0.1], [0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1]];
    let gt = Tensor::new(&g, &Device::Cpu).unwrap();
    let host = Host::cpu(0);
    let value = |mode: &str| {
        let mut lb = LossInstance::new(&host, &lib("retort-router-gate-net"), "load-balance", "lb", mode).unwrap();
        lb.loss(&Inputs::new().tensor("gate", &gt)).unwrap().to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
    };
    let t = 3.0f64;
    let mean: Vec<f64> = (0..3).map(|e| g.iter().map(|r| r[e] as f64).sum::<f64>() / 4.0).collect();
    let kl: f64 = mean.iter().map(|m| (1.0 / t) * ((1.0 / t).ln() - m.ln())).sum::<f64>() / t;
    assert!((value("{}") - kl).abs() < 1e-6, "KL mode: {} vs {kl}", value("{}"));
    let load: Vec<f64> = mean.iter().map(|m| m * 4.0).collect();
    let mu = load.iter().sum::<f64>() / t;
    let std = (load.iter().map(|l| (l - mu).powi(2)).sum::<f64>() / (t - 1.0)).sqrt();
    let cv = value(r#"{"mode": "cv"}"#);
    assert!((cv - std / mu).abs() < 1e-6, "CV mode (unbiased std): {cv} vs {}", std / mu);
}

#[test]
fn only_the_non_official_mode_gives_the_router_a_kd_gradient() {
    for (mode, learns) in [("topk_hard", false), ("soft_weighted", false), ("soft_weighted_gate_grad", true)] {
        let host = Host::cpu(1);
        let z = student();
        let r = route(&host, &format!(r#"{{"mode": "{mode}", "k": 1}}"#), z.as_tensor());
        let (kd, _) = routed_kd(&host, z.as_tensor(), &r);
        let grads = kd.affine(0.7, 0.0).unwrap().backward().unwrap();
        let params = host.params.params(Some("r"));
        assert_eq!(params.len(), 4, "two linear layers made at the first step");
        let total: f32 = params
            .iter()
            .filter_map(|p| grads.get(p.var.as_tensor()))
            .map(|g| g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap())
            .sum();
        if learns {
            assert!(total > 0.0, "{mode}: the router learns from the KD term");
        } else {
            assert_eq!(total, 0.0, "{mode}: the KD term gives the router no gradient");
        }
        // The student always gets the KD gradient.
        assert!(grads.get(z.as_tensor()).is_some(), "{mode}");
    }
}

#[test]
fn top_k_kd_is_the_mean_of_the_selected_per_sample_kls() {
    let host = Host::cpu(2);
    let z = student();
    let r = route(&host, r#"{"k": 2}"#, z.as_tensor());
    let gate = host.taps.get("r", "gate").expect("the router taps its gate").to_vec2::<f32>().unwrap();
    let (kd, rows) = routed_kd(&host, z.as_tensor(), &r);
    let rows: Vec<Vec<f32>> = rows.iter().map(|t| t.to_vec1::<f32>().unwrap()).collect();
    let mut want = 0.0f64;
    for (b, g) in gate.iter().enumerate() {
        let mut order: Vec<usize> = (0..3).collect();
        order.sort_by(|&i, &j| g[j].total_cmp(&g[i]));
        // The rows are τ²·KL per sample (hinton-kd); the two largest gates are selected.
        want += (rows[order[0]][b] as f64 + rows[order[1]][b] as f64) / 2.0;
    }
    want /= gate.len() as f64;
    let got = kd.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
    assert!((got - want).abs() < 1e-5, "top-2 KD {got} vs {want}");
}
