//! Oura and WHOOP webhook bodies (vendors.md §1.3, §2.3) turned into what to fetch or
//! delete. Pure: no I/O.

use serde_json::Value;

use crate::normalize::NormalizeError;
use vendors::oura::normalize as oura;

/// A vendor whose webhooks carry only ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vendor {
    /// Oura API v2.
    Oura,
    /// WHOOP developer API v2.
    Whoop,
}

impl Vendor {
    /// The vendor route name (`oura`, `whoop`), as in envelopes and `readings.vendor`.
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Oura => "oura",
            Vendor::Whoop => "whoop",
        }
    }

    /// The vendor for a route name, if it is fetched.
    pub fn from_route(name: &str) -> Option<Vendor> {
        match name {
            "oura" => Some(Vendor::Oura),
            "whoop" => Some(Vendor::Whoop),
            _ => None,
        }
    }
}

impl std::fmt::Display for Vendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A WHOOP id: v2 sleeps and workouts are UUIDs, cycles (and v1 everything) integers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhoopId {
    /// An integer id (a cycle id for `recovery.*`).
    Int(i64),
    /// A UUID (or any other opaque string id).
    Uuid(String),
}

impl std::fmt::Display for WhoopId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WhoopId::Int(i) => write!(f, "{i}"),
            WhoopId::Uuid(s) => f.write_str(s),
        }
    }
}

/// What a notification asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Oura: fetch `/v2/usercollection/{data_type}/{object_id}`.
    Oura {
        /// Webhook data type (`sleep`, `daily_sleep`, `vo2_max`, …).
        data_type: String,
        /// Document id.
        object_id: String,
    },
    /// WHOOP `sleep.updated`.
    WhoopSleep(WhoopId),
    /// WHOOP `workout.updated`.
    WhoopWorkout(WhoopId),
    /// WHOOP `recovery.updated`: an integer is the cycle id; a UUID is (most likely) the
    /// sleep id, whose `cycle_id` leads to the recovery (vendors.md §2.3).
    WhoopRecovery(WhoopId),
    /// The vendor deleted these source records (`source_record_id`s as the normalizers
    /// set them): tombstones, no fetch.
    Delete(Vec<String>),
    /// WHOOP `recovery.deleted` with a UUID: the recovery's id is `recovery:<cycle_id>`
    /// and only the (deleted) sleep knew the cycle; resolved by trying the sleep.
    WhoopRecoveryDeletedBySleep(String),
    /// A known type with no canonical metric (Oura `tag`, `session`, …): acknowledged,
    /// nothing fetched.
    Nothing,
}

/// One parsed notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Vendor.
    pub vendor: Vendor,
    /// The vendor's user id (the linked account's key).
    pub vendor_user_id: String,
    /// What to do.
    pub action: Action,
}

/// Oura data types whose documents have readings (the rest normalize to nothing).
const OURA_FETCHED: [&str; 8] = [
    "sleep",
    "daily_sleep",
    "daily_readiness",
    "daily_activity",
    "daily_spo2",
    "vo2_max",
    "vO2_max",
    "workout",
];

/// Longest id accepted; real ids are UUIDs or int64s.
const MAX_ID_LEN: usize = 128;

fn shape(msg: impl Into<String>) -> NormalizeError {
    NormalizeError::UnsupportedShape(msg.into())
}

/// Ids go into URL paths: anything but `[A-Za-z0-9_-]` could walk the path (`../`).
fn checked_id(id: &str, what: &str) -> Result<String, NormalizeError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(id.to_owned())
    } else {
        Err(shape(format!("{what} is not a plain id")))
    }
}

/// A string or integer id field.
fn id_field(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// Parses a notification body of `vendor`. Errors are deterministic (dead-letter them).
pub fn parse(vendor: Vendor, body: &[u8]) -> Result<Notification, NormalizeError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| NormalizeError::InvalidJson(e.to_string()))?;
    if !v.is_object() {
        return Err(shape("notification is not an object"));
    }
    let vendor_user_id = id_field(&v, "user_id")
        .filter(|s| !s.trim().is_empty() && s.len() <= MAX_ID_LEN)
        .ok_or(NormalizeError::MissingUserId(
            "notification without user_id",
        ))?;
    // Vendor user ids are UUID-like (Oura) or integers (WHOOP); anything else (NUL,
    // control characters) would only fail later in SQL, where it looks transient.
    let vendor_user_id = checked_id(&vendor_user_id, "user_id")?;
    let action = match vendor {
        Vendor::Oura => oura_action(&v)?,
        Vendor::Whoop => whoop_action(&v)?,
    };
    Ok(Notification {
        vendor,
        vendor_user_id,
        action,
    })
}

fn oura_action(v: &Value) -> Result<Action, NormalizeError> {
    let field = |k: &str| v.get(k).and_then(Value::as_str);
    let data_type = field("data_type").ok_or_else(|| shape("oura without data_type"))?;
    let object_id = checked_id(
        field("object_id").ok_or_else(|| shape("oura without object_id"))?,
        "object_id",
    )?;
    let event_type = field("event_type").ok_or_else(|| shape("oura without event_type"))?;
    if !OURA_FETCHED.contains(&data_type) {
        // Known types without metrics normalize to nothing whatever the document; unknown
        // ones are an error. Asking the normalizer keeps one list of known types.
        oura::normalize_document("-", data_type, &Value::Object(Default::default()))?;
        return Ok(Action::Nothing);
    }
    match event_type {
        // Every Oura reading's source_record_id is the document id.
        "delete" => Ok(Action::Delete(vec![object_id])),
        "create" | "update" => Ok(Action::Oura {
            data_type: data_type.to_owned(),
            object_id,
        }),
        other => Err(NormalizeError::UnsupportedType {
            vendor: "oura",
            kind: format!("event_type {}", other.chars().take(32).collect::<String>()),
        }),
    }
}

fn whoop_action(v: &Value) -> Result<Action, NormalizeError> {
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| shape("whoop without type"))?;
    let id = match v.get("id") {
        Some(Value::Number(n)) => WhoopId::Int(n.as_i64().ok_or_else(|| shape("whoop id"))?),
        // v1 sent integers; tolerate one written as a string.
        Some(Value::String(s)) => match s.parse::<i64>() {
            Ok(i) => WhoopId::Int(i),
            Err(_) => WhoopId::Uuid(checked_id(s, "id")?),
        },
        _ => return Err(shape("whoop without id")),
    };
    Ok(match kind {
        "sleep.updated" => Action::WhoopSleep(id),
        "workout.updated" => Action::WhoopWorkout(id),
        "recovery.updated" => Action::WhoopRecovery(id),
        // The normalizers key sleeps and workouts by their id.
        "sleep.deleted" | "workout.deleted" => Action::Delete(vec![id.to_string()]),
        "recovery.deleted" => match id {
            WhoopId::Int(cycle) => Action::Delete(vec![format!("recovery:{cycle}")]),
            WhoopId::Uuid(sleep) => Action::WhoopRecoveryDeletedBySleep(sleep),
        },
        other => {
            return Err(NormalizeError::UnsupportedType {
                vendor: "whoop",
                kind: other.chars().take(64).collect(),
            });
        }
    })
}

/// The Oura REST path segment for a webhook data type (the one documented casing quirk).
pub fn oura_path_type(data_type: &str) -> &str {
    if data_type == "vo2_max" {
        "vO2_max"
    } else {
        data_type
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oura(body: &str) -> Result<Notification, NormalizeError> {
        parse(Vendor::Oura, body.as_bytes())
    }

    fn whoop(body: &str) -> Result<Notification, NormalizeError> {
        parse(Vendor::Whoop, body.as_bytes())
    }

    #[test]
    fn oura_update_fetches_and_delete_tombstones() {
        let n = oura(r#"{"event_type":"update","data_type":"sleep","object_id":"5d3a-0c1e","event_time":"2025-01-01T07:42:10+00:00","user_id":"7c1f0e9a-oura-user"}"#).unwrap();
        assert_eq!(n.vendor_user_id, "7c1f0e9a-oura-user");
        assert_eq!(
            n.action,
            Action::Oura {
                data_type: "sleep".into(),
                object_id: "5d3a-0c1e".into()
            }
        );
        let n = oura(
            r#"{"event_type":"delete","data_type":"daily_sleep","object_id":"a1","user_id":"u"}"#,
        )
        .unwrap();
        assert_eq!(n.action, Action::Delete(vec!["a1".into()]));
        assert_eq!(oura_path_type("vo2_max"), "vO2_max");
        assert_eq!(oura_path_type("sleep"), "sleep");
    }

    #[test]
    fn oura_unmapped_and_unknown_types() {
        let n = oura(r#"{"event_type":"create","data_type":"tag","object_id":"a1","user_id":"u"}"#)
            .unwrap();
        assert_eq!(n.action, Action::Nothing);
        let e =
            oura(r#"{"event_type":"create","data_type":"blood","object_id":"a1","user_id":"u"}"#)
                .unwrap_err();
        assert_eq!(e.reason(), "unsupported_type");
    }

    #[test]
    fn hostile_ids_are_refused() {
        for id in ["../../v2/x", "a/b", "", "a b", "%2e%2e"] {
            let body = format!(
                r#"{{"event_type":"update","data_type":"sleep","object_id":"{id}","user_id":"u"}}"#
            );
            assert!(oura(&body).is_err(), "{id}");
            let body = format!(r#"{{"user_id":1,"id":"{id}","type":"sleep.updated"}}"#);
            assert!(whoop(&body).is_err(), "{id}");
        }
        assert_eq!(oura("[]").unwrap_err().reason(), "unsupported_shape");
        assert_eq!(oura("{").unwrap_err().reason(), "invalid_json");
        assert_eq!(
            whoop(r#"{"id":1,"type":"sleep.updated"}"#)
                .unwrap_err()
                .reason(),
            "missing_user_id"
        );
    }

    #[test]
    fn whoop_types_and_ids() {
        let n = whoop(r#"{"user_id":10129,"id":"ecfc6a15-4661-442f-a9a4-f160dd7afae8","type":"sleep.updated","trace_id":"t"}"#).unwrap();
        assert_eq!(n.vendor_user_id, "10129");
        assert_eq!(
            n.action,
            Action::WhoopSleep(WhoopId::Uuid("ecfc6a15-4661-442f-a9a4-f160dd7afae8".into()))
        );
        let n = whoop(r#"{"user_id":1,"id":93845,"type":"recovery.updated"}"#).unwrap();
        assert_eq!(n.action, Action::WhoopRecovery(WhoopId::Int(93845)));
        let n = whoop(r#"{"user_id":1,"id":93845,"type":"recovery.deleted"}"#).unwrap();
        assert_eq!(n.action, Action::Delete(vec!["recovery:93845".into()]));
        let n = whoop(r#"{"user_id":1,"id":"abc-1","type":"recovery.deleted"}"#).unwrap();
        assert_eq!(
            n.action,
            Action::WhoopRecoveryDeletedBySleep("abc-1".into())
        );
        let n = whoop(r#"{"user_id":1,"id":"w-1","type":"workout.deleted"}"#).unwrap();
        assert_eq!(n.action, Action::Delete(vec!["w-1".into()]));
        assert_eq!(
            whoop(r#"{"user_id":1,"id":1,"type":"cycle.updated"}"#)
                .unwrap_err()
                .reason(),
            "unsupported_type"
        );
    }
}
