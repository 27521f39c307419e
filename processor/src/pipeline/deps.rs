//! What the stages need from the outside world, as small traits: the real clients
//! implement them here, and the stage unit tests implement them in memory.

use std::future::Future;

use bridge_core::envelope::ShapeError;
use bridge_core::{DecodeError, RawEnvelope, SchemaRegistry};
use futures::future::BoxFuture;
use rdkafka::producer::FutureProducer;

use crate::dedup::DedupError;
use crate::error::{Classify, Disposition};
use crate::publish::{self, Changelog, DeadLetter, DeadLetterError, Provenance, PublishError};
use crate::sink::{Batch, PgSink, Written};

/// Why a raw record's bytes did not give an envelope.
#[derive(Debug, thiserror::Error)]
pub enum DecodeFailure {
    /// Framing, schema lookup or Avro decoding failed.
    #[error(transparent)]
    Registry(#[from] DecodeError),
    /// Valid Avro, but not a raw envelope.
    #[error(transparent)]
    Shape(#[from] ShapeError),
}

impl Classify for DecodeFailure {
    fn disposition(&self) -> Disposition {
        match self {
            DecodeFailure::Registry(e) => e.disposition(),
            DecodeFailure::Shape(e) => e.disposition(),
        }
    }
}

/// Raw record bytes to envelope.
pub trait Decode: Sync {
    /// Decodes one raw record's value.
    fn decode<'a>(
        &'a self,
        bytes: &'a [u8],
    ) -> impl Future<Output = Result<RawEnvelope, DecodeFailure>> + Send + 'a;
}

impl Decode for SchemaRegistry {
    async fn decode<'a>(&'a self, bytes: &'a [u8]) -> Result<RawEnvelope, DecodeFailure> {
        let value = SchemaRegistry::decode(self, bytes).await?;
        Ok(RawEnvelope::from_avro(value)?)
    }
}

/// The fast "already committed" filter in front of PostgreSQL's keys.
pub trait Dedup: Sync {
    /// For each key, whether it was marked.
    fn seen_many<'a>(
        &'a self,
        keys: &'a [String],
    ) -> impl Future<Output = Result<Vec<bool>, DedupError>> + Send + 'a;
    /// Marks keys as committed.
    fn mark_many<'a>(
        &'a self,
        keys: &'a [String],
    ) -> impl Future<Output = Result<(), DedupError>> + Send + 'a;
}

impl Dedup for crate::dedup::Dedup {
    fn seen_many<'a>(
        &'a self,
        keys: &'a [String],
    ) -> impl Future<Output = Result<Vec<bool>, DedupError>> + Send + 'a {
        crate::dedup::Dedup::seen_many(self, keys)
    }

    fn mark_many<'a>(
        &'a self,
        keys: &'a [String],
    ) -> impl Future<Output = Result<(), DedupError>> + Send + 'a {
        crate::dedup::Dedup::mark_many(self, keys)
    }
}

/// What runs after a write's statements and before its commit (the changelog publish);
/// its error rolls the batch back. A boxed closure rather than a generic one: rustc
/// cannot prove a generic one's future `Send` inside the retry task's spawned loop
/// (rust-lang/rust#100013).
pub type BeforeCommit<'a> =
    Box<dyn FnOnce(&Written) -> BoxFuture<'a, Result<(), String>> + Send + 'a>;

/// Where batches become durable.
pub trait Sink: Sync {
    /// What a failed write says about its batch.
    type Error: Classify + std::fmt::Display + Send;

    /// Writes `batch` in one transaction, calling `before_commit` with its changes after
    /// every statement ran and before the commit.
    fn write_then<'a>(
        &'a self,
        batch: &'a Batch,
        before_commit: BeforeCommit<'a>,
    ) -> impl Future<Output = Result<Written, Self::Error>> + Send + 'a;
}

impl Sink for PgSink {
    type Error = crate::sink::SinkError;

    fn write_then<'a>(
        &'a self,
        batch: &'a Batch,
        before_commit: BeforeCommit<'a>,
    ) -> impl Future<Output = Result<Written, Self::Error>> + Send + 'a {
        PgSink::write_then(self, batch, before_commit)
    }
}

/// The readings changelog.
pub trait Publish: Sync {
    /// Publishes `changes` in order and waits for every acknowledgement.
    fn publish_changes<'a>(
        &'a self,
        changes: &'a [(crate::model::Change, Option<Provenance>)],
    ) -> impl Future<Output = Result<(), PublishError>> + Send + 'a;
}

impl Publish for Changelog {
    fn publish_changes<'a>(
        &'a self,
        changes: &'a [(crate::model::Change, Option<Provenance>)],
    ) -> impl Future<Output = Result<(), PublishError>> + Send + 'a {
        self.publish(changes)
    }
}

/// The dead-letter topic.
pub trait DeadLetterQueue: Sync {
    /// Publishes `letters` and waits for every acknowledgement.
    fn publish_dead_letters<'a>(
        &'a self,
        letters: &'a [DeadLetter],
    ) -> impl Future<Output = Result<(), DeadLetterError>> + Send + 'a;
}

/// The DLQ topic through the pipeline's producer.
#[derive(Clone, Copy)]
pub struct Dlq<'a> {
    /// Producer for dead letters.
    pub producer: &'a FutureProducer,
    /// The DLQ topic.
    pub topic: &'a str,
}

impl DeadLetterQueue for Dlq<'_> {
    fn publish_dead_letters<'a>(
        &'a self,
        letters: &'a [DeadLetter],
    ) -> impl Future<Output = Result<(), DeadLetterError>> + Send + 'a {
        publish::dead_letters(self.producer, self.topic, letters)
    }
}
