//! One raw record's state on its way through the stages.

use bridge_core::RawEnvelope;
use chrono::{DateTime, Utc};
use rdkafka::message::{Headers, Message, OwnedMessage};

use crate::error::DlqReason;
use crate::fetch::parking::Park;
use crate::model::Normalized;
use crate::publish::{DeadLetter, Provenance};

/// A record of the batch and what has become of it so far.
#[derive(Debug)]
pub struct Record {
    /// The raw record as consumed; `None` for a parked notification the retry task
    /// replays (it cannot be dead-lettered: it is closed with a reason instead).
    pub raw: Option<OwnedMessage>,
    /// Raw partition.
    pub partition: i32,
    /// Raw offset.
    pub offset: i64,
    /// Delivery key for the Redis filter, once decoded.
    pub key: Option<String>,
    /// What became of it.
    pub state: State,
}

/// The states of the README's diagram. A stage acts on the states it knows and leaves
/// the others alone.
#[derive(Debug)]
pub enum State {
    /// Decoded; nothing decided yet.
    Envelope(RawEnvelope),
    /// Already committed (Redis says), or a second copy within the batch: skipped.
    Repeat,
    /// Normalized, pushed or fetched: to write. `note` parks the notification as well.
    Ready {
        /// The envelope.
        env: RawEnvelope,
        /// Its records.
        normalized: Normalized,
        /// Park or close the notification too.
        note: Option<Park>,
    },
    /// Committed in PostgreSQL, its changes acknowledged on the changelog.
    Written {
        /// The envelope.
        env: RawEnvelope,
        /// Park or close the notification too.
        note: Option<Park>,
    },
    /// Nothing to write now; parked for the retry task.
    Parked {
        /// The envelope.
        env: RawEnvelope,
        /// Why, and until when.
        park: Park,
    },
    /// Bad data: the raw record goes to the DLQ.
    Refused {
        /// The `dlq.reason` header.
        reason: DlqReason,
        /// What went wrong, for operators.
        detail: String,
    },
}

impl Record {
    /// A consumed record and what decoding made of it.
    pub fn consumed(raw: OwnedMessage, state: State) -> Self {
        Record {
            partition: raw.partition(),
            offset: raw.offset(),
            raw: Some(raw),
            key: None,
            state,
        }
    }

    /// A parked notification the retry task fetched again: ready to write, with no raw
    /// record behind it (`env` carries what the write stage reads: event id, receipt
    /// time, headers).
    pub fn replayed(
        partition: i32,
        offset: i64,
        env: RawEnvelope,
        normalized: Normalized,
        note: Option<Park>,
    ) -> Self {
        Record {
            raw: None,
            partition,
            offset,
            key: None,
            state: State::Ready {
                env,
                normalized,
                note,
            },
        }
    }

    /// The envelope, while there is one.
    pub fn env(&self) -> Option<&RawEnvelope> {
        match &self.state {
            State::Envelope(env)
            | State::Ready { env, .. }
            | State::Written { env, .. }
            | State::Parked { env, .. } => Some(env),
            State::Repeat | State::Refused { .. } => None,
        }
    }

    /// Takes the envelope of a record still in [`State::Envelope`] (leaving
    /// [`State::Repeat`] until the caller sets the next state).
    pub fn take_envelope(&mut self) -> Option<RawEnvelope> {
        match std::mem::replace(&mut self.state, State::Repeat) {
            State::Envelope(env) => Some(env),
            other => {
                self.state = other;
                None
            }
        }
    }

    /// The webhook's trace context, when the envelope carries one.
    pub fn traceparent(&self) -> Option<&str> {
        self.env()?.header("traceparent")
    }

    /// Marks the record as bad data.
    pub fn refuse(&mut self, reason: DlqReason, detail: String) {
        self.state = State::Refused { reason, detail };
    }

    /// Where a reading of this record came from, for the changelog.
    pub fn provenance(&self) -> Option<Provenance> {
        let env = self.env()?;
        Some(Provenance {
            event_id: env.event_id.clone(),
            partition: self.partition,
            offset: self.offset,
            // Raw records the edge did not write (redriven, older, other producers) can
            // carry anything: only a valid W3C value travels on.
            traceparent: env
                .header("traceparent")
                .filter(|tp| tp.len() == 55 && bridge_core::telemetry::well_formed_traceparent(tp))
                .map(str::to_string),
        })
    }

    /// The dead letter of a refused record: original key, bytes and headers.
    pub fn dead_letter(&self) -> Option<DeadLetter> {
        let State::Refused { reason, detail } = &self.state else {
            return None;
        };
        let raw = self.raw.as_ref()?;
        let headers = raw
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        Some(DeadLetter {
            key: raw.key().map(<[u8]>::to_vec),
            payload: raw.payload().map(<[u8]>::to_vec),
            headers,
            reason: reason.as_str(),
            detail: detail.clone(),
            topic: raw.topic().to_string(),
            partition: self.partition,
            offset: self.offset,
        })
    }

    /// When the edge received the envelope (the epoch if unreadable: only an audit
    /// column, never a reading's time).
    pub fn received_at(env: &RawEnvelope) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_micros(env.received_at_micros).unwrap_or_default()
    }
}
