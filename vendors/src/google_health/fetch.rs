//! Google Health API notifications (google-spec.md §3) turned into list requests
//! (UPSERT) or range deletions (DELETE).

use bridge_core::model::RangeDeletion;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::VENDOR;
use super::normalize::{self, DataType};
use super::notification::{self, Notification, Operation};
use crate::fetch::{Api, BoxFuture, Job, Notify, Prepared, Resolved, Stop, checked_id};
use crate::normalize::NormalizeError;

/// Most pages followed for one interval: at the default 1,440 points a page that is
/// 100 days of minute steps; a longer chain is a broken or hostile API.
const MAX_PAGES: usize = 100;

/// Google Health API's webhooks.
pub struct GoogleHealthNotify;

impl Notify for GoogleHealthNotify {
    fn prepare(&self, body: &[u8]) -> Result<Prepared, NormalizeError> {
        let notifications =
            notification::parse(body).map_err(NormalizeError::UnsupportedShape)?;
        // One body is one account's work: the engine binds a job to one linked account.
        // A batch naming several users [U: not seen] cannot be split here; it is refused
        // whole rather than attributed to the first user.
        let user = &notifications[0].user;
        if notifications.iter().any(|n| &n.user != user) {
            return Err(NormalizeError::UnsupportedShape(
                "notifications for several users in one body".into(),
            ));
        }
        let vendor_user_id = checked_id(user, "healthUserId")?;
        let mut work = Vec::new();
        for n in notifications {
            // Unknown types are an error (dead-lettered, replayable once supported);
            // known types without a canonical metric need no request.
            if let Some(t) = normalize::data_type(&n.data_type)? {
                work.push((n, t));
            }
        }
        Ok(Prepared {
            vendor_user_id,
            job: (!work.is_empty()).then(|| Box::new(Work(work)) as Box<dyn Job>),
        })
    }
}

/// The notifications of one body that concern data types with metrics.
struct Work(Vec<(Notification, &'static DataType)>);

impl Job for Work {
    fn run<'a>(
        self: Box<Self>,
        api: &'a mut dyn Api,
        user_id: &'a str,
        out: &'a mut Resolved,
    ) -> BoxFuture<'a, Result<(), Stop>> {
        Box::pin(async move {
            for (n, t) in self.0 {
                for (start, end) in n.intervals {
                    match n.operation {
                        Operation::Delete => {
                            let (start, end) = notification::deleted_range(t, start, end);
                            out.normalized.range_deletions.push(RangeDeletion {
                                user_id: user_id.to_owned(),
                                vendor: VENDOR.to_owned(),
                                metrics: t.metrics(),
                                start,
                                end,
                            });
                        }
                        Operation::Upsert => {
                            let points = list(api, t, start, end).await?;
                            let readings = normalize::readings(t, &points, user_id)?;
                            out.normalized.readings.extend(readings);
                        }
                    }
                }
            }
            Ok(())
        })
    }
}

/// Every data point of `t` over `[start, end)`, following `nextPageToken`.
async fn list(
    api: &mut dyn Api,
    t: &DataType,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<Value>, Stop> {
    let filter = notification::filter(t, start, end);
    let mut points = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = api.get(&path(t, &filter, token.as_deref())).await?;
        match page.get("dataPoints") {
            // An exhausted window answers `{}` [C].
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => points.extend(list.iter().cloned()),
            Some(_) => {
                return Err(Stop::Reject(
                    "unsupported_shape",
                    "dataPoints is not a list".into(),
                ));
            }
        }
        let next = page
            .get("nextPageToken")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        match next {
            None => return Ok(points),
            Some(next) if token.as_deref() == Some(next.as_str()) => {
                return Err(Stop::Reject(
                    "unsupported_shape",
                    "the API repeated its page token".into(),
                ));
            }
            next => token = next,
        }
    }
    Err(Stop::Reject(
        "unsupported_shape",
        format!("more than {MAX_PAGES} pages for one interval"),
    ))
}

/// `GET /v4/users/me/dataTypes/{type}/dataPoints?filter=…[&pageToken=…]` [V]; the
/// account's token decides who `me` is.
fn path(t: &DataType, filter: &str, page_token: Option<&str>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("filter", filter);
    if let Some(token) = page_token {
        query.append_pair("pageToken", token);
    }
    format!(
        "/v4/users/me/dataTypes/{}/dataPoints?{}",
        t.name,
        query.finish()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::testing::{Recorded, run};
    use bridge_core::model::Metric;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/src/google_health/testdata/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).expect(&path)
    }

    fn json(name: &str) -> Value {
        let path = format!(
            "{}/tests/fixtures/google_health/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_slice(&std::fs::read(&path).expect(&path)).expect("fixture JSON")
    }

    fn steps_path(token: Option<&str>) -> String {
        let t = normalize::data_type("steps").unwrap().unwrap();
        let filter = notification::filter(
            t,
            "2025-01-01T07:00:00Z".parse().unwrap(),
            "2025-01-01T08:00:00Z".parse().unwrap(),
        );
        path(t, &filter, token)
    }

    #[test]
    fn upsert_lists_every_page_of_the_interval() {
        let n = GoogleHealthNotify
            .prepare(&fixture("notification_upsert_steps.json"))
            .unwrap();
        assert_eq!(n.vendor_user_id, "ghu-1a2b3c");
        let mut api = Recorded::default()
            .on(&steps_path(None), json("list_steps_page1.json"))
            .on(&steps_path(Some("page-2")), json("list_steps_page2.json"));
        let (resolved, result) = run(n.job.expect("a job"), &mut api, "alice");
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(
            api.paths,
            [
                "/v4/users/me/dataTypes/steps/dataPoints?filter=steps.interval.start_time+%3E%3D+%222025-01-01T07%3A00%3A00Z%22+AND+steps.interval.start_time+%3C+%222025-01-01T08%3A00%3A00Z%22",
                "/v4/users/me/dataTypes/steps/dataPoints?filter=steps.interval.start_time+%3E%3D+%222025-01-01T07%3A00%3A00Z%22+AND+steps.interval.start_time+%3C+%222025-01-01T08%3A00%3A00Z%22&pageToken=page-2",
            ]
        );
        let mut counts: Vec<f64> = resolved.normalized.readings.iter().map(|r| r.value).collect();
        counts.sort_by(f64::total_cmp);
        assert_eq!(counts, [40.0, 87.0, 112.0]);
        assert!(resolved.normalized.readings.iter().all(|r| r.user_id == "alice"));
        assert!(resolved.normalized.range_deletions.is_empty());
    }

    #[test]
    fn delete_is_a_range_of_the_types_metrics_and_fetches_nothing() {
        let n = GoogleHealthNotify
            .prepare(&fixture("notification_delete_steps.json"))
            .unwrap();
        let mut api = Recorded::default();
        let (resolved, result) = run(n.job.expect("a job"), &mut api, "alice");
        assert!(result.is_ok());
        assert!(api.paths.is_empty());
        assert_eq!(
            resolved.normalized.range_deletions,
            vec![RangeDeletion {
                user_id: "alice".into(),
                vendor: VENDOR.into(),
                metrics: vec![Metric::StepCount],
                start: "2025-01-01T07:00:00Z".parse().unwrap(),
                end: "2025-01-01T07:30:00Z".parse().unwrap(),
            }]
        );
        // A daily type's range is its civil days' 00:00Z, by the noon rule.
        let daily = br#"{"data":{"healthUserId":"u","operation":"DELETE","dataType":"daily-resting-heart-rate","intervals":[{"physicalTimeInterval":{"startTime":"2025-01-01T05:00:00Z","endTime":"2025-01-02T05:00:00Z"}}]}}"#;
        let (resolved, _) = run(
            GoogleHealthNotify.prepare(daily).unwrap().job.unwrap(),
            &mut Recorded::default(),
            "alice",
        );
        let d = &resolved.normalized.range_deletions[0];
        assert_eq!(
            (d.start, d.end),
            (
                "2024-12-31T17:00:00Z".parse().unwrap(),
                "2025-01-01T17:00:00Z".parse().unwrap()
            )
        );
    }

    #[test]
    fn an_object_body_a_sleep_session_and_an_empty_window() {
        let n = GoogleHealthNotify
            .prepare(&fixture("notification_object_sleep.json"))
            .unwrap();
        let mut api = Recorded::answering(json("list_sleep.json"));
        let (resolved, result) = run(n.job.unwrap(), &mut api, "alice");
        assert!(result.is_ok());
        assert_eq!(api.paths.len(), 1);
        assert!(api.paths[0].contains("filter=sleep.interval.end_time"), "{}", api.paths[0]);
        assert_eq!(resolved.normalized.readings.len(), 9, "6 summaries + session, latency, one stage");

        let mut empty = Recorded::answering(serde_json::json!({}));
        let n = GoogleHealthNotify
            .prepare(&fixture("notification_upsert_steps.json"))
            .unwrap();
        let (resolved, result) = run(n.job.unwrap(), &mut empty, "alice");
        assert!(result.is_ok());
        assert!(resolved.normalized.readings.is_empty());
    }

    #[test]
    fn a_repeated_page_token_stops_instead_of_looping() {
        let n = GoogleHealthNotify
            .prepare(&fixture("notification_upsert_steps.json"))
            .unwrap();
        let mut api = Recorded::answering(serde_json::json!({"dataPoints": [], "nextPageToken": "same"}));
        let (_, result) = run(n.job.unwrap(), &mut api, "alice");
        assert!(matches!(result, Err(Stop::Reject("unsupported_shape", _))));
        assert_eq!(api.paths.len(), 2);
    }

    #[test]
    fn bad_notifications_are_dead_letter_material() {
        let cases: [&[u8]; 8] = [
            b"not json",
            b"[]",
            br#"[{"data":{"operation":"UPSERT","dataType":"steps"}}]"#,
            br#"[{"data":{"healthUserId":"u","operation":"MERGE","dataType":"steps"}}]"#,
            br#"[{"data":{"healthUserId":"u","operation":"UPSERT","dataType":"made-up","intervals":[]}}]"#,
            br#"[{"data":{"healthUserId":"../x","operation":"UPSERT","dataType":"steps","intervals":[]}}]"#,
            br#"[{"data":{"healthUserId":"a","operation":"UPSERT","dataType":"steps"}},{"data":{"healthUserId":"b","operation":"UPSERT","dataType":"steps"}}]"#,
            br#"[{"data":{"healthUserId":"u","operation":"UPSERT","dataType":"steps","intervals":[{"physicalTimeInterval":{"startTime":"2025-01-02T00:00:00Z","endTime":"2025-01-01T00:00:00Z"}}]}}]"#,
        ];
        for body in cases {
            assert!(
                GoogleHealthNotify.prepare(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Known types without a metric: acknowledged, no job.
        let floors = br#"[{"data":{"healthUserId":"u","operation":"UPSERT","dataType":"floors","intervals":[]}}]"#;
        assert!(GoogleHealthNotify.prepare(floors).unwrap().job.is_none());
        // Civil-only intervals are skipped, not errors.
        let civil = br#"{"data":{"healthUserId":"u","operation":"UPSERT","dataType":"steps","intervals":[{"civilIso8601TimeInterval":{"startTime":"2025-01-01T00:00:00","endTime":"2025-01-02T00:00:00"}}]}}"#;
        let (resolved, result) = run(
            GoogleHealthNotify.prepare(civil).unwrap().job.unwrap(),
            &mut Recorded::default(),
            "alice",
        );
        assert!(result.is_ok() && resolved.normalized.readings.is_empty());
    }
}
