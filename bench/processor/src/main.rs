//! Processor benchmark on the real local stack (`make bench-processor`).
//!
//! Throughput: R rounds, each pre-filling a fresh raw topic with N Terra envelopes and
//! timing one release processor through them, then timing `PgSink::copy_readings` of the
//! same readings as PostgreSQL's ceiling. Latency: the release edge and processor under a
//! steady webhook rate, with each webhook's rows looked up in PostgreSQL as they appear.
//! Results go to stdout and to the "## Processor" section of BENCHMARKS.md. A benchmark,
//! not a test: it reports misses rather than failing on them.

mod config;
mod latency;
mod report;
mod stack;
mod stages;
mod terra;
mod throughput;

use std::path::PathBuf;

use anyhow::Context as _;
use bridge_core::SchemaRegistry;
use clap::Parser;
use processor::sink::postgres::PgSink;

use crate::config::Config;
use crate::terra::Shape;
use crate::throughput::Workload;

/// What every phase shares.
pub struct Ctx {
    /// Settings.
    pub cfg: Config,
    /// Where the release `processor` and `edge` binaries are.
    pub bin_dir: PathBuf,
    /// Unique per run (unix seconds): part of every topic, group and user id.
    pub run_id: String,
    /// Probe and metrics client.
    pub http: reqwest::Client,
    /// Topic administration.
    pub kafka: stack::Kafka,
    /// Registry client (envelope encoding).
    pub registry: SchemaRegistry,
    /// The processor's own sink: COPY baseline, row counts, clean-up.
    pub sink: PgSink,
}

impl Ctx {
    /// Environment of a processor on the given topics with a fresh group. Everything
    /// else is the processor's default (batch size and wait, dedup on, pool size).
    pub fn processor_env(
        &self,
        raw: &str,
        readings: &str,
        dlq: &str,
        group: &str,
    ) -> Vec<(&'static str, String)> {
        vec![
            (
                "KAFKA_BOOTSTRAP_SERVERS",
                self.cfg.kafka_bootstrap_servers.clone(),
            ),
            ("SCHEMA_REGISTRY_URL", self.cfg.schema_registry_url.clone()),
            ("DATABASE_URL", self.cfg.database_url.clone()),
            ("REDIS_URL", self.cfg.redis_url.clone()),
            ("RAW_TOPIC", raw.to_string()),
            ("READINGS_TOPIC", readings.to_string()),
            ("DLQ_TOPIC", dlq.to_string()),
            ("PROCESSOR_GROUP_ID", group.to_string()),
        ]
    }
}

impl Ctx {
    /// Deletes a phase's topics and their registry subjects, best effort.
    pub async fn drop_topics(&self, topics: &[String]) {
        self.kafka.delete(topics).await;
        stack::delete_subjects(&self.http, &self.cfg.schema_registry_url, topics).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cfg = Config::parse();
    cfg.validate()?;
    if cfg.database.is_empty() {
        return run(cfg).await;
    }
    let name = format!("{}_{}", cfg.database, chrono::Utc::now().timestamp());
    let own = stack::OwnDatabase::create(&cfg.database_url, &name).await?;
    eprintln!("bench: database {} (dropped at the end)", own.name);
    cfg.database_url = own.url.clone();
    let result = run(cfg).await;
    if let Err(e) = own.drop_now().await {
        eprintln!("bench: could not drop database {name}: {e}");
    }
    result
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.out)
        .with_context(|| format!("BENCH_OUT: creating {}", cfg.out.display()))?;
    let bin_dir = match &cfg.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("executable has no directory")?
            .to_path_buf(),
    };
    let sink = PgSink::connect(&cfg.database_url, 2)
        .await
        .context("DATABASE_URL: cannot connect to PostgreSQL")?;
    // The table must exist before the first COPY or count, whichever runs first.
    sink.migrate().await.context("applying migrations")?;
    // Other work on the machine inflates every figure; measure it so the report says so.
    let idle_check = stack::MachineCpu::now();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let background = idle_check.busy_until(&stack::MachineCpu::now());
    let started = chrono::Utc::now();
    let ctx = Ctx {
        run_id: started.timestamp().to_string(),
        http: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()?,
        kafka: stack::Kafka::new(&cfg.kafka_bootstrap_servers)?,
        registry: SchemaRegistry::new(&cfg.schema_registry_url).context("SCHEMA_REGISTRY_URL")?,
        sink,
        bin_dir,
        cfg,
    };

    let mut rounds = Vec::new();
    let mut series = Vec::new();
    if !ctx.cfg.skip_throughput {
        let summary = Workload {
            shape: Shape::Summary,
            messages: ctx.cfg.messages,
        };
        let per_minute = Workload {
            shape: Shape::Series,
            messages: ctx.cfg.series_messages,
        };
        for (work, count, out) in [
            (summary, ctx.cfg.rounds, &mut rounds),
            (per_minute, ctx.cfg.series_rounds, &mut series),
        ] {
            for r in 1..=count {
                eprintln!("bench: {:?} throughput round {r}/{count}", work.shape);
                let round = throughput::round(&ctx, work, r).await?;
                eprintln!(
                    "bench:   processor {:.0} readings/s ({:.0} records/s, {:.2} s{}), COPY {:.0} readings/s",
                    round.readings_per_sec(),
                    round.records_per_sec(),
                    round.ready_to_done.as_secs_f64(),
                    if round.complete { "" } else { ", INCOMPLETE" },
                    round.copy_readings_per_sec(),
                );
                out.push(round);
            }
        }
    }
    let mut profiles = Vec::new();
    if !ctx.cfg.skip_throughput && ctx.cfg.stage_batches > 0 {
        // Batches as large as the rounds' (per-minute dailies are cut by fetch sizes and
        // the batch wait, not by a record count).
        let mean_batch = |rounds: &[throughput::Round]| {
            let m = report::median(rounds.iter().filter_map(|r| r.batch_records.mean()));
            m.is_finite().then(|| m.round() as usize)
        };
        let mut shapes = vec![(Shape::Summary, mean_batch(&rounds))];
        if ctx.cfg.series_rounds > 0 {
            shapes.push((Shape::Series, mean_batch(&series)));
        }
        for (shape, records) in shapes {
            eprintln!(
                "bench: {shape:?} stage profile, {} batches",
                ctx.cfg.stage_batches
            );
            profiles.push(stages::run(&ctx, shape, ctx.cfg.stage_batches, records).await?);
        }
    }
    let latency = if ctx.cfg.skip_latency {
        None
    } else {
        eprintln!(
            "bench: latency at {}/s for {}",
            ctx.cfg.rate,
            humantime::format_duration(ctx.cfg.latency_duration)
        );
        Some(latency::run(&ctx).await?)
    };

    let date = started.format("%Y-%m-%d %H:%M UTC").to_string();
    let section = report::section(
        &ctx.cfg,
        &date,
        background,
        &rounds,
        &series,
        &profiles,
        latency.as_ref(),
    );
    println!("\n{section}");
    if !ctx.cfg.markdown.as_os_str().is_empty() {
        report::write_section(&ctx.cfg.markdown, &section)?;
        eprintln!("bench: results written to {}", ctx.cfg.markdown.display());
    }
    Ok(())
}
