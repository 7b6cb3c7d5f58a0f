//! Glue between the author traits and the ABI trait objects; used by `export_plugins!`.
use retort_plugin_api::{
    abi_stable::{
        sabi_trait::TD_Opaque,
        std_types::{RBox, RResult, RSlice, RString, RVec},
    },
    codes::{error as code, kind},
    ApiError, Augmenter, AugmenterBox, Augmenter_TO, Batch as RawBatch, HostApiRef, Loss, LossBox, Loss_TO, Model,
    ModelBox, Model_TO, OwnedTensor, ParamSpec, PluginDescription, PluginHost, RawTensor, Router, RouterBox, Router_TO,
    Teacher, TeacherBox, Teacher_TO,
};

use crate::{
    guard, AugmenterPlugin, Batch, Ctx, Error, LossPlugin, ModelPlugin, Params, Plugin, Result, RouterPlugin,
    TeacherPlugin,
};

/// The description of plugin type `P`: its name, kind, version, summary and parameters with the
/// defaults of `P::Config::default()`.
pub fn describe<P: Plugin>(kind_code: u32, version: &str) -> PluginDescription {
    let defaults = serde_json::to_value(P::Config::default()).unwrap_or(serde_json::Value::Null);
    let docs = P::param_docs();
    let params = match defaults {
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(name, v)| {
                let doc = docs.iter().find(|(n, _)| *n == name).map(|(_, d)| *d).unwrap_or("");
                ParamSpec { name: RString::from(name), default_json: RString::from(v.to_string()), doc: doc.into() }
            })
            .collect(),
        _ => RVec::new(),
    };
    PluginDescription {
        name: P::NAME.into(),
        kind: kind_code,
        version: version.into(),
        summary: P::SUMMARY.into(),
        params,
    }
}

/// Parses the JSON config of `P` and runs its checks; errors name the plugin and the parameter.
pub fn parse_config<P: Plugin>(config: &str) -> Result<P::Config> {
    let text = if config.trim().is_empty() { "{}" } else { config };
    let mut de = serde_json::Deserializer::from_str(text);
    let cfg: P::Config = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let at = e.path().to_string();
        // serde_json appends a position inside the host's JSON text, which means nothing to a user.
        let inner = e.into_inner().to_string();
        let msg = inner.split(" at line ").next().unwrap_or(&inner).to_string();
        let at = if at == "." { String::new() } else { format!("parameter `{at}`: ") };
        Error::config(format!("plugin `{}`: {at}{msg}", P::NAME))
    })?;
    cfg.check().map_err(|m| Error::config(format!("plugin `{}`: {m}", P::NAME)))?;
    Ok(cfg)
}

fn not_found(kind_code: u32, name: &str) -> ApiError {
    ApiError::new(code::NOT_FOUND, format!("this library has no {} plugin named `{name}`", kind::name(kind_code)))
}

/// The error for a constructor call naming a plugin the library does not have.
pub fn missing<T>(kind_code: u32, name: &str) -> RResult<T, ApiError> {
    RResult::RErr(not_found(kind_code, name))
}

/// An instance of author type `P` with what the ABI methods need.
pub struct Adapter<P> {
    inner: P,
    api: HostApiRef,
    version: &'static str,
}

fn build<P: Plugin>(host: PluginHost, config: &str, version: &'static str) -> Result<Adapter<P>> {
    let cfg = parse_config::<P>(config)?;
    let inner = P::new(Ctx::new(host), cfg)?;
    Ok(Adapter { inner, api: host.api, version })
}

fn state_of<P: Plugin>(p: &P) -> RResult<RVec<u8>, ApiError> {
    guard(|| p.state().map(RVec::from))
}

fn load_state_of<P: Plugin>(p: &mut P, s: RSlice<'_, u8>) -> RResult<(), ApiError> {
    guard(|| p.load_state(s.as_slice()))
}

macro_rules! adapter_kind {
    ($author:ident, $abi:ident, $to:ident, $boxed:ident, $ctor:ident, $kind:expr,
     $method:ident($batch:ident) -> $ret:ty => $body:expr $(, extra { $($extra:item)* })?) => {
        impl<P: $author> $abi for Adapter<P> {
            $($($extra)*)?
            fn describe(&self) -> PluginDescription {
                describe::<P>($kind, self.version)
            }
            fn $method(&mut self, raw: RawBatch<'_>) -> RResult<$ret, ApiError> {
                let $batch = Batch::new(raw, self.api);
                let inner = &mut self.inner;
                guard(|| $body(inner, &$batch))
            }
            fn state(&self) -> RResult<RVec<u8>, ApiError> {
                state_of(&self.inner)
            }
            fn load_state(&mut self, s: RSlice<'_, u8>) -> RResult<(), ApiError> {
                load_state_of(&mut self.inner, s)
            }
        }

        /// Constructs author type `P` behind the ABI trait object.
        pub fn $ctor<P: $author>(host: PluginHost, config: &str, version: &'static str) -> RResult<$boxed, ApiError> {
            guard(|| build::<P>(host, config, version).map(|a| $to::from_value(a, TD_Opaque)))
        }
    };
}

adapter_kind!(LossPlugin, Loss, Loss_TO, LossBox, new_loss, kind::LOSS,
loss(batch) -> RawTensor => |p: &mut P, b: &Batch| p.loss(b).map(crate::Tensor::into_raw),
extra {
    #[cfg(not(feature = "short-table"))]
    fn loss_rows(&mut self, raw: RawBatch<'_>) -> RResult<RawTensor, ApiError> {
        let batch = Batch::new(raw, self.api);
        let inner = &mut self.inner;
        match guard(|| inner.loss_rows(&batch)) {
            RResult::ROk(Some(t)) => RResult::ROk(t.into_raw()),
            RResult::ROk(None) => RResult::RErr(ApiError::new(code::UNSUPPORTED, "this loss has no per-row form")),
            RResult::RErr(e) => RResult::RErr(e),
        }
    }
});
adapter_kind!(ModelPlugin, Model, Model_TO, ModelBox, new_model, kind::MODEL,
    forward(batch) -> RawTensor => |p: &mut P, b: &Batch| p.forward(b).map(crate::Tensor::into_raw));
adapter_kind!(TeacherPlugin, Teacher, Teacher_TO, TeacherBox, new_teacher, kind::TEACHER,
    logits(batch) -> RawTensor => |p: &mut P, b: &Batch| p.logits(b).map(crate::Tensor::into_raw));
adapter_kind!(RouterPlugin, Router, Router_TO, RouterBox, new_router, kind::ROUTER,
    route(batch) -> RawTensor => |p: &mut P, b: &Batch| p.route(b).map(crate::Tensor::into_raw));
adapter_kind!(AugmenterPlugin, Augmenter, Augmenter_TO, AugmenterBox, new_augmenter, kind::AUGMENTER,
augment(batch) -> RVec<OwnedTensor> => |p: &mut P, b: &Batch| p.augment(b).map(|v| {
    v.into_iter()
        .map(|(name, t)| OwnedTensor { name: name.into(), tensor: t.into_raw() })
        .collect::<RVec<_>>()
}));

/// Boxes a value so the trait-object constructors above have a concrete pointer type.
pub type Boxed<T> = RBox<T>;
