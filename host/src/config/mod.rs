//! Run configuration: a typed schema filled from TOML/YAML/JSON files (or the built-in default)
//! plus `RETORT__SECTION__KEY` environment overrides, rejecting unknown keys.
mod load;
mod schema;
mod text;

pub use load::{closest, load_file, load_str, ConfigError, ConfigSource, DEFAULT_CONFIG};
pub use schema::*;
pub use text::{
    DifferenceSection, GenerateSection, MonitorSection, OnPolicySection, SamplingSection, SequenceSource, TextSection,
};
