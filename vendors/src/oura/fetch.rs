//! Oura notifications (vendors.md §1.3) turned into document fetches
//! (`/v2/usercollection/{type}/{id}`) or deletions.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::normalize::{day_window, normalize_document};
use crate::fetch::{
    Api, BoxFuture, Delete, Job, Notify, ParkReason, Prepared, Resolved, Stop, checked_id, extend,
    notification_object,
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
    if data_type == "heartrate" {
        // Not a webhook type in Oura's API; should one come, the collection is already
        // read with every `daily_activity` (see `Fetch::run`).
        return Ok(None);
    }
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
            if self.data_type == "daily_activity" {
                // The heart-rate collection has no webhook: it is read for the local day
                // each `daily_activity` version covers, so a day's readings are refreshed
                // whenever Oura updates that day (and replaced as one set).
                let (day, start, end) = day_window(&doc)?;
                let collected = heart_rate_day(api, &day, start, end).await?;
                extend(
                    &mut out.normalized,
                    normalize_document(user_id, "heartrate", &collected)?,
                );
            }
            Ok(())
        })
    }
}

/// Most pages of one day's heart-rate collection read. A day at Oura's 5-minute daytime
/// sampling is ~300 items; this only stops a vendor whose `next_token` never ends.
pub const MAX_HEARTRATE_PAGES: usize = 100;

/// Every page of `GET /v2/usercollection/heartrate` for `[start, end)`, assembled as the
/// document `normalize_document(_, "heartrate", _)` reads. A collection that does not end
/// (a repeated `next_token`, more than [`MAX_HEARTRATE_PAGES`]) closes the notification as
/// rejected with what was resolved before it; a partial day is never written, because it
/// would replace the complete set of an earlier fetch.
async fn heart_rate_day(
    api: &mut dyn Api,
    day: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Value, Stop> {
    let at = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let (from, to) = (at(start), at(end));
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    let mut seen = HashSet::new();
    let broken = |detail: String| Stop::Park(ParkReason::Rejected, None, detail);
    for _ in 0..MAX_HEARTRATE_PAGES {
        let path = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query
                .append_pair("start_datetime", &from)
                .append_pair("end_datetime", &to);
            if let Some(t) = &token {
                query.append_pair("next_token", t);
            }
            format!("/v2/usercollection/heartrate?{}", query.finish())
        };
        let page = api.get(&path).await?;
        match page.get("data") {
            Some(Value::Array(data)) => items.extend(data.iter().cloned()),
            None | Some(Value::Null) => {}
            Some(_) => return Err(broken("oura heartrate page: `data` is not a list".into())),
        }
        match page.get("next_token").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => {
                if !seen.insert(t.to_owned()) {
                    return Err(broken(format!(
                        "oura heartrate {day}: next_token repeats"
                    )));
                }
                token = Some(t.to_owned());
            }
            _ => {
                return Ok(json!({"day": day, "start_datetime": from, "end_datetime": to,
                    "data": items}));
            }
        }
    }
    Err(broken(format!(
        "oura heartrate {day}: more than {MAX_HEARTRATE_PAGES} pages"
    )))
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

    fn activity_doc() -> Value {
        serde_json::json!({"id": "d-act-1", "day": "2025-01-01",
            "timestamp": "2025-01-01T04:00:00.000-05:00", "steps": 100})
    }

    const HR_PATH: &str = "/v2/usercollection/heartrate?start_datetime=2025-01-01T05%3A00%3A00Z&end_datetime=2025-01-02T05%3A00%3A00Z";

    /// A daily_activity notification also reads the day's heart-rate collection, every
    /// page of it, through the account's API (a path, never a host); the rows are keyed
    /// by the day.
    #[test]
    fn daily_activity_reads_the_days_heart_rate_collection_page_by_page() {
        let n = prepare(
            r#"{"event_type":"update","data_type":"daily_activity","object_id":"d-act-1","user_id":"u"}"#,
        )
        .unwrap();
        let page2 = format!("{HR_PATH}&next_token=abc%2B%2F%3D%26x");
        let mut api = Recorded::default()
            .on("/v2/usercollection/daily_activity/d-act-1", activity_doc())
            .on(
                HR_PATH,
                serde_json::json!({"data": [
                    {"bpm": 61, "source": "awake", "timestamp": "2025-01-01T05:00:00+00:00"},
                    {"bpm": 64, "source": "awake", "timestamp": "2025-01-01T05:05:00+00:00"}],
                    "next_token": "abc+/=&x"}),
            )
            .on(
                &page2,
                serde_json::json!({"data": [
                    {"bpm": 88, "source": "workout", "timestamp": "2025-01-01T12:00:00.000+01:00"},
                    {"bpm": 70, "source": "rest", "timestamp": "2025-01-02T05:00:00+00:00"}],
                    "next_token": null}),
            );
        let (resolved, result) = run(n.job.expect("a job"), &mut api, "alice");
        result.expect("resolved");
        assert_eq!(
            api.paths,
            ["/v2/usercollection/daily_activity/d-act-1", HR_PATH, page2.as_str()]
        );
        let hr: Vec<(String, f64)> = resolved
            .normalized
            .readings
            .iter()
            .filter(|r| r.metric == bridge_core::model::Metric::HeartRate)
            .map(|r| (r.start_time.to_rfc3339(), r.value))
            .collect();
        // The item at the next local day's first instant belongs to the next day.
        assert_eq!(
            hr,
            [
                ("2025-01-01T05:00:00+00:00".to_owned(), 61.0),
                ("2025-01-01T05:05:00+00:00".to_owned(), 64.0),
                ("2025-01-01T11:00:00+00:00".to_owned(), 88.0),
            ]
        );
        let steps = resolved.normalized.readings.iter().find(|r| r.metric.as_str() == "step_count");
        assert_eq!(steps.map(|r| r.source_record_id.as_str()), Some("d-act-1"));
        assert!(
            resolved
                .normalized
                .readings
                .iter()
                .filter(|r| r.metric == bridge_core::model::Metric::HeartRate)
                .all(|r| r.source_record_id == "heartrate:2025-01-01" && r.source.is_none())
        );
    }

    #[test]
    fn a_heart_rate_collection_that_never_ends_keeps_the_document_and_closes_it() {
        let n = prepare(
            r#"{"event_type":"update","data_type":"daily_activity","object_id":"d-act-1","user_id":"u"}"#,
        )
        .unwrap();
        let looping = serde_json::json!({"data": [
            {"bpm": 61, "source": "awake", "timestamp": "2025-01-01T05:00:00+00:00"}],
            "next_token": "again"});
        let mut api = Recorded::default()
            .on("/v2/usercollection/daily_activity/d-act-1", activity_doc())
            .on(HR_PATH, looping.clone())
            .on(&format!("{HR_PATH}&next_token=again"), looping);
        let (resolved, result) = run(n.job.expect("a job"), &mut api, "alice");
        let Err(Stop::Park(reason, _, detail)) = result else {
            panic!("{result:?}");
        };
        assert_eq!(reason, ParkReason::Rejected);
        assert!(detail.contains("next_token repeats"), "{detail}");
        assert_eq!(api.paths.len(), 3);
        let metrics: Vec<&str> = resolved.normalized.readings.iter().map(|r| r.metric.as_str()).collect();
        assert_eq!(metrics, ["step_count"], "the document's rows, no partial day");
    }

    /// A collection page that fails stops the job with that failure (the engine parks or
    /// closes it) after the document's rows: no heart rate is written for the day, so an
    /// earlier fetch's set stays as it was.
    #[test]
    fn a_failed_heart_rate_page_keeps_the_document_and_writes_no_day() {
        let n = prepare(
            r#"{"event_type":"update","data_type":"daily_activity","object_id":"d-act-1","user_id":"u"}"#,
        )
        .unwrap();
        let mut api =
            Recorded::default().on("/v2/usercollection/daily_activity/d-act-1", activity_doc());
        let (resolved, result) = run(n.job.expect("a job"), &mut api, "alice");
        assert!(matches!(result, Err(Stop::NotFound(ref p)) if p == HR_PATH), "{result:?}");
        let metrics: Vec<&str> = resolved
            .normalized
            .readings
            .iter()
            .map(|r| r.metric.as_str())
            .collect();
        assert_eq!(metrics, ["step_count"]);
    }

    #[test]
    fn heartrate_notifications_fetch_nothing() {
        let n = prepare(
            r#"{"event_type":"create","data_type":"heartrate","object_id":"a1","user_id":"u"}"#,
        )
        .unwrap();
        assert!(n.job.is_none());
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
