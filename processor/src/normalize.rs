//! The normalizers live with their vendors (`vendors::<vendor>::normalize`); this is the
//! processor's view of them: the dispatch by route name, the shared error type and the
//! plausibility ranges of the canonical metrics.

pub use bridge_core::plausible;
pub use vendors::normalize::{NormalizeError, normalize};
