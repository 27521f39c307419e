//! WHOOP developer API v2: signed notifications (vendors.md §2), documents fetched
//! with the linked account's token.

#[cfg(feature = "edge")]
mod edge;
#[cfg(feature = "edge")]
pub mod verify;

#[cfg(feature = "edge")]
pub use edge::EdgeArgs;

#[cfg(feature = "processor")]
pub mod fetch;
#[cfg(feature = "processor")]
pub mod normalize;
#[cfg(feature = "processor")]
pub mod sports;
#[cfg(feature = "processor")]
mod processor;

/// Notifications carry no data: the envelope goes to the fetch job instead.
#[cfg(feature = "processor")]
pub use crate::normalize::notification_only as normalize;
#[cfg(feature = "processor")]
pub use processor::ProcessorArgs;
