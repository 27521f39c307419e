//! What edge and processor share: the raw envelope, its Avro codec through a
//! Confluent-compatible schema registry, Kafka trace-context helpers and
//! telemetry set-up, the start-up topic checks both services run, the
//! [`Vendor`] type and the canonical data contract ([`model`], with its [`plausible`]
//! ranges). Nothing else lives here.

pub mod catalog;
pub mod config;
pub mod defaults;
pub mod envelope;
pub mod model;
pub mod plausible;
pub mod registry;
pub mod telemetry;
pub mod topics;
pub mod vendor;

pub use envelope::RawEnvelope;
pub use registry::{DecodeError, RegisteredCodec, RegistryError, SchemaRegistry};
pub use vendor::Vendor;
