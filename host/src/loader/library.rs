use std::{
    fs,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, OnceLock,
    },
};

use retort_plugin_api::{
    abi_stable::{
        abi_stability::abi_checking::{check_layout_compatibility_with_globals, CheckingGlobals},
        library::{AbiHeaderRef, LibHeader, ROOT_MODULE_LOADER_NAME_WITH_NUL},
        StableAbi,
    },
    codes::kind,
    PluginModuleRef, ABI_VERSION,
};
use sha2::{Digest, Sha256};

use crate::error::{HostError, Result};

static NEVER_UNLOAD: AtomicBool = AtomicBool::new(false);
static LEAKED: AtomicUsize = AtomicUsize::new(0);
static COPIES: AtomicU64 = AtomicU64::new(0);

/// Keep every library mapped for the life of the process (fallback for plugins whose thread-local
/// destructors make unloading unsafe).
pub fn set_never_unload(on: bool) {
    NEVER_UNLOAD.store(on, Ordering::Relaxed);
}

/// How many libraries stayed mapped after their last object dropped.
pub fn leaked_libraries() -> usize {
    LEAKED.load(Ordering::Relaxed)
}

/// One parameter of a plugin, copied into host memory.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamMeta {
    pub name: String,
    pub default_json: String,
    pub doc: String,
}

/// A plugin's self-description, copied into host memory.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginMeta {
    pub name: String,
    pub kind: u32,
    pub version: String,
    pub summary: String,
    pub params: Vec<ParamMeta>,
}

impl PluginMeta {
    /// The kind's name (`loss`, `model`, …).
    pub fn kind_name(&self) -> &'static str {
        kind::name(self.kind)
    }
}

/// A loaded plugin library. Every object made from it holds an `Arc`; the library is closed
/// (`dlclose`) when the last one drops.
pub struct Library {
    module: PluginModuleRef,
    lib: Option<libloading::Library>,
    path: PathBuf,
    copy: PathBuf,
    hash: String,
    abi_version: String,
    plugins: Vec<PluginMeta>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library").field("path", &self.path).field("hash", &self.hash).finish()
    }
}

const COPY_PREFIX: &str = "retort-plugins-";

/// This process's private directory for library copies, made fresh (mkdtemp) rather than named by
/// the pid alone, which a recycled pid could find left behind by another user's process. The name
/// still starts with the pid so that later runs can sweep directories whose process is gone.
fn copy_dir() -> std::result::Result<PathBuf, String> {
    static DIR: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        sweep_stale_copies();
        tempfile::Builder::new()
            .prefix(&format!("{COPY_PREFIX}{}-", std::process::id()))
            .tempdir()
            .map(tempfile::TempDir::keep)
            .map_err(|e| {
                format!("cannot create a directory for plugin copies in {}: {e}", std::env::temp_dir().display())
            })
    })
    .clone()
}

/// Removes copy directories left by processes that have exited (a process keeps its libraries
/// mapped until it ends, so their copies outlive every `Library`). Best effort: another user's
/// directory simply fails to go.
fn sweep_stale_copies() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(COPY_PREFIX)) else { continue };
        let pid = rest.split('-').next().unwrap_or("");
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) || pid == std::process::id().to_string() {
            continue;
        }
        if !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

impl Library {
    /// Loads and checks the library at `path` (via a private copy, so the original can be rebuilt).
    pub fn load(path: &Path) -> Result<Arc<Library>> {
        let fail = |reason: String| HostError::Load { path: path.to_path_buf(), reason };
        let bytes = fs::read(path).map_err(|e| fail(e.to_string()))?;
        let hash: String = Sha256::digest(&bytes).iter().take(6).map(|b| format!("{b:02x}")).collect();
        let dir = copy_dir().map_err(fail)?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("plugin");
        let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("so");
        let n = COPIES.fetch_add(1, Ordering::Relaxed);
        let copy = dir.join(format!("{stem}-{n}.{ext}"));
        fs::write(&copy, &bytes).map_err(|e| fail(format!("cannot copy to {}: {e}", copy.display())))?;
        let r = Self::open(path, &copy, hash);
        if r.is_err() {
            let _ = fs::remove_file(&copy);
        }
        r.map(Arc::new)
    }

    fn open(path: &Path, copy: &Path, hash: String) -> Result<Library> {
        let fail = |reason: String| HostError::Load { path: path.to_path_buf(), reason };
        let incompatible = |summary: String| HostError::Incompatible { path: path.to_path_buf(), summary };
        // SAFETY: loading runs the library's initialisers; plugin libraries are trusted code.
        let lib = unsafe { libloading::Library::new(copy) }.map_err(|e| {
            // libloading says only "dlopen failed"; the loader's reason is its source.
            let why = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
            fail(format!("{e}{why}"))
        })?;
        let header: &'static LibHeader = {
            // SAFETY: abi_stable exports the root module loader as a static `AbiHeaderRef`.
            let sym = unsafe { lib.get::<AbiHeaderRef>(ROOT_MODULE_LOADER_NAME_WITH_NUL.as_bytes()) }
                .map_err(|_| fail("not a Retort plugin (no abi_stable root module)".into()))?;
            // SAFETY: the symbol's address is the library's `LibHeader`, which starts with the
            // `AbiHeader` that `AbiHeaderRef` points to; it stays valid while `lib` is loaded, and
            // every user of the module holds the `Library`.
            let href: AbiHeaderRef = *sym;
            href.upgrade().map_err(|e| incompatible(format!("abi_stable header: {e}")))?
        };
        let found = header.version_strings().version.as_str().to_string();
        let major = |v: &str| v.split('.').next().unwrap_or("").to_string();
        if major(&found) != major(ABI_VERSION) {
            return Err(incompatible(format!(
                "built against plugin-api {found}, this host has plugin-api {ABI_VERSION} (major versions differ)"
            )));
        }
        let Some(layout) = header.layout() else {
            return Err(incompatible("the library carries no layout information to check".into()));
        };
        let expected = <PluginModuleRef as StableAbi>::LAYOUT;
        // abi_stable accepts a prefix type only when the interface has no more fields than the
        // implementation. Our tables flow both ways (the plugin provides `PluginModule`, the host
        // provides `HostApi`), so an older plugin passes in one direction and a newer one in the
        // other; a real layout change fails both. Accept when either direction passes. Fresh
        // globals each time: the process-wide ones keep references into unloaded libraries.
        let check = |interface, implementation| {
            check_layout_compatibility_with_globals(interface, implementation, &CheckingGlobals::new())
        };
        if let Err(e) = check(expected, layout) {
            if check(layout, expected).is_err() {
                let summary = super::abi_report::summarize(&e);
                return Err(incompatible(format!(
                    "layout differs from this host's plugin-api {ABI_VERSION} (library built against {found}): {summary}"
                )));
            }
        }
        // SAFETY: the layout was checked just above.
        let module = unsafe { header.init_root_module_with_unchecked_layout::<PluginModuleRef>() }
            .map_err(|e| fail(format!("root module failed to initialise: {e}")))?;
        let plugins = Self::read_info(module);
        Ok(Library {
            module,
            lib: Some(lib),
            path: path.to_path_buf(),
            copy: copy.to_path_buf(),
            hash,
            abi_version: found,
            plugins,
        })
    }

    fn read_info(module: PluginModuleRef) -> Vec<PluginMeta> {
        // Copy every string now: the RVec and RStrings free through the library's code.
        (module.info())()
            .iter()
            .map(|d| PluginMeta {
                name: d.name.to_string(),
                kind: d.kind,
                version: d.version.to_string(),
                summary: d.summary.to_string(),
                params: d
                    .params
                    .iter()
                    .map(|p| ParamMeta {
                        name: p.name.to_string(),
                        default_json: p.default_json.to_string(),
                        doc: p.doc.to_string(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// The root module.
    pub fn module(&self) -> PluginModuleRef {
        self.module
    }
    /// The path it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Short sha256 of the file as loaded (names the exact build in run records).
    pub fn hash(&self) -> &str {
        &self.hash
    }
    /// The plugin-api version the library was built against.
    pub fn abi_version(&self) -> &str {
        &self.abi_version
    }
    /// Every plugin the library provides.
    pub fn plugins(&self) -> &[PluginMeta] {
        &self.plugins
    }
    /// The private copy that is actually mapped.
    pub fn mapped_path(&self) -> &Path {
        &self.copy
    }

    /// The description of plugin `name` of `kind`, or an error listing what the library has.
    pub fn meta(&self, name: &str, kind_code: u32) -> Result<PluginMeta> {
        self.plugins.iter().find(|p| p.name == name && p.kind == kind_code).cloned().ok_or_else(|| {
            HostError::NotFound {
                kind: kind::name(kind_code),
                name: name.to_string(),
                known: self.plugins.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "),
            }
        })
    }
}

/// Whether `path` is still mapped into this process.
pub fn is_mapped(path: &Path) -> bool {
    let Some(p) = path.to_str() else { return false };
    fs::read_to_string("/proc/self/maps").map(|m| m.lines().any(|l| l.ends_with(p))).unwrap_or(false)
}

impl Drop for Library {
    fn drop(&mut self) {
        if let Some(lib) = self.lib.take() {
            if NEVER_UNLOAD.load(Ordering::Relaxed) {
                std::mem::forget(lib);
                return;
            }
            if let Err(e) = lib.close() {
                tracing::warn!(path = %self.path.display(), "dlclose failed: {e}");
            }
        }
        if cfg!(target_os = "linux") && is_mapped(&self.copy) {
            LEAKED.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(path = %self.path.display(), "plugin library stayed mapped after unload (leaked)");
        } else {
            let _ = fs::remove_file(&self.copy);
        }
    }
}
