//! Avro in the Confluent wire format (magic byte 0, 4-byte big-endian schema id,
//! Avro datum) through any Confluent-compatible schema registry.
//!
//! Encoding pins the schema id once at start-up, so the hot path is a plain
//! datum write with no lock and no registry call. Decoding resolves ids through
//! `schema_registry_converter`'s `AvroDecoder`, which caches schemas by id.

use std::sync::Arc;
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_all_subjects, post_schema,
};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};

/// Registry calls bounded so a hung registry turns into an error, not a stall.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(5);

/// Failure talking to the registry or preparing a schema.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry URL could not be used to build a client.
    #[error("invalid schema registry settings: {0}")]
    Settings(String),
    /// The schema text is not valid Avro.
    #[error("schema for subject {subject} is not valid Avro: {source}")]
    Schema {
        /// Subject the schema was meant for.
        subject: String,
        /// Parser error.
        source: Box<apache_avro::Error>,
    },
    /// The registry refused or could not be reached.
    #[error("schema registry call failed: {0}")]
    Call(String),
}

/// Why a Kafka value could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not Confluent-framed, or the datum does not decode against the
    /// schema the registry serves for its id: retrying cannot help, so the record
    /// belongs in the dead-letter topic.
    #[error("poison: {0}")]
    Poison(String),
    /// The registry answered 404 for the record's schema id. The edge registered that
    /// id before it produced the record, so the registry lost it (restart without
    /// persistent storage, restore, wrong registry): an outage an operator must fix,
    /// never a reason to dead-letter good data.
    #[error(
        "schema id {0} is unknown to the registry (registry lost its storage, or points at another registry)"
    )]
    UnknownSchema(u32),
    /// The registry could not be reached, answered 5xx/429 or timed out; retry later
    /// without skipping the record.
    #[error("transient: {0}")]
    Transient(String),
}

impl DecodeError {
    /// A short, bounded label for metrics and DLQ headers.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Poison(_) => "undecodable",
            DecodeError::UnknownSchema(_) => "schema_unknown",
            DecodeError::Transient(_) => "registry_unavailable",
        }
    }

    /// Whether the record must be held and retried (never dead-lettered).
    pub fn is_outage(&self) -> bool {
        !matches!(self, DecodeError::Poison(_))
    }
}

/// A Confluent-compatible schema registry client.
#[derive(Clone)]
pub struct SchemaRegistry {
    settings: SrSettings,
    url: String,
    decoder: Arc<AvroDecoder>,
    http: reqwest::Client,
    outage: Arc<std::sync::Mutex<Option<String>>>,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("url", &self.url)
            .finish()
    }
}

impl SchemaRegistry {
    /// A client for the registry at `url` (for Apicurio, its `/apis/ccompat/v7` base).
    pub fn new(url: &str) -> Result<Self, RegistryError> {
        let settings = SrSettings::new_builder(url.trim_end_matches('/').to_string())
            .set_timeout(REGISTRY_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| RegistryError::Settings(e.to_string()))?;
        Ok(SchemaRegistry {
            decoder: Arc::new(AvroDecoder::new(settings.clone())),
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .map_err(|e| RegistryError::Settings(e.to_string()))?,
            outage: Arc::default(),
            settings,
            url: url.to_string(),
        })
    }

    /// Registers `schema` under `subject` (a no-op when the registry already has it),
    /// asks for BACKWARD compatibility on the subject, and returns a codec pinned to the id.
    pub async fn register(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<RegisteredCodec, RegistryError> {
        let parsed = Schema::parse_str(schema).map_err(|e| RegistryError::Schema {
            subject: subject.to_string(),
            source: Box::new(e),
        })?;
        let registered = post_schema(
            &self.settings,
            subject.to_string(),
            SuppliedSchema::new(None, SchemaType::Avro, schema.to_string()),
        )
        .await
        .map_err(|e| RegistryError::Call(format!("register {subject}: {e}")))?;
        self.set_backward_compatibility(subject).await;
        RegisteredCodec::new(registered.id, parsed).map_err(|e| RegistryError::Schema {
            subject: subject.to_string(),
            source: Box::new(e),
        })
    }

    /// Best effort: Confluent and Apicurio default to BACKWARD already, so a registry
    /// that refuses the call is logged, not fatal.
    async fn set_backward_compatibility(&self, subject: &str) {
        let url = format!("{}/config/{subject}", self.url.trim_end_matches('/'));
        let result = reqwest::Client::new()
            .put(&url)
            .timeout(REGISTRY_TIMEOUT)
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(r#"{"compatibility":"BACKWARD"}"#)
            .send()
            .await;
        match result {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::warn!(message = "Registry refused to set BACKWARD compatibility.", subject, status = %r.status())
            }
            Err(error) => {
                tracing::warn!(message = "Could not set BACKWARD compatibility.", subject, %error)
            }
        }
    }

    /// Whether the registry answers (readiness probes).
    pub async fn check(&self) -> Result<(), RegistryError> {
        get_all_subjects(&self.settings)
            .await
            .map(|_| ())
            .map_err(|e| RegistryError::Call(e.to_string()))
    }

    /// Whether the registry still serves schema `id` (a pinned id must survive a
    /// registry restart; readiness probes call this).
    pub async fn check_id(&self, id: u32) -> Result<(), RegistryError> {
        match self.fetch_schema(id).await {
            Ok(_) => Ok(()),
            Err(e) => Err(RegistryError::Call(e.to_string())),
        }
    }

    /// The last decode outage (unknown schema id or unreachable registry), cleared by
    /// the next successful decode; `/ready` reports it.
    pub fn outage(&self) -> Option<String> {
        self.outage.lock().ok().and_then(|o| o.clone())
    }

    fn set_outage(&self, what: Option<String>) {
        if let Ok(mut o) = self.outage.lock() {
            *o = what;
        }
    }

    /// Decodes a Confluent-framed Avro value with the writer's schema, fetched by id and cached.
    pub async fn decode(&self, bytes: &[u8]) -> Result<Value, DecodeError> {
        // Checked here so hostile input never reaches a slice of the 5-byte header.
        if bytes.len() < 5 || bytes[0] != 0 {
            return Err(DecodeError::Poison(format!(
                "not Confluent wire format ({} bytes, first byte {:?})",
                bytes.len(),
                bytes.first()
            )));
        }
        let result = match self.decoder.decode(Some(bytes)).await {
            Ok(r) => Ok(r.value),
            Err(_) => self.classify(bytes).await,
        };
        match &result {
            Ok(_) | Err(DecodeError::Poison(_)) => {
                if self.outage.lock().is_ok_and(|o| o.is_some()) {
                    self.set_outage(None);
                }
            }
            Err(e) => self.set_outage(Some(e.to_string())),
        }
        result
    }

    /// The converter treats 500, 504 and 429 as final and caches them per schema id,
    /// and a datum error after a good GET can still be a registry failure in disguise.
    /// So on any converter error the schema is fetched again here and the datum decoded
    /// against it directly: only a datum that fails against a schema the registry
    /// actually serves is poison; every registry failure, a 404 included, is an outage.
    async fn classify(&self, bytes: &[u8]) -> Result<Value, DecodeError> {
        self.decoder.remove_errors_from_cache();
        let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        let schema = self.fetch_schema(id).await?;
        let poison = |e: apache_avro::Error| {
            DecodeError::Poison(format!("datum does not match schema {id}: {e}"))
        };
        // Fails only for a schema with unresolvable references: the registry's problem.
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
            .build()
            .map_err(|e| DecodeError::Transient(format!("schema {id} does not resolve: {e}")))?;
        let mut datum = &bytes[5..];
        reader.read_value(&mut datum).map_err(poison)
    }

    /// `GET /schemas/ids/{id}`, classified: 404 is [`DecodeError::UnknownSchema`],
    /// anything else that is not a parsable schema is transient.
    async fn fetch_schema(&self, id: u32) -> Result<Schema, DecodeError> {
        let url = format!("{}/schemas/ids/{id}", self.url.trim_end_matches('/'));
        let response = self
            .http
            .get(&url)
            .timeout(REGISTRY_TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                DecodeError::Transient(format!("registry unreachable for schema {id}: {e}"))
            })?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            tracing::error!(
                message = "Registry does not know a schema id the raw topic uses; holding the records. Restore the registry's storage.",
                schema_id = id
            );
            return Err(DecodeError::UnknownSchema(id));
        }
        if !status.is_success() {
            return Err(DecodeError::Transient(format!(
                "registry answered {status} for schema {id}"
            )));
        }
        #[derive(serde::Deserialize)]
        struct SchemaById {
            schema: String,
        }
        let body: SchemaById = response.json().await.map_err(|e| {
            DecodeError::Transient(format!("registry answer for schema {id} unreadable: {e}"))
        })?;
        Schema::parse_str(&body.schema).map_err(|e| {
            // The registry serves something that is not Avro: the registry is broken,
            // not the record.
            DecodeError::Transient(format!("registry serves an unparsable schema {id}: {e}"))
        })
    }
}

/// Encodes values of one schema, pinned to the id the registry gave it.
///
/// The datum writer (schema resolution included) is built once here, not per record:
/// the edge encodes one envelope per request and the processor thousands of readings
/// per batch. The writer borrows its schema, so the schema is leaked once per
/// registration; a process registers each of its few schemas once at start-up.
#[derive(Clone)]
pub struct RegisteredCodec {
    id: u32,
    schema: &'static Schema,
    writer: Arc<GenericDatumWriter<'static>>,
}

impl std::fmt::Debug for RegisteredCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredCodec")
            .field("id", &self.id)
            .finish()
    }
}

impl RegisteredCodec {
    fn new(id: u32, schema: Schema) -> Result<Self, apache_avro::Error> {
        let schema: &'static Schema = Box::leak(Box::new(schema));
        let writer = GenericDatumWriter::builder(schema).build()?;
        Ok(RegisteredCodec {
            id,
            schema,
            writer: Arc::new(writer),
        })
    }

    /// The registry's id for this schema.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The parsed schema.
    pub fn schema(&self) -> &Schema {
        self.schema
    }

    /// Confluent wire format: magic byte, schema id, Avro datum (written in place
    /// after the header, no intermediate buffer).
    pub fn encode(&self, value: Value) -> Result<Vec<u8>, apache_avro::Error> {
        let mut out = Vec::with_capacity(256);
        out.push(0);
        out.extend_from_slice(&self.id.to_be_bytes());
        self.writer.write_value_ref(&mut out, &value)?;
        Ok(out)
    }
}
