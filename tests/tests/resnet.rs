//! The `resnet` model: the taps feature methods index (methods spec §5: `f0` stem, `f1…fN`
//! stages, `pooled`), shapes through strided stages and projection shortcuts, and a short run
//! through the trainer that learns.
use candle_core::Device;
use retort::{Host, Inputs, Library, ModelInstance};
use retort_e2e::{
    plugin,
    run::{fresh_dir, mnist_run, report, retort, train_records},
    seeded_normal,
};

#[test]
fn resnet_taps_each_stage_and_the_pooled_vector() {
    let host = Host::cpu(3);
    let lib = Library::load(&plugin("retort-model-resnet")).unwrap();
    let cfg = r#"{"stem": 4, "widths": [4, 8, 16], "blocks": [1, 2, 1]}"#;
    let mut m = ModelInstance::new(&host, &lib, "resnet", "net", cfg).unwrap();
    let x = seeded_normal(&[2, 1, 28, 28], 1.0, 5);
    let z = m.forward(&Inputs::new().tensor("input", &x).scalar("train", 1.0)).unwrap();
    assert_eq!(z.dims(), &[2, 10]);
    let shape = |t: &str| host.taps.get("net", t).unwrap_or_else(|| panic!("tap {t}")).dims().to_vec();
    assert_eq!(shape("f0"), [2, 4, 28, 28]);
    assert_eq!(shape("f1"), [2, 4, 28, 28]);
    assert_eq!(shape("f2"), [2, 8, 14, 14]);
    assert_eq!(shape("f3"), [2, 16, 7, 7]);
    assert_eq!(shape("pooled"), [2, 16]);
    // The pooled vector is the last stage's spatial mean, and the stages are post-ReLU.
    let f3 = host.taps.get("net", "f3").unwrap();
    let mean = f3.mean(3).unwrap().mean(2).unwrap();
    let d = (mean - host.taps.get("net", "pooled").unwrap()).unwrap().abs().unwrap().max_all().unwrap();
    assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
    assert!(f3.min_all().unwrap().to_scalar::<f32>().unwrap() >= 0.0);
    // Parameters: a projection shortcut where the width or the size changes, none elsewhere.
    let names: Vec<String> = host.params.params(Some("net")).into_iter().map(|p| p.name).collect();
    assert!(
        names.iter().any(|n| n == "layer2.0.down.conv.weight")
            && names.iter().any(|n| n == "layer3.0.down.conv.weight")
    );
    assert!(!names.iter().any(|n| n.starts_with("layer1.0.down") || n.starts_with("layer2.1.down")), "{names:?}");
    let bad = ModelInstance::new(&host, &lib, "resnet", "bad", r#"{"widths": [4, 8], "blocks": [1, 1, 1]}"#);
    assert!(bad.err().unwrap().to_string().contains("one per stage"));
    let _ = Device::Cpu;
}

#[test]
fn a_small_resnet_fits_fashion_mnist_images() {
    let tmp = fresh_dir("resnet");
    let text = format!(
        "{head}\n[models.net]\nplugin = \"resnet\"\nparams = {{ stem = 4, widths = [4, 8], blocks = [1] }}\n\n\
         [optimizer]\nkind = \"adamw\"\nlr = 0.01\n\n[logging]\nevery_steps = 1\n\n[eval]\nevery_epochs = 100\n\n\
         [[stages]]\nname = \"net\"\ntrain = \"net\"\nepochs = 10\nsubset = 100\nlosses = [{{ plugin = \"cross-entropy\" }}]\n",
        head = mnist_run(&tmp, "resnet", 1)
            .replace("dataset = \"mnist\"", "dataset = \"fashion-mnist\"")
            .replace("data/mnist", "data/fashion-mnist")
            .replace("seed = 1\n", "seed = 1\nthreads = 1\n")
    );
    let cfg = tmp.join("resnet.toml");
    std::fs::write(&cfg, text).unwrap();
    let (ok, out, err) = retort(&["train", cfg.to_str().unwrap()], &[]);
    assert!(ok, "{out}\n{err}");
    let run = tmp.join("resnet");
    let loss: Vec<f64> = train_records(&run).iter().map(|r| r["loss"].as_f64().unwrap()).collect();
    let (first, last) = (loss[..4].iter().sum::<f64>() / 4.0, loss[loss.len() - 4..].iter().sum::<f64>() / 4.0);
    assert!(last < 0.9 * first, "the loss falls: {first:.3} → {last:.3}");
    let errors = report(&run)["models"]["net"]["test_errors"].as_u64().unwrap();
    assert!(errors < 8000, "better than chance (9,000 errors): {errors}");
}
