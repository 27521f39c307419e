//! Oura notifications (vendors.md §1.3) turned into document fetches
//! (`/v2/usercollection/{type}/{id}`) or deletions.

use serde_json::Value;

use super::normalize::normalize_document;
use crate::fetch::{
    Api, BoxFuture, Delete, Job, Notify, Prepared, Resolved, Stop, checked_id, notification_object,
};
use crate::normalize::NormalizeError;

const VENDOR: &str = "oura";

/// Oura data types whose documents have readings (the rest normalize to nothing).
const FETCHED: [&str; 8] = [
    "sleep",
    "daily_sleep",
    "daily_readiness",
    "daily_activity",
    "daily_spo2",
    "vo2_max",
    "vO2_max",
    "workout",
];

/// Oura's webhooks.
pub struct OuraNotify;

impl Notify for OuraNotify {
    fn prepare(&self, body: &[u8]) -> Result<Prepared, NormalizeError> {
        let (v, vendor_user_id) = notification_object(body, "user_id")?;
        Ok(Prepared {
            vendor_user_id,
            job: job(&v)?,
        })
    }
}

fn shape(msg: &str) -> NormalizeError {
    NormalizeError::UnsupportedShape(msg.into())
}

fn job(v: &Value) -> Result<Option<Box<dyn Job>>, NormalizeError> {
    let field = |k: &str| v.get(k).and_then(Value::as_str);
    let data_type = field("data_type").ok_or_else(|| shape("oura without data_type"))?;
    let object_id = checked_id(
        field("object_id").ok_or_else(|| shape("oura without object_id"))?,
        "object_id",
    )?;
    let event_type = field("event_type").ok_or_else(|| shape("oura without event_type"))?;
    if !FETCHED.contains(&data_type) {
        // Known types without metrics normalize to nothing whatever the document; unknown
        // ones are an error. Asking the normalizer keeps one list of known types.
        normalize_document("-", data_type, &Value::Object(Default::default()))?;
        return Ok(None);
    }
    match event_type {
        // Every Oura reading's source_record_id is the document id.
        "delete" => Ok(Some(Box::new(Delete {
            vendor: VENDOR,
            source_record_ids: vec![object_id],
        }))),
        "create" | "update" => Ok(Some(Box::new(Fetch {
            data_type: data_type.to_owned(),
            object_id,
        }))),
        other => Err(NormalizeError::UnsupportedType {
            vendor: VENDOR,
            kind: format!("event_type {}", other.chars().take(32).collect::<String>()),
        }),
    }
}

/// Fetch one document and normalize it.
#[derive(Debug, PartialEq, Eq)]
struct Fetch {
    data_type: String,
    object_id: String,
}

impl Fetch {
    fn path(&self) -> String {
        format!(
            "/v2/usercollection/{}/{}",
            path_type(&self.data_type),
            self.object_id
        )
    }
}

impl Job for Fetch {
    fn run<'a>(
        self: Box<Self>,
        api: &'a mut dyn Api,
        user_id: &'a str,
        out: &'a mut Resolved,
    ) -> BoxFuture<'a, Result<(), Stop>> {
        Box::pin(async move {
            let doc = api.get(&self.path()).await?;
            out.normalized = normalize_document(user_id, &self.data_type, &doc)?;
            Ok(())
        })
    }
}

/// The Oura REST path segment for a webhook data type (the one documented casing quirk).
fn path_type(data_type: &str) -> &str {
    if data_type == "vo2_max" {
        "vO2_max"
    } else {
        data_type
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::testing::{Recorded, run};

    fn prepare(body: &str) -> Result<Prepared, NormalizeError> {
        OuraNotify.prepare(body.as_bytes())
    }

    #[test]
    fn update_fetches_and_delete_tombstones() {
        let n = prepare(r#"{"event_type":"update","data_type":"sleep","object_id":"5d3a-0c1e","event_time":"2025-01-01T07:42:10+00:00","user_id":"7c1f0e9a-oura-user"}"#).unwrap();
        assert_eq!(n.vendor_user_id, "7c1f0e9a-oura-user");
        let mut api = Recorded::answering(serde_json::json!({}));
        let _ = run(n.job.expect("a job"), &mut api, "alice");
        assert_eq!(api.paths, ["/v2/usercollection/sleep/5d3a-0c1e"]);

        let n = prepare(
            r#"{"event_type":"update","data_type":"vo2_max","object_id":"v1","user_id":"u"}"#,
        )
        .unwrap();
        let mut api = Recorded::answering(serde_json::json!({}));
        let _ = run(n.job.expect("a job"), &mut api, "alice");
        assert_eq!(api.paths, ["/v2/usercollection/vO2_max/v1"]);

        let n = prepare(
            r#"{"event_type":"delete","data_type":"daily_sleep","object_id":"a1","user_id":"u"}"#,
        )
        .unwrap();
        let mut api = Recorded::answering(serde_json::json!({}));
        let (resolved, result) = run(n.job.expect("a job"), &mut api, "alice");
        assert!(result.is_ok());
        assert!(api.paths.is_empty(), "a delete fetches nothing");
        assert_eq!(resolved.normalized.tombstones.len(), 1);
        assert_eq!(resolved.normalized.tombstones[0].source_record_id, "a1");
        assert_eq!(resolved.normalized.tombstones[0].user_id, "alice");
    }

    #[test]
    fn unmapped_and_unknown_types() {
        let n =
            prepare(r#"{"event_type":"create","data_type":"tag","object_id":"a1","user_id":"u"}"#)
                .unwrap();
        assert!(n.job.is_none());
        let e = prepare(
            r#"{"event_type":"create","data_type":"blood","object_id":"a1","user_id":"u"}"#,
        )
        .unwrap_err();
        assert_eq!(e.reason(), "unsupported_type");
    }

    #[test]
    fn hostile_ids_are_refused() {
        for id in ["../../v2/x", "a/b", "", "a b", "%2e%2e"] {
            let body = format!(
                r#"{{"event_type":"update","data_type":"sleep","object_id":"{id}","user_id":"u"}}"#
            );
            assert!(prepare(&body).is_err(), "{id}");
        }
        assert_eq!(prepare("[]").unwrap_err().reason(), "unsupported_shape");
        assert_eq!(prepare("{").unwrap_err().reason(), "invalid_json");
    }
}
