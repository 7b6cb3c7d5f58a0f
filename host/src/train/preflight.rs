//! Checks every plugin a config names before any training starts: the plugin exists with the right
//! kind, its parameters are ones it declares with values of the declared type, and it constructs
//! (so its own range checks run). Errors name the file, the key path, the plugin and what was
//! expected, with the closest known name.
use std::sync::Arc;

use candle_core::Device;
use retort_plugin_api::codes::kind;
use serde_json::Value;

use crate::{
    config::{closest, ConfigError, RunConfig},
    loader::{PluginMeta, Registry},
    Host, LossInstance, ModelInstance,
};

fn did_you_mean(s: Option<&str>) -> String {
    s.map(|k| format!("did you mean `{k}`? ")).unwrap_or_default()
}

/// A JSON value's kind in words, for "expected … got …".
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

/// One plugin use in a config: where it is, what it must be, its parameters.
pub struct PluginUse<'a> {
    /// Key path of the section (`stages[2].losses[0]`, `models.teacher`).
    pub key: String,
    pub plugin: &'a str,
    pub kind: u32,
    pub params: &'a Value,
}

/// Every plugin use of `cfg`: model slots, then each stage's loss terms.
pub fn plugin_uses(cfg: &RunConfig) -> Vec<PluginUse<'_>> {
    let models = cfg.models.iter().map(|(slot, m)| PluginUse {
        key: format!("models.{slot}"),
        plugin: &m.plugin,
        kind: kind::MODEL,
        params: &m.params,
    });
    let losses = cfg.stages.iter().enumerate().flat_map(|(i, st)| {
        st.losses.iter().enumerate().map(move |(j, l)| PluginUse {
            key: format!("stages[{i}].losses[{j}]"),
            plugin: &l.plugin,
            kind: kind::LOSS,
            params: &l.params,
        })
    });
    let teachers = cfg.teachers.iter().map(|(slot, t)| PluginUse {
        key: format!("teachers.{slot}"),
        plugin: &t.plugin,
        kind: kind::TEACHER,
        params: &t.params,
    });
    let routers = cfg.routers.iter().map(|(slot, r)| PluginUse {
        key: format!("routers.{slot}"),
        plugin: &r.plugin,
        kind: kind::ROUTER,
        params: &r.params,
    });
    let augmenters = cfg.augmenters.iter().map(|(slot, a)| PluginUse {
        key: format!("augmenters.{slot}"),
        plugin: &a.plugin,
        kind: kind::AUGMENTER,
        params: &a.params,
    });
    models.chain(teachers).chain(routers).chain(augmenters).chain(losses).collect()
}

/// Checks the parameter names and value types of `u` against the plugin's description; the
/// error is (key path, message).
pub fn check_params(u: &PluginUse<'_>, meta: &PluginMeta) -> Result<(), (String, String)> {
    let Some(given) = u.params.as_object() else {
        return Err((format!("{}.params", u.key), "must be a table of parameters".into()));
    };
    let what = format!("{} plugin `{}`", meta.kind_name(), meta.name);
    for (name, value) in given {
        let key = format!("{}.params.{name}", u.key);
        let Some(p) = meta.params.iter().find(|p| &p.name == name) else {
            // A plugin that describes no parameters may take any (it validates them itself).
            if meta.params.is_empty() {
                continue;
            }
            let names: Vec<&str> = meta.params.iter().map(|p| p.name.as_str()).collect();
            return Err((
                key,
                format!(
                    "{what} has no parameter `{name}`; {}its parameters: {} (see `retort plugins inspect {}`)",
                    did_you_mean(closest(name, names.iter().copied())),
                    names.join(", "),
                    meta.name
                ),
            ));
        };
        let default: Value = serde_json::from_str(&p.default_json).unwrap_or(Value::Null);
        let fits = match (&default, value) {
            (Value::Null, _) => true,
            (d, v) => std::mem::discriminant(d) == std::mem::discriminant(v),
        };
        if !fits {
            return Err((
                key,
                format!(
                    "{what}: `{name}` expects {} (default {}), got {} {value}{}",
                    json_kind(&default),
                    p.default_json,
                    json_kind(value),
                    if p.doc.is_empty() { String::new() } else { format!(" — {}", p.doc) }
                ),
            ));
        }
    }
    Ok(())
}

/// Resolves, checks and constructs every plugin `cfg` names (in a scratch host on the CPU, so
/// nothing of the run is touched). `source` names the config in errors.
pub fn preflight(cfg: &RunConfig, registry: &Registry, source: &str) -> Result<(), ConfigError> {
    let fail = |key: String, message: String| ConfigError { source_name: source.to_string(), key: Some(key), message };
    let scratch = Host::new(Device::Cpu, cfg.run.seed);
    for (n, u) in plugin_uses(cfg).iter().enumerate() {
        let Ok(entry) = registry.find(u.plugin, u.kind) else {
            let same_kind = registry.entries().iter().filter(|e| e.meta.kind == u.kind).map(|e| e.meta.name.as_str());
            let known: Vec<&str> = same_kind.collect();
            let other_kind =
                registry.get(u.plugin).map(|e| format!(" (`{}` is a {} plugin)", u.plugin, e.meta.kind_name()));
            return Err(fail(
                format!("{}.plugin", u.key),
                format!(
                    "no {} plugin named `{}`{}; {}known: {}{}",
                    kind::name(u.kind),
                    u.plugin,
                    other_kind.unwrap_or_default(),
                    did_you_mean(closest(u.plugin, known.iter().copied())),
                    if known.is_empty() {
                        let dirs: Vec<String> = registry.searched.iter().map(|d| d.display().to_string()).collect();
                        format!(
                            "none — no {} plugin library in {}; build them (`cargo build --release`) or add \
                             their directory to run.plugin_dirs or RETORT_PLUGIN_PATH",
                            kind::name(u.kind),
                            dirs.join(", ")
                        )
                    } else {
                        known.join(", ")
                    },
                    if registry.problems.is_empty() {
                        String::new()
                    } else {
                        format!(" (libraries refused: {})", registry.problems.join("; "))
                    }
                ),
            ));
        };
        check_params(u, &entry.meta).map_err(|(k, m)| fail(k, m))?;
        // A text run feeds byte ids `[B, L]`: its models must be sequence models, which declare
        // the positions they read (`context`, as the generator expects too).
        if cfg.data.is_text() && u.kind == kind::MODEL && !entry.meta.params.iter().any(|p| p.name == "context") {
            return Err(fail(
                format!("{}.plugin", u.key),
                format!(
                    "`{}` is not a sequence model (it declares no `context` parameter); a text dataset feeds \
                     byte ids [batch, length] — use `gpt`",
                    u.plugin
                ),
            ));
        }
        let lib = registry.load(u.plugin, u.kind).map_err(|e| fail(format!("{}.plugin", u.key), e.to_string()))?;
        // A model's role is its key, so its parameters can be listed by slot below.
        let role = if u.kind == kind::MODEL { u.key.clone() } else { format!("preflight.{n}") };
        let built = construct(&scratch, &lib, u, &role);
        built.map_err(|e| fail(format!("{}.params", u.key), e.to_string()))?;
    }
    // `freeze` and `init_from` name parameters, known now that the models are built: a mistake
    // stops the run before its directory exists.
    let names = |slot: &str| {
        scratch.params.params(Some(&format!("models.{slot}"))).into_iter().map(|p| p.name).collect::<Vec<_>>()
    };
    match super::sharing::sharing_error(cfg, names) {
        Some((key, message)) => Err(fail(key, message)),
        None => Ok(()),
    }
}

/// Builds (and drops) one plugin instance.
fn construct(host: &Host, lib: &Arc<crate::Library>, u: &PluginUse<'_>, role: &str) -> crate::Result<()> {
    let params = u.params.to_string();
    if u.kind == kind::MODEL {
        ModelInstance::new(host, lib, u.plugin, role, &params).map(drop)
    } else if u.kind == kind::TEACHER {
        crate::TeacherInstance::new(host, lib, u.plugin, role, &params).map(drop)
    } else if u.kind == kind::ROUTER {
        crate::RouterInstance::new(host, lib, u.plugin, role, &params).map(drop)
    } else if u.kind == kind::AUGMENTER {
        crate::AugmenterInstance::new(host, lib, u.plugin, role, &params).map(drop)
    } else {
        LossInstance::new(host, lib, u.plugin, role, &params).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_not_strangers() {
        let known = ["temperature", "alpha", "tau_squared"];
        assert_eq!(closest("temprature", known), Some("temperature"));
        assert_eq!(closest("alhpa", known), Some("alpha"));
        assert_eq!(closest("zzz", known), None);
        assert_eq!(closest("hinton-kdd", ["hinton-kd", "dkd"]), Some("hinton-kd"));
    }

    fn meta() -> PluginMeta {
        let p = |name: &str, default: &str| crate::loader::ParamMeta {
            name: name.into(),
            default_json: default.into(),
            doc: "softening".into(),
        };
        PluginMeta {
            name: "hinton-kd".into(),
            kind: kind::LOSS,
            version: "0".into(),
            summary: String::new(),
            params: vec![p("temperature", "4.0"), p("mask", "null")],
        }
    }

    #[test]
    fn params_are_checked_by_name_and_type() {
        let check = |v: Value| {
            let u = PluginUse { key: "stages[2].losses[0]".into(), plugin: "hinton-kd", kind: kind::LOSS, params: &v };
            check_params(&u, &meta())
        };
        assert!(check(serde_json::json!({"temperature": 20, "mask": [1]})).is_ok());
        let (k, m) = check(serde_json::json!({"temprature": 20})).unwrap_err();
        assert_eq!(k, "stages[2].losses[0].params.temprature");
        assert!(m.contains("did you mean `temperature`") && m.contains("hinton-kd"), "{m}");
        let (k, m) = check(serde_json::json!({"temperature": "twenty"})).unwrap_err();
        assert_eq!(k, "stages[2].losses[0].params.temperature");
        assert!(m.contains("expects a number") && m.contains("\"twenty\""), "{m}");
    }
}
