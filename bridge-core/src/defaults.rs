//! Connection defaults shared by the binaries, the stack script, the Makefile
//! and docker-compose. Change them together (a test checks docker-compose).

/// Kafka bootstrap servers of the local stack.
pub const KAFKA_BOOTSTRAP_SERVERS: &str = "127.0.0.1:9092";
/// Apicurio's Confluent-compatible API on the local stack.
pub const SCHEMA_REGISTRY_URL: &str = "http://127.0.0.1:8081/apis/ccompat/v7";
/// PostgreSQL role and database the stack creates.
pub const DATABASE_URL: &str = "postgres://bridge:bridge@127.0.0.1:5432/bridge";
/// Redis of the local stack.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Topic the edge appends raw envelopes to.
pub const RAW_TOPIC: &str = "biometrics.raw.v1";

/// Confluent's TopicNameStrategy: the value subject of `topic`.
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}
