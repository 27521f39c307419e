//! Biometric Bridge processor: raw envelopes in, canonical readings out.

pub mod config;
pub mod dedup;
pub mod error;
pub mod fetch;
pub mod health;
pub mod metrics;
pub mod normalize;
pub mod pipeline;
pub mod publish;
pub mod replay;
pub mod service;
pub mod sink;
pub mod topics;

pub use bridge_core::model;
