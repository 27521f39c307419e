//! Suunto Cloud API: signed webhooks with 24/7 samples inline, workouts fetched by
//! `workoutKey` when the webhook's copy is incomplete (accounts.md §4).

#[cfg(feature = "edge")]
mod edge;

#[cfg(feature = "edge")]
pub use edge::EdgeArgs;

#[cfg(feature = "processor")]
mod activity;
#[cfg(feature = "processor")]
pub mod fetch;
#[cfg(feature = "processor")]
pub mod normalize;
#[cfg(feature = "processor")]
mod processor;

/// Events are resolved by the fetch engine: only the linked account names our user.
#[cfg(feature = "processor")]
pub use crate::normalize::notification_only as normalize;
#[cfg(feature = "processor")]
pub use processor::ProcessorArgs;
