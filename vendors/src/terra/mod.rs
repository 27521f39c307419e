//! Terra (aggregator): signed pushes with the data inline (vendors.md §3).

#[cfg(feature = "edge")]
mod edge;
#[cfg(feature = "edge")]
pub mod verify;

#[cfg(feature = "edge")]
pub use edge::EdgeArgs;

#[cfg(feature = "processor")]
pub mod normalize;
#[cfg(feature = "processor")]
mod sport;

#[cfg(feature = "processor")]
pub use normalize::normalize;
/// No processor settings: nothing is fetched.
#[cfg(feature = "processor")]
pub type ProcessorArgs = crate::NoSettings;
