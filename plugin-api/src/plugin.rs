//! The five plugin interfaces, as abi_stable trait objects.
//!
//! Every interface carries `describe`, `state` and `load_state` (checkpoints and hot-reload
//! hand-over); `load_state` is the last prefix method, so methods can be appended later.
use abi_stable::{
    sabi_trait,
    std_types::{RBox, RResult, RSlice, RString, RVec},
    StableAbi,
};

use crate::{ApiError, Batch, OwnedTensor, RawTensor};

/// One configurable parameter of a plugin: its name, default (as JSON) and one line of meaning.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct ParamSpec {
    pub name: RString,
    pub default_json: RString,
    pub doc: RString,
}

/// What a plugin says about itself.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct PluginDescription {
    pub name: RString,
    /// A code from [`crate::codes::kind`].
    pub kind: u32,
    /// The plugin's own version (its crate version).
    pub version: RString,
    /// One or two sentences: what it computes and where it comes from.
    pub summary: RString,
    pub params: RVec<ParamSpec>,
}

/// A loss term: reads the batch's tensors (`student`, `teacher`, `labels`, `mask`, …) and returns
/// a scalar tensor whose graph reaches the student.
#[cfg(not(feature = "short-table"))]
#[sabi_trait]
pub trait Loss: Send {
    fn describe(&self) -> PluginDescription;
    fn loss(&mut self, batch: Batch<'_>) -> RResult<RawTensor, ApiError>;
    fn state(&self) -> RResult<RVec<u8>, ApiError>;
    #[sabi(last_prefix_field)]
    fn load_state(&mut self, state: RSlice<'_, u8>) -> RResult<(), ApiError>;
    /// (1.2.0) The loss before its batch reduction: one value per sample, `[B]`, whose mean is
    /// what `loss` returns (a row the plugin ignores, such as label −100, is 0), so that the host
    /// can weight, mask and reduce. A plugin built against 1.1 lacks the method and a plugin may
    /// decline; both answer `UNSUPPORTED` (this default) and the host uses `loss`.
    fn loss_rows(&mut self, batch: Batch<'_>) -> RResult<RawTensor, ApiError> {
        let _ = batch;
        RResult::RErr(ApiError::new(crate::codes::error::UNSUPPORTED, "this loss has no per-row form"))
    }
}

/// The 1.1 `Loss` (no `loss_rows`), for the `short-table` test feature that simulates a plugin
/// built before 1.2.
#[cfg(feature = "short-table")]
#[sabi_trait]
pub trait Loss: Send {
    fn describe(&self) -> PluginDescription;
    fn loss(&mut self, batch: Batch<'_>) -> RResult<RawTensor, ApiError>;
    fn state(&self) -> RResult<RVec<u8>, ApiError>;
    #[sabi(last_prefix_field)]
    fn load_state(&mut self, state: RSlice<'_, u8>) -> RResult<(), ApiError>;
}

/// A model, usable as student or teacher: `input` in the batch to logits; taps its features.
#[sabi_trait]
pub trait Model: Send {
    fn describe(&self) -> PluginDescription;
    fn forward(&mut self, batch: Batch<'_>) -> RResult<RawTensor, ApiError>;
    fn state(&self) -> RResult<RVec<u8>, ApiError>;
    #[sabi(last_prefix_field)]
    fn load_state(&mut self, state: RSlice<'_, u8>) -> RResult<(), ApiError>;
}

/// A teacher that is not a plain model (cached logits, ensembles, external scorers).
#[sabi_trait]
pub trait Teacher: Send {
    fn describe(&self) -> PluginDescription;
    fn logits(&mut self, batch: Batch<'_>) -> RResult<RawTensor, ApiError>;
    fn state(&self) -> RResult<RVec<u8>, ApiError>;
    #[sabi(last_prefix_field)]
    fn load_state(&mut self, state: RSlice<'_, u8>) -> RResult<(), ApiError>;
}

/// Per-sample teacher weights `[B, teachers]` from the batch (learned routing).
#[sabi_trait]
pub trait Router: Send {
    fn describe(&self) -> PluginDescription;
    fn route(&mut self, batch: Batch<'_>) -> RResult<RawTensor, ApiError>;
    fn state(&self) -> RResult<RVec<u8>, ApiError>;
    #[sabi(last_prefix_field)]
    fn load_state(&mut self, state: RSlice<'_, u8>) -> RResult<(), ApiError>;
}

/// Rewrites batch tensors before the models see them; returns the replaced tensors by name.
#[sabi_trait]
pub trait Augmenter: Send {
    fn describe(&self) -> PluginDescription;
    fn augment(&mut self, batch: Batch<'_>) -> RResult<RVec<OwnedTensor>, ApiError>;
    fn state(&self) -> RResult<RVec<u8>, ApiError>;
    #[sabi(last_prefix_field)]
    fn load_state(&mut self, state: RSlice<'_, u8>) -> RResult<(), ApiError>;
}

/// Owned loss plugin object.
pub type LossBox = Loss_TO<'static, RBox<()>>;
/// Owned model plugin object.
pub type ModelBox = Model_TO<'static, RBox<()>>;
/// Owned teacher plugin object.
pub type TeacherBox = Teacher_TO<'static, RBox<()>>;
/// Owned router plugin object.
pub type RouterBox = Router_TO<'static, RBox<()>>;
/// Owned augmenter plugin object.
pub type AugmenterBox = Augmenter_TO<'static, RBox<()>>;
