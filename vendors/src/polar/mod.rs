//! Polar AccessLink v3: signed notifications and an unsigned registration `PING`
//! (vendors.md §5, §8.4); the entities they name fetched with the linked account's
//! long-lived token, after the user registration `link-account` makes.

#[cfg(feature = "edge")]
mod edge;
#[cfg(feature = "edge")]
pub mod verify;

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

/// Notifications carry no data: the envelope goes to the fetch job instead.
#[cfg(feature = "processor")]
pub use crate::normalize::notification_only as normalize;
#[cfg(feature = "processor")]
pub use processor::ProcessorArgs;
