//! The results as markdown, and their place in BENCHMARKS.md.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use crate::config::Config;
use crate::latency::Latency;
use crate::stages::{STAGES, Stages};
use crate::terra::Shape;
use crate::throughput::Round;

/// Readings per second one processor replica should sustain (issue 9, with the changelog on).
const TARGET_READINGS_PER_SEC: f64 = 35_000.0;
/// Share of the same run's COPY ceiling the processor should reach: the machine-independent
/// form of the throughput target, since a shared machine moves both figures together.
const TARGET_COPY_RATIO: f64 = 0.38;
/// End-to-end p99 bound at the target rate, milliseconds.
const TARGET_P99_MS: f64 = 250.0;

/// Heading of the section this benchmark owns.
const SECTION: &str = "## Processor";
/// Placeholder for the section another benchmark fills, when the file is new.
const EDGE_PLACEHOLDER: &str = "## Edge\n\n_Filled by `make bench-edge`._\n";

/// Median of `xs` (mean of the middle two for an even count); NaN when empty.
pub fn median(xs: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = xs.into_iter().collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Nearest-rank percentile `q` (0–1] of ascending `sorted`; NaN when empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Thousands separators for whole numbers.
fn int(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let s = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < -0.5 { format!("-{out}") } else { out }
}

/// A histogram bucket bound in seconds as "≤ N" milliseconds.
fn opt_ms(seconds: f64) -> String {
    if seconds.is_finite() {
        format!("≤ {:.0}", seconds * 1000.0)
    } else {
        "–".into()
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "**met**" } else { "**missed**" }
}

/// The "## Processor" section, heading included.
pub fn section(
    cfg: &Config,
    date: &str,
    background: f64,
    rounds: &[Round],
    series: &[Round],
    profiles: &[Stages],
    latency: Option<&Latency>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{SECTION}\n");
    let _ = writeln!(
        s,
        "Command: `{}` (`BENCH_MESSAGES={} BENCH_ROUNDS={} BENCH_SERIES_MESSAGES={} \
         BENCH_SERIES_ROUNDS={} BENCH_USERS={} BENCH_RATE={} BENCH_LATENCY_DURATION={}`; \
         every setting is an environment variable, see `bench/processor/src/config.rs`). \
         Run {date}.\n",
        cfg.command,
        cfg.messages,
        cfg.rounds,
        cfg.series_messages,
        cfg.series_rounds,
        cfg.users,
        cfg.rate,
        humantime::format_duration(cfg.latency_duration),
    );
    let _ = writeln!(
        s,
        "Machine: 2 cores shared by Kafka, Apicurio, PostgreSQL, Redis, the processor and \
         edge under test, and the load generator. Release builds, default processor settings \
         (batches of ≤ 1,000 records / 50 ms, Redis dedup on, 4 PostgreSQL connections), \
         {} raw partitions. Background load in the second before the run: {:.0} % of both \
         cores{}.\n",
        cfg.partitions,
        100.0 * background,
        if background > 0.15 {
            " (**busy machine: every figure below is pessimistic**)"
        } else {
            ""
        },
    );
    let _ = writeln!(
        s,
        "Targets: ≥ {} readings/s per processor replica and ≥ {:.2} of the same run's COPY \
         ceiling; time series (dailies with a heart-rate sample per minute) ≥ {:.2} of their \
         own COPY ceiling; end-to-end p99 ≤ {} ms at 1,000 webhooks/s.\n",
        int(TARGET_READINGS_PER_SEC),
        TARGET_COPY_RATIO,
        TARGET_COPY_RATIO,
        TARGET_P99_MS
    );
    if !rounds.is_empty() {
        throughput(&mut s, cfg, rounds);
        if let Some(st) = profiles.iter().find(|p| p.shape == Shape::Summary) {
            stage_profile(&mut s, st, rounds);
        }
    }
    if !series.is_empty() {
        series_throughput(&mut s, cfg, series);
        if let Some(st) = profiles.iter().find(|p| p.shape == Shape::Series) {
            stage_profile(&mut s, st, series);
        }
    }
    if let Some(l) = latency {
        latency_table(&mut s, l);
    }
    s
}

fn throughput(s: &mut String, cfg: &Config, rounds: &[Round]) {
    let _ = writeln!(
        s,
        "### Throughput: one processor replica vs the COPY ceiling\n"
    );
    let proc_rate = rounds_table(s, rounds);
    let med = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f));
    let ratio = med(&|r| r.readings_per_sec() / r.copy_readings_per_sec());
    let _ = writeln!(
        s,
        "Target ≥ {} readings/s: {} ({:.0} % of target). Target ≥ {:.2} of the COPY ceiling: {} \
         ({:.2}).\n",
        int(TARGET_READINGS_PER_SEC),
        verdict(proc_rate >= TARGET_READINGS_PER_SEC),
        100.0 * proc_rate / TARGET_READINGS_PER_SEC,
        TARGET_COPY_RATIO,
        verdict(ratio >= TARGET_COPY_RATIO),
        ratio,
    );

    checks_and_time(s, rounds);
    let _ = writeln!(
        s,
        "Method: each round pre-fills a fresh {}-partition raw topic with {} Terra `daily` \
         envelopes (summary blocks and hourly step samples, no heart-rate samples, ≈2 KiB \
         bodies, {} users × consecutive days, so every row is new), encoded \
         through the registry exactly as the edge does; readings are counted with the \
         processor's own normalizer. One release processor with a fresh group then drains it: \
         the clock runs from its `/ready` answering 200 (polled every 10 ms; includes the group \
         join and first fetch) until its `processor_raw_records_total` reaches N (offsets stored \
         for every record, i.e. lag 0) and all expected rows are in `readings` (polled every \
         10 ms). \"After 1st batch\" excludes the join and the first batch. The processor also \
         publishes every reading to Kafka and checks/marks Redis; the COPY ceiling \
         (`PgSink::copy_readings`, one plain `COPY … FROM STDIN` of the same readings under \
         `copy-` user ids) does none of that. Both write into the same table, from the same \
         state: rows of the previous step deleted and `VACUUM (ANALYZE)`d (`readings` and \
         `reading_documents`). All rows, Redis marks and topics are removed at the end.{}\n",
        cfg.partitions,
        int(cfg.messages as f64),
        cfg.users,
        if cfg.database.is_empty() {
            " The table is DATABASE_URL's own (BENCH_DATABASE empty)."
        } else {
            " The table is in a database created for the run on the same server (migrations \
             applied, empty at the start) and dropped at the end."
        },
    );
}

/// The per-round table and its median row; returns the median readings/s.
fn rounds_table(s: &mut String, rounds: &[Round]) -> f64 {
    let _ = writeln!(
        s,
        "| round | raw records | readings | processor s | readings/s | raw records/s | readings/s after 1st batch | COPY s | COPY readings/s | processor / COPY |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for (i, r) in rounds.iter().enumerate() {
        let _ = writeln!(
            s,
            "| {}{} | {} | {} | {:.2} | {} | {} | {} | {:.2} | {} | {:.2} |",
            i + 1,
            if r.complete {
                String::new()
            } else {
                format!(
                    " (incomplete: {} records done, {} rows)",
                    int(r.records_done),
                    int(r.rows_found as f64)
                )
            },
            int(r.records as f64),
            int(r.readings as f64),
            r.ready_to_done.as_secs_f64(),
            int(r.readings_per_sec()),
            int(r.records_per_sec()),
            int(r.steady_readings_per_sec().unwrap_or(f64::NAN)),
            r.copy.as_secs_f64(),
            int(r.copy_readings_per_sec()),
            r.readings_per_sec() / r.copy_readings_per_sec(),
        );
    }
    let med = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f));
    let proc_rate = med(&|r| r.readings_per_sec());
    let copy_rate = med(&|r| r.copy_readings_per_sec());
    let _ = writeln!(
        s,
        "| **median** | | | {:.2} | **{}** | {} | {} | {:.2} | **{}** | **{:.2}** |\n",
        med(&|r| r.ready_to_done.as_secs_f64()),
        int(proc_rate),
        int(med(&|r| r.records_per_sec())),
        int(med(&|r| r.steady_readings_per_sec().unwrap_or(f64::NAN))),
        med(&|r| r.copy.as_secs_f64()),
        int(copy_rate),
        med(&|r| r.readings_per_sec() / r.copy_readings_per_sec()),
    );
    proc_rate
}

/// The checks line and "where the time goes" of a set of rounds.
fn checks_and_time(s: &mut String, rounds: &[Round]) {
    let med = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f));
    let _ = writeln!(
        s,
        "Checks (all rounds): rows found = readings expected: {}; consumer lag after stop: {}; \
         dead letters: {}; dedup hits: {}; COPY rows = readings: {}.\n",
        yes(rounds
            .iter()
            .all(|r| r.complete && r.rows_found == r.readings as i64)),
        rounds
            .iter()
            .map(|r| r.lag_after.map_or("?".into(), |l| l.to_string()))
            .collect::<Vec<_>>()
            .join("/"),
        int(rounds.iter().map(|r| r.dead_letters).sum()),
        int(rounds.iter().map(|r| r.dedup_hits).sum()),
        yes(rounds.iter().all(|r| r.copy_rows == r.readings as u64)),
    );
    let batch_records = med(&|r| r.batch_records.mean().unwrap_or(f64::NAN));
    let batch_ms = med(&|r| r.batch_seconds.mean().unwrap_or(f64::NAN) * 1000.0);
    let _ = writeln!(
        s,
        "Where the time goes (medians of the rounds, from the processor's `/metrics` and `/proc`): \
         {:.0} raw records ({:.0} readings) per batch, {:.0} ms per batch (p50 {} ms, p99 {} ms, \
         power-of-two buckets), i.e. {:.1} µs per reading end to end in the batch loop; \
         processor CPU {:.0} % of one core; machine {:.0} % busy (both cores) while it ran; \
         start-up to `/ready` {:.2} s (not counted).\n",
        batch_records,
        batch_records * rounds[0].readings as f64 / rounds[0].records.max(1) as f64,
        batch_ms,
        opt_ms(med(&|r| r.batch_seconds_p50_p99.0.unwrap_or(f64::NAN))),
        opt_ms(med(&|r| r.batch_seconds_p50_p99.1.unwrap_or(f64::NAN))),
        1000.0 * batch_ms
            / (batch_records * rounds[0].readings as f64 / rounds[0].records.max(1) as f64),
        med(&|r| 100.0 * r.processor_cpu / r.ready_to_done.as_secs_f64()),
        med(&|r| 100.0 * r.machine_busy),
        med(&|r| r.start_to_ready.as_secs_f64()),
    );
}

/// The time-series rounds: per-minute dailies, against their own COPY ceiling.
fn series_throughput(s: &mut String, cfg: &Config, series: &[Round]) {
    let _ = writeln!(
        s,
        "### Time series: dailies with a heart-rate sample per minute\n"
    );
    rounds_table(s, series);
    let ratio = median(
        series
            .iter()
            .map(|r| r.readings_per_sec() / r.copy_readings_per_sec()),
    );
    let _ = writeln!(
        s,
        "Target ≥ {:.2} of the COPY ceiling: {} ({:.2}).\n",
        TARGET_COPY_RATIO,
        verdict(ratio >= TARGET_COPY_RATIO),
        ratio,
    );
    checks_and_time(s, series);
    let _ = writeln!(
        s,
        "Method: as above, with {} Terra `daily` envelopes per round that also carry \
         `heart_rate_data.detailed.hr_samples`, one `{{timestamp, bpm}}` a minute (1,440; \
         ≈ 85 KiB bodies, one day per user), each sample an instant `heart_rate` reading of \
         the day's document. Batches stay far below `BATCH_MAX_RECORDS` (the mean is under \
         \"where the time goes\"; the stage profile uses it). The COPY ceiling loads the \
         same readings.\n",
        int(cfg.series_messages as f64),
    );
}

fn stage_profile(s: &mut String, st: &Stages, rounds: &[Round]) {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let total = ms(st.total());
    let parts: Vec<String> = STAGES
        .iter()
        .zip(st.mean)
        .map(|(name, d)| format!("{name} {:.0} ms ({:.0} %)", ms(d), 100.0 * ms(d) / total))
        .collect();
    let measured = median(
        rounds
            .iter()
            .map(|r| r.batch_seconds.mean().unwrap_or(f64::NAN) * 1000.0),
    );
    let _ = writeln!(
        s,
        "Stage profile (the processor's own stage functions called in pipeline order by the \
         benchmark on {}-record batches of {} readings, mean of {} after a warm-up batch): \
         {}; sum {:.0} ms, against {:.0} ms per batch measured in the processor above.\n",
        int(st.records as f64),
        int(st.readings as f64),
        st.batches,
        parts.join(", "),
        total,
        measured,
    );
}

fn latency_table(s: &mut String, l: &Latency) {
    let _ = writeln!(
        s,
        "### End-to-end latency: webhook → edge → Kafka → processor → row visible\n"
    );
    let refused: usize = l.refused.values().sum();
    let _ = writeln!(
        s,
        "| target rate | sent rate | sent | 202 | not 202 | 202 p50 / p99 ms | visible − 202 p50 | p99 | max | ingested_at − 202 p50 / p99 / max | lost |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
    let p = |v: &[f64], q: f64| percentile(v, q);
    let _ = writeln!(
        s,
        "| {}/s | {:.0}/s | {} | {} | {} | {:.1} / {:.1} | {:.0} ms | **{:.0} ms** | {:.0} ms | {:.0} / {:.0} / {:.0} ms | {} |\n",
        int(f64::from(l.target_rate)),
        l.send_rate(),
        int(l.sent as f64),
        int(l.accepted as f64),
        refused,
        p(&l.response_ms, 0.5),
        p(&l.response_ms, 0.99),
        p(&l.visible_ms, 0.5),
        p(&l.visible_ms, 0.99),
        p(&l.visible_ms, 1.0),
        p(&l.ingested_ms, 0.5),
        p(&l.ingested_ms, 0.99),
        p(&l.ingested_ms, 1.0),
        l.lost,
    );
    let p99 = p(&l.visible_ms, 0.99);
    let _ = writeln!(
        s,
        "Target p99 ≤ {TARGET_P99_MS} ms at 1,000 webhooks/s: {} (p99 {:.0} ms at {:.0} webhooks/s sent). \
         Every accepted webhook's rows arrived: {}.{}\n",
        verdict(p99 <= TARGET_P99_MS && l.send_rate() >= 0.98 * f64::from(l.target_rate)),
        p99,
        l.send_rate(),
        yes(l.lost == 0 && l.accepted > 0),
        if l.refused.is_empty() {
            String::new()
        } else {
            format!(" Not accepted: {:?}.", l.refused)
        },
    );
    let _ = writeln!(
        s,
        "During the run: {:.0} raw records per batch, {:.0} ms per batch (processor means); CPU \
         edge {:.0} %, processor {:.0} % of one core; machine {:.0} % busy. {} polls, {:.1} ms \
         mean, {:.1} ms longest.\n",
        l.batch_records.mean().unwrap_or(f64::NAN),
        l.batch_seconds.mean().unwrap_or(f64::NAN) * 1000.0,
        100.0 * l.cpu.0 / l.send_span.as_secs_f64().max(1.0),
        100.0 * l.cpu.1 / l.send_span.as_secs_f64().max(1.0),
        100.0 * l.cpu.2,
        int(l.polls.0 as f64),
        l.polls.1,
        l.polls.2,
    );
    let _ = writeln!(
        s,
        "Method: the release edge (`TERRA_SIGNING_SECRET=bench-secret`) and one release \
         processor on a fresh 4-partition topic; after a warm-up of 20 webhooks whose rows must \
         arrive, a Rust load generator (reqwest, one task per request) sends signed Terra \
         `daily` webhooks on a fixed {:.1} ms tick, every body unique (its own `reference_id` \
         and a marker), and records when each 202 arrives. A poller asks PostgreSQL every \
         10 ms, by primary key, which awaited users have rows. \"Visible\" is the start of the \
         first poll whose snapshot held the webhook's rows (an upper bound; resolution = poll \
         period + poll time); `ingested_at` is PostgreSQL's `now()` at the start of the \
         processor's upsert transaction, so \"ingested_at − 202\" is a lower bound on the same \
         delay (same machine, same clock). Negative values mean the rows were in before the \
         202 reached the client.\n",
        1000.0 / f64::from(l.target_rate),
    );
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "**no**" }
}

/// Replaces the "## Processor" section of `path` with `section` (up to the next `## `
/// heading), appending it when absent; creates the file with its title and an empty
/// Edge section when missing. Read and written at once, so concurrent edits to other
/// sections are kept unless they land in the same instant.
pub fn write_section(path: &Path, section: &str) -> anyhow::Result<()> {
    let current = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            format!("# Benchmarks\n\n{EDGE_PLACEHOLDER}")
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let lines: Vec<&str> = current.lines().collect();
    let start = lines.iter().position(|l| l.trim_end() == SECTION);
    let mut out = String::new();
    match start {
        Some(start) => {
            let end = lines[start + 1..]
                .iter()
                .position(|l| l.starts_with("## "))
                .map_or(lines.len(), |i| start + 1 + i);
            for l in &lines[..start] {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str(section.trim_end());
            out.push('\n');
            if end < lines.len() {
                out.push('\n');
                for l in &lines[end..] {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        None => {
            out.push_str(current.trim_end());
            out.push_str("\n\n");
            out.push_str(section.trim_end());
            out.push('\n');
        }
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn section_is_replaced_in_place_and_others_kept() {
        let dir = std::env::temp_dir().join(format!("bench-md-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("BENCHMARKS.md");
        write_section(&path, "## Processor\n\nfirst\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Benchmarks\n\n## Edge\n"), "{text}");
        assert!(text.ends_with("## Processor\n\nfirst\n"), "{text}");

        // A section after ours (another benchmark's) must survive the replacement.
        std::fs::write(&path, text + "\n## Later\n\nkept\n").unwrap();
        write_section(&path, "## Processor\n\nsecond\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("first") && text.contains("second"), "{text}");
        assert!(
            text.contains("## Edge") && text.ends_with("## Later\n\nkept\n"),
            "{text}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(int(1234567.4), "1,234,567");
        assert_eq!(int(999.0), "999");
        assert_eq!(int(f64::NAN), "–");
    }
}
