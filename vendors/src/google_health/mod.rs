//! Google Health API v4 (Fitbit's successor; also Pixel Watch): ECDSA-signed
//! notify-only webhooks naming a data type and time intervals, the data fetched from
//! the list endpoint with the linked account's token. What is verified and what is
//! not: `/work/wt/notes/google-spec.md`, summarized in the README.

#[cfg(feature = "edge")]
mod edge;
#[cfg(feature = "edge")]
pub mod keys;
#[cfg(feature = "edge")]
pub mod verify;

#[cfg(feature = "edge")]
pub use edge::EdgeArgs;
