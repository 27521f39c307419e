//! Biometric Bridge edge: authenticate vendor webhooks, append them untouched to Kafka.

pub mod app;
pub mod config;
pub mod error;
pub mod generic_sources;
pub mod metrics;
pub mod producer;
pub mod ready;
pub mod routes;
pub mod serve;
pub mod trace_context;
