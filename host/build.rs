//! Exposes the plugin-api version to the CLI's `--version`.
fn main() {
    let v = std::fs::read_to_string("../plugin-api/Cargo.toml")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("version = ").map(|v| v.trim_matches('"').to_string())))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=RETORT_ABI_VERSION={v}");
    println!("cargo:rerun-if-changed=../plugin-api/Cargo.toml");
}
