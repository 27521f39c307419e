//! The raw envelope: one authenticated webhook, untouched.

use std::collections::HashMap;

use apache_avro::types::Value;

/// The Avro schema of [`RawEnvelope`], as registered under the raw topic's value subject.
pub const RAW_ENVELOPE_SCHEMA: &str = include_str!("../../schemas/raw_envelope.v1.avsc");

/// One vendor webhook exactly as the edge received and authenticated it.
///
/// Field meanings are documented in `schemas/raw_envelope.v1.avsc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEnvelope {
    /// UUIDv7 assigned by the edge.
    pub event_id: String,
    /// Vendor route name (`oura`, `whoop`, `terra`, `polar`, `healthkit`, …).
    pub vendor: String,
    /// Receive time, microseconds since the Unix epoch (UTC).
    pub received_at_micros: i64,
    /// Delivery headers kept for re-verification and ordering, lower-case names.
    pub headers: HashMap<String, String>,
    /// Raw query string without `?`.
    pub query: Option<String>,
    /// User the edge authenticated, when the vendor scheme identifies one.
    pub principal: Option<String>,
    /// Content-Type as sent.
    pub content_type: Option<String>,
    /// Raw body bytes.
    pub body: Vec<u8>,
    /// Edge instance that accepted the request.
    pub edge_instance: String,
}

/// The Avro value did not have the shape of a raw envelope.
#[derive(Debug, thiserror::Error)]
#[error("not a raw envelope: {0}")]
pub struct ShapeError(pub String);

fn opt_string(v: Option<String>) -> Value {
    match v {
        Some(s) => Value::Union(1, Box::new(Value::String(s))),
        None => Value::Union(0, Box::new(Value::Null)),
    }
}

impl RawEnvelope {
    /// The Avro record for this envelope, in schema field order.
    pub fn into_avro(self) -> Value {
        Value::Record(vec![
            ("event_id".into(), Value::String(self.event_id)),
            ("vendor".into(), Value::String(self.vendor)),
            (
                "received_at".into(),
                Value::TimestampMicros(self.received_at_micros),
            ),
            (
                "headers".into(),
                Value::Map(
                    self.headers
                        .into_iter()
                        .map(|(k, v)| (k, Value::String(v)))
                        .collect(),
                ),
            ),
            ("query".into(), opt_string(self.query)),
            ("principal".into(), opt_string(self.principal)),
            ("content_type".into(), opt_string(self.content_type)),
            ("body".into(), Value::Bytes(self.body)),
            ("edge_instance".into(), Value::String(self.edge_instance)),
        ])
    }

    /// Reads an envelope from a decoded Avro record. Accepts any schema version whose
    /// fields carry these names, so later additive versions still decode.
    pub fn from_avro(value: Value) -> Result<Self, ShapeError> {
        let Value::Record(fields) = value else {
            return Err(ShapeError("top level is not a record".into()));
        };
        let mut env = RawEnvelope {
            event_id: String::new(),
            vendor: String::new(),
            received_at_micros: 0,
            headers: HashMap::new(),
            query: None,
            principal: None,
            content_type: None,
            body: Vec::new(),
            edge_instance: String::new(),
        };
        let mut seen = 0u8;
        for (name, v) in fields {
            match (name.as_str(), v) {
                ("event_id", Value::String(s)) => (env.event_id, seen) = (s, seen | 1),
                ("vendor", Value::String(s)) => (env.vendor, seen) = (s, seen | 2),
                ("received_at", Value::TimestampMicros(t) | Value::Long(t)) => {
                    (env.received_at_micros, seen) = (t, seen | 4)
                }
                ("headers", Value::Map(m)) => {
                    env.headers = m
                        .into_iter()
                        .filter_map(|(k, v)| match v {
                            Value::String(s) => Some((k, s)),
                            _ => None,
                        })
                        .collect();
                }
                ("query", v) => env.query = union_string(v),
                ("principal", v) => env.principal = union_string(v),
                ("content_type", v) => env.content_type = union_string(v),
                ("body", Value::Bytes(b)) => (env.body, seen) = (b, seen | 8),
                ("edge_instance", Value::String(s)) => env.edge_instance = s,
                _ => {}
            }
        }
        if seen != 0b1111 {
            return Err(ShapeError(
                "missing one of event_id, vendor, received_at, body".into(),
            ));
        }
        Ok(env)
    }

    /// A header value by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

fn union_string(v: Value) -> Option<String> {
    match v {
        Value::Union(_, inner) => union_string(*inner),
        Value::String(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RawEnvelope {
        RawEnvelope {
            event_id: "0192".into(),
            vendor: "terra".into(),
            received_at_micros: 1_735_718_400_123_456,
            headers: HashMap::from([("terra-signature".into(), "t=1,v1=ab".into())]),
            query: None,
            principal: Some("user-1".into()),
            content_type: Some("application/json".into()),
            body: b"{\"a\":1}\xff".to_vec(),
            edge_instance: "edge-1".into(),
        }
    }

    #[test]
    fn avro_round_trip_keeps_every_field() {
        let schema = apache_avro::Schema::parse_str(RAW_ENVELOPE_SCHEMA).unwrap();
        let bytes = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
            .build()
            .unwrap()
            .write_value_to_vec(sample().into_avro())
            .unwrap();
        let value = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
            .build()
            .unwrap()
            .read_value(&mut bytes.as_slice())
            .unwrap();
        assert_eq!(RawEnvelope::from_avro(value).unwrap(), sample());
    }

    #[test]
    fn missing_body_is_a_shape_error() {
        let value = Value::Record(vec![("event_id".into(), Value::String("x".into()))]);
        assert!(RawEnvelope::from_avro(value).is_err());
    }
}
