//! Polar AccessLink: signed notifications and an unsigned registration `PING`
//! (vendors.md §5, §8.4).

#[cfg(feature = "edge")]
mod edge;
#[cfg(feature = "edge")]
pub mod verify;

#[cfg(feature = "edge")]
pub use edge::EdgeArgs;

#[cfg(feature = "processor")]
pub use crate::normalize::notification_only as normalize;
/// No processor settings: nothing is fetched.
#[cfg(feature = "processor")]
pub type ProcessorArgs = crate::NoSettings;
