//! Apple HealthKit through Health Auto Export's REST automation: per-user API keys,
//! data inline (vendors.md §4).

#[cfg(feature = "edge")]
mod edge;
#[cfg(feature = "edge")]
pub mod verify;

#[cfg(feature = "edge")]
pub use edge::EdgeArgs;

#[cfg(feature = "processor")]
mod names;
#[cfg(feature = "processor")]
pub mod normalize;

#[cfg(feature = "processor")]
pub use normalize::normalize;
/// No processor settings: nothing is fetched.
#[cfg(feature = "processor")]
pub type ProcessorArgs = crate::NoSettings;
