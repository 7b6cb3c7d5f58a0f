//! Plugin-boundary overhead at one thread: per-op cost through the host table vs calling candle
//! directly, and a KD loss + backward at 256×100 through the loaded `hinton-kd` library vs the same
//! math in candle. Run: `RAYON_NUM_THREADS=1 cargo run --release -p retort-bench --bin abi-overhead`
//! (after `cargo build --release`, so the plugin library is next to the binary).
use candle_core::{Device, Tensor, Var, D};
use retort::{backend::host_api, Host, Inputs, Library, LossInstance};
use retort_bench::{exe_dir, median_ns};
use retort_sdk::{api::PluginHost, Ctx};

fn log_softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    let m = x.max_keepdim(D::Minus1)?.detach();
    let s = x.broadcast_sub(&m)?;
    s.broadcast_sub(&s.exp()?.sum_keepdim(D::Minus1)?.log()?)
}

fn direct_kd(zs: &Tensor, zt: &Tensor, tau: f64) -> candle_core::Result<Tensor> {
    let log_ps = log_softmax(&zs.affine(1.0 / tau, 0.0)?)?;
    let log_pt = log_softmax(&zt.detach().affine(1.0 / tau, 0.0)?)?;
    let pt = log_pt.exp()?;
    let term = (pt.clone() * (log_pt - log_ps)?)?;
    let zero = term.zeros_like()?;
    let rows = pt.gt(&zero)?.where_cond(&term, &zero)?.sum(D::Minus1)?;
    rows.mean_all()?.affine(tau * tau, 0.0)
}

/// A named pair of closures: the op called on candle directly, and through the host table.
type Case<'a> = (&'a str, Box<dyn Fn() + 'a>, Box<dyn Fn() + 'a>);

fn main() -> anyhow::Result<()> {
    let host = Host::cpu(0);
    let pctx = host.ctx("bench", "bench");
    let ctx = Ctx::new(PluginHost { api: host_api(), ctx: pctx.raw() });

    println!("per-op cost, median ns (one thread)");
    println!("{:<22} {:>10} {:>10} {:>10}", "op", "direct", "table", "overhead");
    for n in [1usize, 1024] {
        let x = ctx.randn(0.0, 1.0, &[n])?;
        // SAFETY: `x` owns a live handle.
        let xc = unsafe { retort::backend::tensor_of(x.raw()) }.clone();
        let cases: [Case; 3] = [
            ("exp", Box::new(|| drop(xc.exp())), Box::new(|| drop(x.exp()))),
            ("add", Box::new(|| drop(xc.broadcast_add(&xc))), Box::new(|| drop(x.add(&x)))),
            ("sum", Box::new(|| drop(xc.sum_keepdim(0))), Box::new(|| drop(x.sum_keepdim(0)))),
        ];
        for (name, direct, table) in cases {
            let d = median_ns(31, 20_000, &direct);
            let t = median_ns(31, 20_000, &table);
            println!("{:<22} {:>10.0} {:>10.0} {:>+10.0}", format!("{name} [{n}]"), d, t, t - d);
        }
    }

    let lib = Library::load(&exe_dir().join(format!(
        "{}retort_loss_hinton_kd.{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_EXTENSION
    )))?;
    let mut kd = LossInstance::new(&host, &lib, "hinton-kd", "kd", r#"{"temperature": 4.0}"#)?;
    let zs = Var::from_tensor(&Tensor::randn(0f32, 2.0, (256, 100), &Device::Cpu)?)?;
    let zt = Tensor::randn(0f32, 2.0, (256, 100), &Device::Cpu)?;
    let inputs = Inputs::new().tensor("student", zs.as_tensor()).tensor("teacher", &zt);
    let direct = median_ns(41, 200, || {
        let l = direct_kd(zs.as_tensor(), &zt, 4.0).and_then(|l| l.backward());
        drop(l);
    });
    let plugin = median_ns(41, 200, || {
        let l = kd.loss(&inputs).map(|l| l.backward());
        drop(l);
    });
    println!("\nKD loss + backward, 256×100, τ = 4, median µs (one thread)");
    println!(
        "direct candle {:.1} µs, via plugin {:.1} µs, ratio plugin/direct {:.3}",
        direct / 1e3,
        plugin / 1e3,
        plugin / direct
    );
    Ok(())
}
