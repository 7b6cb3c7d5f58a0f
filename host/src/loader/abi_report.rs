//! Short summaries of abi_stable layout errors (its own report runs to thousands of lines).
use retort_plugin_api::abi_stable::{
    abi_stability::abi_checking::AbiInstabilityErrors, type_layout::TLFieldOrFunction,
};

/// One clause per mismatch: abi_stable's `Error:` lines with expected/found values, then the
/// field path from the root module.
pub fn summarize(errs: &AbiInstabilityErrors) -> String {
    let mut lines = Vec::new();
    for e in errs.errors.iter().filter(|e| !e.errs.is_empty()) {
        // Field names only: function signatures and positional parameter lists are noise here.
        let path: Vec<&str> = e
            .stack_trace
            .iter()
            .filter_map(|ef| match &ef.found {
                TLFieldOrFunction::Field(f) => Some(f.name()),
                TLFieldOrFunction::Function(_) => None,
            })
            .filter(|n| !n.is_empty() && !n.contains(',') && !n.chars().all(|c| c.is_ascii_digit()))
            .map(|n| if n == "__returns" { "(return)" } else { n })
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
            reasons.push("layout mismatch".to_string());
        }
        let at =
            if path.is_empty() { "the root module".to_string() } else { format!("PluginModule.{}", path.join(".")) };
        lines.push(format!("{} at {at}", reasons.join("; ")));
    }
    if lines.is_empty() {
        lines.push("layout mismatch (abi_stable gave no detail)".to_string());
    }
    lines.dedup();
    lines.join("; ")
}
