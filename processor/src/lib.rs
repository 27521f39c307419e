//! Biometric Bridge processor: raw envelopes in, canonical readings out.

pub mod dedup;
pub mod model;
pub mod normalize;
pub mod sink;
