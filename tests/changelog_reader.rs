//! Reading the readings changelog the way a consumer that no one here wrote would:
//! the Confluent wire format, the writer schema fetched from the registry by id, and
//! plain Avro decoding. Nothing of the project's codec or types is used.
//! Included by several test binaries, each using a part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::types::Value;
use rdkafka::message::{Message, OwnedMessage};

/// A changelog key as a consumer sees it: every key field, as Avro values printed.
pub type Key = BTreeMap<String, String>;

/// A decoded changelog record: key fields, and the value's fields (`None` = tombstone).
#[derive(Debug, Clone)]
pub struct Record {
    /// Key fields.
    pub key: Key,
    /// Value fields; `None` for a tombstone.
    pub value: Option<BTreeMap<String, Value>>,
    /// Partition the record was in.
    pub partition: i32,
}

/// Decodes Confluent-framed Avro with schemas fetched by id from the registry.
#[derive(Default)]
pub struct Decoder {
    schemas: HashMap<u32, Schema>,
}

impl Decoder {
    async fn schema(&mut self, id: u32) -> &Schema {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.schemas.entry(id) {
            let url = format!("{}/schemas/ids/{id}", bridge_tests::registry_url());
            let body: serde_json::Value = reqwest::get(&url)
                .await
                .and_then(|r| r.error_for_status())
                .expect("registry answers")
                .json()
                .await
                .expect("registry json");
            let text = body["schema"].as_str().expect("schema string");
            slot.insert(Schema::parse_str(text).expect("registry schema parses"));
        }
        &self.schemas[&id]
    }

    /// One framed datum → its record fields.
    pub async fn decode(&mut self, bytes: &[u8]) -> BTreeMap<String, Value> {
        assert!(bytes.len() > 5 && bytes[0] == 0, "Confluent framing");
        let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        let schema = self.schema(id).await.clone();
        let mut rest = &bytes[5..];
        let value = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
            .build()
            .expect("reader")
            .read_value(&mut rest)
            .expect("datum decodes");
        match value {
            Value::Record(fields) => fields.into_iter().collect(),
            other => panic!("not a record: {other:?}"),
        }
    }

    /// A changelog message → record.
    pub async fn record(&mut self, m: &OwnedMessage) -> Record {
        let key = self
            .decode(m.key().expect("changelog records are keyed"))
            .await
            .into_iter()
            .map(|(k, v)| (k, show(&v)))
            .collect();
        let value = match m.payload() {
            Some(p) => Some(self.decode(p).await),
            None => None,
        };
        Record {
            key,
            value,
            partition: m.partition(),
        }
    }
}

/// An Avro value as text, unions unwrapped (`null` for null).
pub fn show(v: &Value) -> String {
    match v {
        Value::Union(_, inner) => show(inner),
        Value::Null => "null".into(),
        Value::String(s) => s.clone(),
        Value::Long(n) | Value::TimestampMicros(n) => n.to_string(),
        Value::Int(n) => n.to_string(),
        Value::Double(x) => x.to_string(),
        other => format!("{other:?}"),
    }
}

/// Folds records in order: the latest value of each key, tombstones remove it.
pub fn fold(records: &[Record]) -> BTreeMap<Key, BTreeMap<String, Value>> {
    let mut state = BTreeMap::new();
    for r in records {
        match &r.value {
            Some(v) => {
                state.insert(r.key.clone(), v.clone());
            }
            None => {
                state.remove(&r.key);
            }
        }
    }
    state
}

/// A changelog topic read from the beginning: every record decoded and kept, in the
/// order read.
pub struct Changelog {
    consumer: rdkafka::consumer::StreamConsumer,
    decoder: Decoder,
    /// Every record read so far.
    pub records: Vec<Record>,
}

impl Changelog {
    /// A reader of `topic` from its first record.
    pub fn new(topic: &str) -> Self {
        Changelog {
            consumer: bridge_tests::consumer(topic),
            decoder: Decoder::default(),
            records: Vec::new(),
        }
    }

    /// Reads until nothing arrives for `quiet`; returns the records this call read.
    pub async fn catch_up(&mut self, quiet: Duration) -> &[Record] {
        let before = self.records.len();
        for m in bridge_tests::drain(&self.consumer, quiet).await {
            let r = self.decoder.record(&m).await;
            self.records.push(r);
        }
        &self.records[before..]
    }

    /// The fold ([`fold`]) of every record of `user` read so far.
    pub fn fold_user(&self, user: &str) -> BTreeMap<Key, BTreeMap<String, Value>> {
        let mine: Vec<Record> = self
            .records
            .iter()
            .filter(|r| r.key["user_id"] == user)
            .cloned()
            .collect();
        fold(&mine)
    }
}
