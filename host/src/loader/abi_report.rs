//! Short summaries of abi_stable layout errors (its own report runs to thousands of lines).
use retort_plugin_api::abi_stable::{abi_stability::abi_checking::AbiInstabilityErrors, type_layout::TLFieldOrFunction};

/// One line per mismatch: the field path from the root module, then the `Error:` lines of
/// abi_stable's report with their expected/found values.
pub fn summarize(errs: &AbiInstabilityErrors) -> String {
    let mut lines = Vec::new();
    for e in errs.errors.iter() {
        let path: Vec<String> = e
            .stack_trace
            .iter()
            .map(|ef| match &ef.found {
                TLFieldOrFunction::Field(f) => f.name().to_string(),
                TLFieldOrFunction::Function(f) => f.to_string().lines().next().unwrap_or("fn").trim().to_string(),
            })
            .collect();
        let text = e.to_string();
        let mut reasons = Vec::new();
        let mut it = text.lines().map(str::trim).peekable();
        while let Some(line) = it.next() {
            if let Some(msg) = line.strip_prefix("Error:") {
                let mut detail = String::new();
                if it.peek() == Some(&"Expected:") {
                    it.next();
                    let expected = it.next().unwrap_or("").to_string();
                    if it.peek() == Some(&"Found:") {
                        it.next();
                        let found = it.next().unwrap_or("");
                        detail = format!(" (expected {expected}, found {found})");
                    }
                }
                reasons.push(format!("{}{detail}", msg.trim()));
            }
        }
        if reasons.is_empty() {
            reasons.push(text.lines().next().unwrap_or("layout mismatch").to_string());
        }
        let at = if path.is_empty() { "<root module>".to_string() } else { path.join(" → ") };
        lines.push(format!("{} at {at}", reasons.join("; ")));
    }
    lines.dedup();
    lines.join("\n")
}
