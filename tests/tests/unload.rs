//! 200 load/use/unload cycles of one library, alone in its test binary so that no other test's
//! libraries (a panicking plugin stays mapped) disturb the counts.
// Reference values are quoted to the spec's precision.
#![allow(clippy::excessive_precision, clippy::approx_constant)]
use candle_core::Var;
use retort::{loader::leaked_libraries, Host, Inputs, Library, LossInstance};
use retort_e2e::{plugin, rss_kib};

#[test]
fn two_hundred_load_unload_cycles_leave_no_mapping() {
    let path = plugin("retort-loss-hinton-kd");
    let host = Host::cpu(0);
    let zs = Var::from_tensor(&retort_e2e::seeded_normal(&[16, 10], 1.0, 8)).unwrap();
    let zt = retort_e2e::seeded_normal(&[16, 10], 1.0, 9);
    let inputs = Inputs::new().tensor("student", zs.as_tensor()).tensor("teacher", &zt);
    let cycle = |mapped: &mut Vec<std::path::PathBuf>| {
        let lib = Library::load(&path).unwrap();
        mapped.push(lib.mapped_path().to_path_buf());
        let mut l = LossInstance::new(&host, &lib, "hinton-kd", "kd", "{}").unwrap();
        l.loss(&inputs).unwrap().backward().unwrap();
    };
    let mut mapped = Vec::new();
    for _ in 0..20 {
        cycle(&mut mapped);
    }
    let leaked_before = leaked_libraries();
    let rss0 = rss_kib();
    for _ in 0..200 {
        cycle(&mut mapped);
    }
    let rss1 = rss_kib();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for p in &mapped {
        assert!(!maps.contains(p.to_str().unwrap()), "{} is still mapped", p.display());
        assert!(!p.exists(), "the private copy {} is removed", p.display());
    }
    assert_eq!(leaked_libraries(), leaked_before);
    let growth = rss1.saturating_sub(rss0);
    eprintln!("RSS growth over 200 load/use/unload cycles: {growth} KiB ({rss0} → {rss1} KiB)");
    assert!(growth < 64 * 1024, "RSS grew by {growth} KiB over 200 cycles");
}
