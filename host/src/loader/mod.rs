//! Loading plugin libraries (DESIGN.md §3): unique-path copies, a layout check against fresh
//! checking globals, lifetimes tied to the objects made from them, and discovery by name.
mod abi_report;
mod library;
mod registry;

pub use library::{leaked_libraries, set_never_unload, Library, ParamMeta, PluginMeta};
pub use registry::{search_dirs, Entry, Registry};
