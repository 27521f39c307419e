//! Terra `daily` webhooks shaped like the real thing (vendors.md §3.3), and the raw
//! envelope the edge would make of one.

use std::collections::HashMap;

use bridge_core::RawEnvelope;
use chrono::{Days, NaiveDate};
use serde_json::json;

/// Signing secret the benchmark's edge is started with.
pub const SIGNING_SECRET: &str = "bench-secret";

/// Header Terra stamps its recency in (unix ms); the processor orders upserts by it.
const ORDERING_HEADER: &str = "x-terra-ordering-timestamp";

/// One Terra user as the benchmark spreads load over them.
#[derive(Debug, Clone)]
pub struct User {
    /// `user.reference_id`: the processor's `readings.user_id`.
    pub reference_id: String,
    /// `user.user_id`: Terra's connection id, the edge's partition key.
    pub terra_id: String,
}

impl User {
    /// A user with a fresh Terra id.
    pub fn new(reference_id: String) -> Self {
        User {
            reference_id,
            terra_id: uuid::Uuid::new_v4().to_string(),
        }
    }
}

/// What a benchmark `daily` carries besides its summary blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Summaries only (plus hourly step samples, which are no readings: the day's total
    /// is there): ~2.3 KiB, the summary round.
    Summary,
    /// The summaries and a heart-rate sample per minute (1,440 instants,
    /// `heart_rate_data.detailed.hr_samples`), ~80 KiB like a Garmin or Fitbit daily
    /// with per-minute data: the time-series round.
    Series,
}

impl Shape {
    /// Heart-rate samples in a body of this shape.
    pub fn hr_samples(self) -> u32 {
        match self {
            Shape::Summary => 0,
            Shape::Series => 1440,
        }
    }
}

/// A `daily` body for `user` on day `day` (counted from 2025-01-01), shaped like a
/// Garmin daily. Its summary blocks normalize to steps, distance, total/active/basal
/// energy, average and resting heart rate, RMSSD, VO2 max and the activity score (and
/// whatever else the Terra normalizer maps of them); the other blocks are there for
/// realistic parsing cost. [`Shape::Series`] adds one heart-rate sample a minute.
/// `marker` (any string) makes otherwise equal bodies distinct.
pub fn daily_body(user: &User, day: u64, marker: &str, shape: Shape) -> Vec<u8> {
    let date = NaiveDate::from_ymd_opt(2025, 1, 1)
        .and_then(|d| d.checked_add_days(Days::new(day)))
        .unwrap_or_default();
    let next = date.succ_opt().unwrap_or(date);
    let at = |h: u32| format!("{date}T{h:02}:00:00.000000+01:00");
    // Deterministic variety (FNV-1a of the user, plus the day), so rows differ in value.
    let user_hash = user
        .reference_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    let step_count = 4000 + (user_hash.wrapping_add(day * 7919)) % 9000;
    let v = ((user_hash >> 16).wrapping_add(day * 104_729) % 1000) as f64;
    let hr_samples: Vec<_> = (0..shape.hr_samples())
        .map(|m| {
            let at = format!("{date}T{:02}:{:02}:00.000000+01:00", m / 60, m % 60);
            json!({"timestamp": at, "bpm": 48 + (m * 37 + day as u32) % 97})
        })
        .collect();
    let step_samples: Vec<_> = (0..24)
        .map(|h| json!({"timestamp": at(h), "steps": (h * 137 + day as u32) % 900}))
        .collect();
    json!({
        "type": "daily",
        "version": "2022-03-16",
        "user": {
            "user_id": user.terra_id,
            "provider": "GARMIN",
            "reference_id": user.reference_id,
            "scopes": "activity,daily,sleep,body",
            "active": true,
            "created_at": "2024-06-01T09:12:44.000000+00:00",
            "last_webhook_update": "2025-01-01T07:00:00.000000+00:00",
        },
        "bench_marker": marker,
        "data": [{
            "metadata": {
                "start_time": format!("{date}T00:00:00.000000+01:00"),
                "end_time": format!("{next}T00:00:00.000000+01:00"),
                "upload_type": 1,
                "timestamp_localization": 1,
            },
            "distance_data": {
                "steps": step_count,
                "distance_meters": 4200.0 + v * 5.3,
                "floors_climbed": 9,
                "elevation": {"gain_actual_meters": 41.0, "loss_actual_meters": 39.5},
                "detailed": {"step_samples": step_samples},
            },
            "calories_data": {
                "total_burned_calories": 2100.0 + v * 0.9,
                "net_activity_calories": 380.0 + v * 0.6,
                "BMR_calories": 1720.0 + v * 0.3,
                "calorie_samples": [],
            },
            "heart_rate_data": {
                "summary": {
                    "avg_hr_bpm": 60.0 + v / 50.0,
                    "min_hr_bpm": 46.0,
                    "max_hr_bpm": 151.0,
                    "resting_hr_bpm": 50.0 + v / 100.0,
                    "avg_hrv_rmssd": 40.0 + v / 25.0,
                    "avg_hrv_sdnn": null,
                },
                "detailed": {"hr_samples": hr_samples},
            },
            "active_durations_data": {
                "activity_seconds": 4200,
                "low_intensity_seconds": 2500,
                "moderate_intensity_seconds": 1200,
                "vigorous_intensity_seconds": 500,
                "inactivity_seconds": 51_000,
                "rest_seconds": 28_000,
            },
            "MET_data": {"avg_level": 1.4, "num_high_intensity_minutes": 9, "num_moderate_intensity_minutes": 20},
            "oxygen_data": {"avg_saturation_percentage": null, "vo2max_ml_per_min_per_kg": 44.0 + v / 100.0},
            "scores": {"activity": 60.0 + v / 30.0, "recovery": null, "sleep": null},
            "strain_data": {"strain_level": null},
            "stress_data": {"avg_stress_level": 31, "max_stress_level": 88, "rest_stress_duration_seconds": 30_000},
        }],
    })
    .to_string()
    .into_bytes()
}

/// The `terra-signature` and ordering headers for `body`, signed at unix second `t`.
pub fn headers(body: &[u8], t: i64, ordering_ms: i64) -> HashMap<String, String> {
    HashMap::from([
        (
            "terra-signature".to_string(),
            bridge_tests::sign::terra(SIGNING_SECRET, t, body),
        ),
        (ORDERING_HEADER.to_string(), ordering_ms.to_string()),
    ])
}

/// The envelope the edge builds for an accepted Terra webhook (`edge/src/routes.rs`):
/// Terra identifies no principal, and only the signature and ordering headers are kept.
pub fn envelope(body: Vec<u8>, t: i64, ordering_ms: i64, received_at_micros: i64) -> RawEnvelope {
    RawEnvelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        vendor: "terra".into(),
        received_at_micros,
        headers: headers(&body, t, ordering_ms),
        query: None,
        principal: None,
        content_type: Some("application/json".into()),
        body,
        edge_instance: "bench-prefill".into(),
    }
}
