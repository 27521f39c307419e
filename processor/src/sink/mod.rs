//! Sinks.
pub mod postgres;
