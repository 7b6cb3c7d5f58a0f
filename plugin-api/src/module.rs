use abi_stable::{
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{RResult, RStr, RVec},
    StableAbi,
};

use crate::{ApiError, AugmenterBox, LossBox, ModelBox, PluginDescription, PluginHost, RouterBox, TeacherBox};

/// The root module every plugin library exports (via the SDK's `export_plugins!`).
///
/// A prefix type: constructors for new plugin kinds are appended after `new_augmenter`.
/// Constructors take the host, the plugin name (a library may hold several) and the plugin's
/// config as a JSON object.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(option))]
pub struct PluginModule {
    /// Every plugin this library provides.
    pub info: extern "C" fn() -> RVec<PluginDescription>,
    pub new_loss: extern "C" fn(host: PluginHost, name: RStr<'_>, config: RStr<'_>) -> RResult<LossBox, ApiError>,
    pub new_model: extern "C" fn(host: PluginHost, name: RStr<'_>, config: RStr<'_>) -> RResult<ModelBox, ApiError>,
    pub new_teacher: extern "C" fn(host: PluginHost, name: RStr<'_>, config: RStr<'_>) -> RResult<TeacherBox, ApiError>,
    pub new_router: extern "C" fn(host: PluginHost, name: RStr<'_>, config: RStr<'_>) -> RResult<RouterBox, ApiError>,
    #[sabi(last_prefix_field)]
    pub new_augmenter:
        extern "C" fn(host: PluginHost, name: RStr<'_>, config: RStr<'_>) -> RResult<AugmenterBox, ApiError>,
}

impl RootModule for PluginModuleRef {
    abi_stable::declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "retort_plugin";
    const NAME: &'static str = "retort plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
