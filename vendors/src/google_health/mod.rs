//! Google Health API v4 (Fitbit's successor; also Pixel Watch): ECDSA-signed
//! notify-only webhooks naming a data type and time intervals; UPSERTs are fetched from
//! the list endpoint with the linked account's token, DELETEs remove the readings of the
//! type in the intervals. What is verified and what is not: the README ("Google Health
//! API") and `google-spec.md` in the issue notes.

#[cfg(feature = "edge")]
mod edge;
#[cfg(feature = "edge")]
pub mod keys;
#[cfg(feature = "edge")]
pub mod verify;

#[cfg(feature = "edge")]
pub use edge::EdgeArgs;

#[cfg(feature = "processor")]
pub mod fetch;
#[cfg(feature = "processor")]
pub mod normalize;
#[cfg(feature = "processor")]
pub mod notification;
#[cfg(feature = "processor")]
mod processor;

/// Notifications carry no data: the envelope goes to the fetch job instead.
#[cfg(feature = "processor")]
pub use crate::normalize::notification_only as normalize;
#[cfg(feature = "processor")]
pub use processor::ProcessorArgs;

/// The vendor route name, as readings carry it.
#[cfg(feature = "processor")]
const VENDOR: &str = "google_health";
