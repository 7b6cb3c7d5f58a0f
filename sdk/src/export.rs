/// Exports a plugin library: lists its plugin types by kind and generates the root module.
///
/// ```ignore
/// retort_sdk::export_plugins! {
///     loss: [HintonKd, CrossEntropy],
///     model: [Mlp],
/// }
/// ```
/// Kinds, each optional, in this order: `loss`, `model`, `teacher`, `router`, `augmenter`.
#[macro_export]
macro_rules! export_plugins {
    (
        $(loss: [$($loss:ty),* $(,)?] $(,)?)?
        $(model: [$($model:ty),* $(,)?] $(,)?)?
        $(teacher: [$($teacher:ty),* $(,)?] $(,)?)?
        $(router: [$($router:ty),* $(,)?] $(,)?)?
        $(augmenter: [$($aug:ty),* $(,)?] $(,)?)?
    ) => {
        mod __retort_export {
            #[allow(unused_imports)]
            use super::*;
            use $crate::__export::abi_stable::{
                library::{CheckTypeLayout, LibHeader, RootModuleResult},
                prefix_type::PrefixTypeTrait,
                std_types::{RResult, RStr, RVec},
            };
            use $crate::api::{
                codes::kind, ApiError, AugmenterBox, LossBox, ModelBox, PluginDescription, PluginHost, PluginModule,
                PluginModuleRef, RouterBox, TeacherBox,
            };

            const VERSION: &str = env!("CARGO_PKG_VERSION");

            extern "C" fn info() -> RVec<PluginDescription> {
                let r = ::std::panic::catch_unwind(|| {
                    #[allow(unused_mut)]
                    let mut v: RVec<PluginDescription> = RVec::new();
                    $($(v.push($crate::__export::describe::<$loss>(kind::LOSS, VERSION));)*)?
                    $($(v.push($crate::__export::describe::<$model>(kind::MODEL, VERSION));)*)?
                    $($(v.push($crate::__export::describe::<$teacher>(kind::TEACHER, VERSION));)*)?
                    $($(v.push($crate::__export::describe::<$router>(kind::ROUTER, VERSION));)*)?
                    $($(v.push($crate::__export::describe::<$aug>(kind::AUGMENTER, VERSION));)*)?
                    v
                });
                r.unwrap_or_default()
            }

            extern "C" fn new_loss(host: PluginHost, name: RStr<'_>, config: RStr<'_>) -> RResult<LossBox, ApiError> {
                $($(if name.as_str() == <$loss as $crate::Plugin>::NAME {
                    return $crate::__export::new_loss::<$loss>(host, config.as_str(), VERSION);
                })*)?
                let _ = (host, config);
                $crate::__export::missing(kind::LOSS, name.as_str())
            }

            extern "C" fn new_model(host: PluginHost, name: RStr<'_>, config: RStr<'_>) -> RResult<ModelBox, ApiError> {
                $($(if name.as_str() == <$model as $crate::Plugin>::NAME {
                    return $crate::__export::new_model::<$model>(host, config.as_str(), VERSION);
                })*)?
                let _ = (host, config);
                $crate::__export::missing(kind::MODEL, name.as_str())
            }

            extern "C" fn new_teacher(host: PluginHost, name: RStr<'_>, config: RStr<'_>) -> RResult<TeacherBox, ApiError> {
                $($(if name.as_str() == <$teacher as $crate::Plugin>::NAME {
                    return $crate::__export::new_teacher::<$teacher>(host, config.as_str(), VERSION);
                })*)?
                let _ = (host, config);
                $crate::__export::missing(kind::TEACHER, name.as_str())
            }

            extern "C" fn new_router(host: PluginHost, name: RStr<'_>, config: RStr<'_>) -> RResult<RouterBox, ApiError> {
                $($(if name.as_str() == <$router as $crate::Plugin>::NAME {
                    return $crate::__export::new_router::<$router>(host, config.as_str(), VERSION);
                })*)?
                let _ = (host, config);
                $crate::__export::missing(kind::ROUTER, name.as_str())
            }

            extern "C" fn new_augmenter(
                host: PluginHost,
                name: RStr<'_>,
                config: RStr<'_>,
            ) -> RResult<AugmenterBox, ApiError> {
                $($(if name.as_str() == <$aug as $crate::Plugin>::NAME {
                    return $crate::__export::new_augmenter::<$aug>(host, config.as_str(), VERSION);
                })*)?
                let _ = (host, config);
                $crate::__export::missing(kind::AUGMENTER, name.as_str())
            }

            /// The root module the host loads.
            pub fn get_library() -> PluginModuleRef {
                PluginModule { info, new_loss, new_model, new_teacher, new_router, new_augmenter }.leak_into_prefix()
            }

            extern "C" fn erased_module() -> RootModuleResult {
                $crate::__export::abi_stable::library::__call_root_module_loader(get_library)
            }

            /// What abi_stable's `#[export_root_module]` emits, with paths through this SDK so a
            /// plugin crate needs no direct abi_stable dependency. The symbol name is abi_stable's
            /// `ROOT_MODULE_LOADER_NAME` (a test in the SDK keeps them equal).
            #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
            pub static ROOT_MODULE_LOADER: LibHeader = unsafe {
                LibHeader::from_constructor::<PluginModuleRef>(erased_module, CheckTypeLayout::Yes)
            };
        }
    };
}
