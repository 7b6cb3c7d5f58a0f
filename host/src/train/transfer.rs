//! The stages' own transfer sets (`[stages.transfer]`), made before the run directory so that a
//! missing off-topic dataset stops the run before it changes anything on disk.
use std::{collections::BTreeMap, sync::Arc};

use super::{run::resolve_data_dir, TrainError};
use crate::{
    config::RunConfig,
    data::{build_transfer, Composition, Dataset, DatasetSpec, Split},
};

/// A stage's transfer set and what it holds.
pub type TransferSet = (Arc<Dataset>, Composition);

/// Every stage's transfer set, by stage index, seeded by the run's seed only: stages with the same
/// `[stages.transfer]` and subset train on the same images (rows of an ablation compare).
pub fn transfer_sets(cfg: &RunConfig, train: &Dataset) -> Result<BTreeMap<usize, TransferSet>, TrainError> {
    let mut out = BTreeMap::new();
    for (i, st) in cfg.stages.iter().enumerate() {
        let Some(spec) = &st.transfer else { continue };
        let key = format!("stages[{i}].transfer");
        let off_topic = match &spec.off_topic {
            Some(name) => {
                let dir = resolve_data_dir(name, spec.off_topic_dir.as_deref())
                    .map_err(|e| TrainError::Other(format!("{key}.off_topic: {e}")))?;
                let s = DatasetSpec { name: name.clone(), dir, validation: 0, seed: cfg.run.seed };
                Some(Dataset::load(&s, Split::Train).map_err(|e| TrainError::Other(format!("{key}.off_topic: {e}")))?)
            }
            None => None,
        };
        let n = st.subset.unwrap_or(cfg.data.subset);
        let (set, composition) = build_transfer(train, off_topic.as_ref(), spec, n, cfg.run.seed ^ 0x7a45_f3e2)
            .map_err(|e| TrainError::Other(format!("{key}: {e}")))?;
        tracing::info!(stage = st.name, "transfer set: {composition}");
        out.insert(i, (Arc::new(set), composition));
    }
    Ok(out)
}
