//! Benchmark settings, from the command line or the environment (each names its variable).

use std::path::PathBuf;
use std::time::Duration;

use bridge_core::defaults;
use clap::Parser;
use clap::builder::BoolishValueParser;

/// What to run and against which stack.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "bench-processor",
    about = "Processor throughput (vs a COPY ceiling) and end-to-end latency through the edge."
)]
pub struct Config {
    /// Raw envelopes pre-filled per throughput round. 20,000 daily webhooks of 10
    /// readings are 200,000 rows: long enough (several seconds) that start-up and the
    /// poll resolution are noise, short enough for three rounds in about a minute.
    #[arg(long, env = "BENCH_MESSAGES", default_value_t = 20_000)]
    pub messages: usize,

    /// Throughput rounds (processor, then COPY, alternating); medians are reported.
    #[arg(long, env = "BENCH_ROUNDS", default_value_t = 3)]
    pub rounds: usize,

    /// Per-minute dailies pre-filled per time-series round (1,440 heart-rate samples
    /// each, plus the summaries): 200 are ≈ 290,000 rows, about as long a round as the
    /// summary round's.
    #[arg(long, env = "BENCH_SERIES_MESSAGES", default_value_t = 200)]
    pub series_messages: usize,

    /// Time-series rounds, after the summary rounds; 0 skips them.
    #[arg(long, env = "BENCH_SERIES_ROUNDS", default_value_t = 3)]
    pub series_rounds: usize,

    /// Distinct users the pre-filled envelopes spread over (`user.reference_id`); each
    /// user gets consecutive days, so every envelope's rows are distinct.
    #[arg(long, env = "BENCH_USERS", default_value_t = 500)]
    pub users: usize,

    /// Partitions of each raw topic (the production default of the local stack).
    #[arg(long, env = "BENCH_PARTITIONS", default_value_t = 4)]
    pub partitions: i32,

    /// Webhooks per second in the latency run (the end-to-end target is stated at 1,000/s).
    #[arg(long, env = "BENCH_RATE", default_value_t = 1000)]
    pub rate: u32,

    /// Length of the latency run's steady load.
    #[arg(long, env = "BENCH_LATENCY_DURATION", default_value = "20s", value_parser = humantime::parse_duration)]
    pub latency_duration: Duration,

    /// How often PostgreSQL is polled for newly visible rows: the latency's resolution.
    #[arg(long, env = "BENCH_POLL", default_value = "10ms", value_parser = humantime::parse_duration)]
    pub poll: Duration,

    /// Longest wait for a throughput round, or for the latency run's last rows, before
    /// the run is reported as incomplete.
    #[arg(long, env = "BENCH_TIMEOUT", default_value = "180s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Batches of 1,000 records timed stage by stage after the throughput rounds
    /// (the processor's own stage functions, in its order); 0 skips the profile.
    #[arg(long, env = "BENCH_STAGE_BATCHES", default_value_t = 5)]
    pub stage_batches: usize,

    /// Skip the throughput rounds (`1`/`true`/`yes`).
    #[arg(long, env = "BENCH_SKIP_THROUGHPUT", value_parser = BoolishValueParser::new())]
    pub skip_throughput: bool,

    /// Skip the latency run (`1`/`true`/`yes`).
    #[arg(long, env = "BENCH_SKIP_LATENCY", value_parser = BoolishValueParser::new())]
    pub skip_latency: bool,

    /// Directory holding the release `processor` and `edge` binaries; defaults to the
    /// directory of this executable (`target/release`).
    #[arg(long, env = "BENCH_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,

    /// Where the services' stderr goes.
    #[arg(long, env = "BENCH_OUT", default_value = "target/bench")]
    pub out: PathBuf,

    /// Markdown file whose "## Processor" section receives the results; empty to skip.
    #[arg(long, env = "BENCH_MARKDOWN", default_value = "BENCHMARKS.md")]
    pub markdown: PathBuf,

    /// The command line recorded with the results.
    #[arg(long, env = "BENCH_COMMAND", default_value = "make bench-processor")]
    pub command: String,

    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS", default_value = defaults::KAFKA_BOOTSTRAP_SERVERS)]
    pub kafka_bootstrap_servers: String,

    /// Confluent-compatible schema registry base URL.
    #[arg(long, env = "SCHEMA_REGISTRY_URL", default_value = defaults::SCHEMA_REGISTRY_URL)]
    pub schema_registry_url: String,

    /// PostgreSQL connection URL (the processor's database).
    #[arg(long, env = "DATABASE_URL", default_value = defaults::DATABASE_URL, hide_env_values = true)]
    pub database_url: String,

    /// Prefix of the database the run creates on DATABASE_URL's server (as
    /// `<prefix>_<unix seconds>`) and drops at the end: the shared database's linked
    /// accounts (sealed under someone else's TOKEN_ENCRYPTION_KEY, which stops a
    /// processor's start) and rows are never in play, and every run starts from an
    /// empty table. Empty: use DATABASE_URL's own database.
    #[arg(long, env = "BENCH_DATABASE", default_value = "bridge_bench")]
    pub database: String,

    /// Redis URL (the processor's dedup filter).
    #[arg(long, env = "REDIS_URL", default_value = defaults::REDIS_URL)]
    pub redis_url: String,
}

impl Config {
    /// Checks values the run cannot work with, naming the variable.
    pub fn validate(&self) -> anyhow::Result<()> {
        // Used as an SQL identifier; the suffix adds 11 characters to PostgreSQL's 63.
        anyhow::ensure!(
            self.database.len() <= 40
                && self
                    .database
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "BENCH_DATABASE: at most 40 characters of a-z, 0-9 and _"
        );
        anyhow::ensure!(self.messages > 0, "BENCH_MESSAGES: must be at least 1");
        anyhow::ensure!(self.rounds > 0, "BENCH_ROUNDS: must be at least 1");
        anyhow::ensure!(
            self.series_messages > 0,
            "BENCH_SERIES_MESSAGES: must be at least 1"
        );
        anyhow::ensure!(self.users > 0, "BENCH_USERS: must be at least 1");
        anyhow::ensure!(self.partitions > 0, "BENCH_PARTITIONS: must be at least 1");
        anyhow::ensure!(self.rate > 0, "BENCH_RATE: must be at least 1");
        anyhow::ensure!(!self.poll.is_zero(), "BENCH_POLL: must be above zero");
        // The edge refuses signatures older than 300 s, and bodies are signed up front.
        anyhow::ensure!(
            self.latency_duration < Duration::from_secs(240),
            "BENCH_LATENCY_DURATION: must stay below 240s (webhooks are signed before the run)"
        );
        Ok(())
    }
}
