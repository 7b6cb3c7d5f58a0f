//! Safe wrappers around loaded plugin instances: build a batch, call, check, take the result.
use std::sync::Arc;

use candle_core::Tensor;
use retort_plugin_api::{
    abi_stable::std_types::{RResult, RSlice, RStr},
    codes::{error as code, kind},
    ApiError, AugmenterBox, Batch, LossBox, ModelBox, NamedScalar, NamedTensor, PluginHost, PluginModuleRef, RawTensor,
    RouterBox, TeacherBox,
};

use crate::{
    backend::{host_api, into_raw, take_owned, Host, PluginCtx},
    error::{HostError, Result},
    loader::{Library, PluginMeta},
};

/// Named tensors and numbers for one plugin call.
#[derive(Default, Clone)]
pub struct Inputs {
    tensors: Vec<(String, Tensor)>,
    scalars: Vec<(String, f64)>,
}

impl Inputs {
    /// No inputs.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds (or replaces) a tensor under a role name.
    pub fn tensor(mut self, name: &str, t: &Tensor) -> Self {
        match self.tensors.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = t.clone(),
            None => self.tensors.push((name.into(), t.clone())),
        }
        self
    }
    /// Adds (or replaces) a number.
    pub fn scalar(mut self, name: &str, v: f64) -> Self {
        match self.scalars.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = v,
            None => self.scalars.push((name.into(), v)),
        }
        self
    }

    /// Calls `f` with the ABI view of these inputs; handles live until it returns.
    fn with_batch<R>(&self, f: impl FnOnce(Batch<'_>) -> R) -> R {
        let raws: Vec<RawTensor> = self.tensors.iter().map(|(_, t)| into_raw(t.clone())).collect();
        let named: Vec<NamedTensor<'_>> = self
            .tensors
            .iter()
            .zip(&raws)
            .map(|((n, _), &r)| NamedTensor { name: RStr::from_str(n), tensor: r })
            .collect();
        let scalars: Vec<NamedScalar<'_>> =
            self.scalars.iter().map(|(n, v)| NamedScalar { name: RStr::from_str(n), value: *v }).collect();
        let out = f(Batch { tensors: RSlice::from_slice(&named), scalars: RSlice::from_slice(&scalars) });
        for r in raws {
            // SAFETY: we made these handles above and own them.
            unsafe { crate::backend::handle_release(r) };
        }
        out
    }
}

/// A `PluginModule` constructor returning plugin objects of type `O`.
type Constructor<O> = extern "C" fn(PluginHost, RStr<'_>, RStr<'_>) -> RResult<O, ApiError>;

/// The ABI methods every plugin object has.
pub trait AbiObject {
    /// The kind code of this object type.
    const KIND: u32;
    /// Serialised state.
    fn abi_state(&self) -> RResult<retort_plugin_api::abi_stable::std_types::RVec<u8>, ApiError>;
    /// Restores state.
    fn abi_load_state(&mut self, s: RSlice<'_, u8>) -> RResult<(), ApiError>;
}

macro_rules! abi_object {
    ($t:ty, $k:expr) => {
        impl AbiObject for $t {
            const KIND: u32 = $k;
            fn abi_state(&self) -> RResult<retort_plugin_api::abi_stable::std_types::RVec<u8>, ApiError> {
                self.state()
            }
            fn abi_load_state(&mut self, s: RSlice<'_, u8>) -> RResult<(), ApiError> {
                self.load_state(s)
            }
        }
    };
}
abi_object!(LossBox, kind::LOSS);
abi_object!(ModelBox, kind::MODEL);
abi_object!(TeacherBox, kind::TEACHER);
abi_object!(RouterBox, kind::ROUTER);
abi_object!(AugmenterBox, kind::AUGMENTER);

/// A live plugin instance: the object, its host context and the library it came from.
/// Field order is drop order: the object goes before its context and its library.
pub struct Instance<O: AbiObject> {
    obj: O,
    ctx: Arc<PluginCtx>,
    lib: Arc<Library>,
    meta: PluginMeta,
}

impl<O: AbiObject> std::fmt::Debug for Instance<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("plugin", &self.meta.name)
            .field("role", &self.ctx.role)
            .field("library", &self.lib.path())
            .finish()
    }
}

/// A loss plugin instance.
pub type LossInstance = Instance<LossBox>;
/// A model plugin instance.
pub type ModelInstance = Instance<ModelBox>;
/// A teacher plugin instance.
pub type TeacherInstance = Instance<TeacherBox>;
/// A router plugin instance.
pub type RouterInstance = Instance<RouterBox>;
/// An augmenter plugin instance.
pub type AugmenterInstance = Instance<AugmenterBox>;

impl<O: AbiObject> Instance<O> {
    /// The plugin's name and description.
    pub fn meta(&self) -> &PluginMeta {
        &self.meta
    }
    /// The library this instance runs from.
    pub fn library(&self) -> &Arc<Library> {
        &self.lib
    }
    /// The host context (role, parameter group, RNG).
    pub fn ctx(&self) -> &Arc<PluginCtx> {
        &self.ctx
    }

    /// Turns a boundary error into a host error naming the plugin (copying the message at once:
    /// its string frees through the plugin's code).
    fn fail(&self, e: ApiError) -> HostError {
        plugin_error(&self.meta.name, O::KIND, e)
    }

    /// The plugin's serialised state.
    pub fn state(&self) -> Result<Vec<u8>> {
        match self.obj.abi_state() {
            RResult::ROk(v) => Ok(v.to_vec()),
            RResult::RErr(e) => Err(self.fail(e)),
        }
    }

    /// Hands state from an earlier instance to this one.
    pub fn load_state(&mut self, state: &[u8]) -> Result<()> {
        match self.obj.abi_load_state(RSlice::from_slice(state)) {
            RResult::ROk(()) => Ok(()),
            RResult::RErr(e) => Err(self.fail(e)),
        }
    }

    /// Calls the library's constructor for this kind with a fresh context for `role`.
    fn construct(
        host: &Host,
        lib: &Arc<Library>,
        name: &str,
        role: &str,
        config: &str,
        ctor: impl FnOnce(PluginModuleRef) -> Constructor<O>,
    ) -> Result<Self> {
        let meta = lib.meta(name, O::KIND)?;
        let ctx = host.ctx(role, name);
        let ph = PluginHost { api: host_api(), ctx: ctx.raw() };
        match ctor(lib.module())(ph, RStr::from_str(name), RStr::from_str(config)) {
            RResult::ROk(obj) => Ok(Instance { obj, ctx, lib: lib.clone(), meta }),
            RResult::RErr(e) => Err(plugin_error(name, O::KIND, e)),
        }
    }

    fn take_tensor(&self, r: RResult<RawTensor, ApiError>) -> Result<Tensor> {
        match r {
            // SAFETY: the plugin returns an owned handle.
            RResult::ROk(raw) => Ok(unsafe { take_owned(raw) }),
            RResult::RErr(e) => Err(self.fail(e)),
        }
    }
}

/// A host error naming the plugin, from a boundary error.
pub fn plugin_error(name: &str, kind_code: u32, e: ApiError) -> HostError {
    HostError::Plugin {
        plugin: name.to_string(),
        kind: kind::name(kind_code),
        code: e.code(),
        message: e.message.to_string(),
    }
}

impl LossInstance {
    /// Builds loss plugin `name` from `lib` in slot `role` with a JSON config.
    pub fn new(host: &Host, lib: &Arc<Library>, name: &str, role: &str, config: &str) -> Result<Self> {
        Self::construct(host, lib, name, role, config, |m| m.new_loss())
    }

    /// The loss for these inputs: a finite scalar, or an error naming the plugin.
    pub fn loss(&mut self, inputs: &Inputs) -> Result<Tensor> {
        let t = self.loss_unread(inputs)?;
        self.value(&t)?;
        Ok(t)
    }

    /// The loss as a scalar tensor, not read back: the trainer checks the sum of a step's terms
    /// with one read and calls [`LossInstance::value`] only to find which term failed.
    pub fn loss_unread(&mut self, inputs: &Inputs) -> Result<Tensor> {
        let r = inputs.with_batch(|b| self.obj.loss(b));
        let t = self.take_tensor(r)?;
        if t.elem_count() != 1 {
            return Err(
                self.fail(ApiError::new(code::INVALID, format!("returned shape {:?}, expected a scalar", t.dims())))
            );
        }
        Ok(t.reshape(())?)
    }

    /// The loss per sample, `[B]` (plugin-api 1.2), or `None` when the plugin has no per-sample
    /// form (it declines, or was built against 1.1).
    pub fn loss_rows(&mut self, inputs: &Inputs) -> Result<Option<Tensor>> {
        let r = inputs.with_batch(|b| self.obj.loss_rows(b));
        if let RResult::RErr(e) = &r {
            if e.code() == code::UNSUPPORTED {
                return Ok(None);
            }
        }
        let t = self.take_tensor(r)?;
        if t.rank() != 1 {
            return Err(self.fail(ApiError::new(
                code::INVALID,
                format!("loss_rows returned shape {:?}, expected one value per sample [B]", t.dims()),
            )));
        }
        Ok(Some(t))
    }

    /// The loss per sample, or an error naming the plugin when it has no per-sample form.
    pub fn rows(&mut self, inputs: &Inputs) -> Result<Tensor> {
        match self.loss_rows(inputs)? {
            Some(r) => Ok(r),
            None => Err(self.fail(ApiError::new(
                code::UNSUPPORTED,
                "this loss has no per-sample form, so it cannot take sample weights, routes or masks",
            ))),
        }
    }

    /// The loss with per-sample weights `w` (`[B]`): `mean(w ⊙ rows)`, so that a weight of 1
    /// everywhere gives the plugin's own loss and a weight of 0 removes a sample, gradient included.
    /// Errors (naming the plugin) when it has no per-sample form or the rows do not match `w`.
    pub fn weighted_loss(&mut self, inputs: &Inputs, w: &Tensor) -> Result<Tensor> {
        let rows = self.rows(inputs)?;
        if rows.dims() != w.dims() {
            return Err(self.fail(ApiError::new(
                code::INVALID,
                format!("loss_rows returned {:?} values for {:?} sample weights", rows.dims(), w.dims()),
            )));
        }
        let w = w.to_dtype(rows.dtype())?;
        Ok((rows * w)?.mean_all()?)
    }

    /// The value of a loss this plugin returned, or an error naming the plugin when it is not finite.
    pub fn value(&self, t: &Tensor) -> Result<f64> {
        let v = t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        if !v.is_finite() {
            return Err(HostError::NonFinite {
                plugin: self.meta.name.clone(),
                kind: kind::name(kind::LOSS),
                value: v,
            });
        }
        Ok(v)
    }
}

impl ModelInstance {
    /// Builds model plugin `name` from `lib` in slot `role` with a JSON config.
    pub fn new(host: &Host, lib: &Arc<Library>, name: &str, role: &str, config: &str) -> Result<Self> {
        Self::construct(host, lib, name, role, config, |m| m.new_model())
    }

    /// The model's output for these inputs (`input`, and `train` as a number).
    pub fn forward(&mut self, inputs: &Inputs) -> Result<Tensor> {
        let r = inputs.with_batch(|b| self.obj.forward(b));
        self.take_tensor(r)
    }
}

impl TeacherInstance {
    /// Builds teacher plugin `name` from `lib` in slot `role` with a JSON config.
    pub fn new(host: &Host, lib: &Arc<Library>, name: &str, role: &str, config: &str) -> Result<Self> {
        Self::construct(host, lib, name, role, config, |m| m.new_teacher())
    }

    /// The teacher's logits for these inputs.
    pub fn logits(&mut self, inputs: &Inputs) -> Result<Tensor> {
        let r = inputs.with_batch(|b| self.obj.logits(b));
        self.take_tensor(r)
    }
}

impl RouterInstance {
    /// Builds router plugin `name` from `lib` in slot `role` with a JSON config.
    pub fn new(host: &Host, lib: &Arc<Library>, name: &str, role: &str, config: &str) -> Result<Self> {
        Self::construct(host, lib, name, role, config, |m| m.new_router())
    }

    /// Per-sample teacher weights `[B, teachers]` for these inputs.
    pub fn route(&mut self, inputs: &Inputs) -> Result<Tensor> {
        let r = inputs.with_batch(|b| self.obj.route(b));
        self.take_tensor(r)
    }
}

impl AugmenterInstance {
    /// Builds augmenter plugin `name` from `lib` in slot `role` with a JSON config.
    pub fn new(host: &Host, lib: &Arc<Library>, name: &str, role: &str, config: &str) -> Result<Self> {
        Self::construct(host, lib, name, role, config, |m| m.new_augmenter())
    }

    /// The tensors the augmenter replaces, by name.
    pub fn augment(&mut self, inputs: &Inputs) -> Result<Vec<(String, Tensor)>> {
        match inputs.with_batch(|b| self.obj.augment(b)) {
            RResult::ROk(v) => Ok(v
                .into_iter()
                // SAFETY: each returned handle is owned by the caller (+1).
                .map(|o| (o.name.to_string(), unsafe { take_owned(o.tensor) }))
                .collect()),
            RResult::RErr(e) => Err(self.fail(e)),
        }
    }
}
