//! The local stack as the benchmark uses it: the project's release binaries as child
//! processes, throw-away topics, Prometheus scrapes, CPU counters, and clean-up of
//! everything a run wrote.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bridge_core::defaults;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sqlx::PgPool;

/// Rows of users whose id starts with a prefix.
const COUNT_ROWS: &str = include_str!("sql/count_rows.sql");
/// Deletes the rows of users whose id starts with a prefix.
const DELETE_ROWS: &str = include_str!("sql/delete_rows.sql");

/// Bound on admin and offset calls to the broker.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// A project binary running as a child process; killed on drop if not stopped.
pub struct Service {
    name: &'static str,
    child: Child,
    /// Base URL of its HTTP listener (probes, metrics, webhooks).
    pub url: String,
}

impl Service {
    /// Starts `bin_dir/name` on a free loopback port, passed in `port_var`, with `env`
    /// added to this process's environment. Its stderr goes to `log`.
    pub fn start(
        bin_dir: &Path,
        name: &'static str,
        port_var: &str,
        env: &[(&str, String)],
        log: &Path,
    ) -> anyhow::Result<Service> {
        let port = bridge_tests::free_port();
        let log = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let path = bin_dir.join(name);
        let mut cmd = Command::new(&path);
        cmd.env("RUST_LOG", "warn")
            .env(port_var, format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} (build it first)", path.display()))?;
        Ok(Service {
            name,
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    /// Operating-system process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `path` every 10 ms until it answers 200; returns when it first did.
    pub async fn wait_ok(
        &mut self,
        client: &reqwest::Client,
        path: &str,
        timeout: Duration,
    ) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + timeout;
        let url = format!("{}{path}", self.url);
        loop {
            if let Ok(r) = client.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(Instant::now());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited ({status}) before {path} answered", self.name);
            }
            if Instant::now() > deadline {
                bail!("{} {path} did not answer 200 within {timeout:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Scrapes `/metrics`.
    pub async fn metrics(&self, client: &reqwest::Client) -> anyhow::Result<Scrape> {
        let text = client
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("scraping {} metrics", self.name))?
            .text()
            .await?;
        Ok(Scrape::parse(&text))
    }

    /// SIGTERM (the service's graceful drain and final commit), then waits up to `timeout`.
    pub async fn stop(&mut self, timeout: Duration) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .context("running kill")?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.child.kill()?;
        bail!("{} did not stop within {timeout:?}; killed", self.name)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One Prometheus text scrape.
#[derive(Debug, Default, Clone)]
pub struct Scrape {
    samples: Vec<(String, f64)>,
}

impl Scrape {
    fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_string(), value.parse().ok()?))
            })
            .collect();
        Scrape { samples }
    }

    /// Sum over every series of metric `name` (all label sets); 0 when absent.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(series, _)| series.split('{').next() == Some(name))
            .map(|(_, v)| v)
            .sum()
    }

    /// Histogram buckets of `name` as (upper bound, cumulative count), ascending.
    pub fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let prefix = format!("{name}_bucket{{");
        let mut out: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter_map(|(series, v)| {
                let labels = series.strip_prefix(&prefix)?;
                let le = labels.split("le=\"").nth(1)?.split('"').next()?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, *v))
            })
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }

    /// Upper bound of the bucket holding quantile `q` of histogram `name` (coarse:
    /// the buckets are powers of two).
    pub fn quantile_bound(&self, name: &str, q: f64) -> Option<f64> {
        let buckets = self.buckets(name);
        let total = buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        buckets
            .iter()
            .find(|(_, c)| *c >= q * total)
            .map(|(le, _)| *le)
    }
}

/// The same histogram's growth between two scrapes of one process.
#[derive(Debug, Default, Clone, Copy)]
pub struct HistogramDelta {
    /// Observations.
    pub count: f64,
    /// Sum of observed values.
    pub sum: f64,
}

impl HistogramDelta {
    /// `after − before` for histogram `name`.
    pub fn between(before: &Scrape, after: &Scrape, name: &str) -> Self {
        let field = |s: &Scrape, f: &str| s.sum(&format!("{name}_{f}"));
        HistogramDelta {
            count: field(after, "count") - field(before, "count"),
            sum: field(after, "sum") - field(before, "sum"),
        }
    }

    /// Mean observed value, when there were observations.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }
}

/// Kafka administration for throw-away benchmark topics.
pub struct Kafka {
    bootstrap: String,
    admin: AdminClient<DefaultClientContext>,
}

impl Kafka {
    /// An admin client for `bootstrap`.
    pub fn new(bootstrap: &str) -> anyhow::Result<Self> {
        let admin = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .context("KAFKA_BOOTSTRAP_SERVERS: cannot create admin client")?;
        Ok(Kafka {
            bootstrap: bootstrap.to_string(),
            admin,
        })
    }

    /// Creates each `(topic, partitions)`, replication 1 (the local stack has one broker).
    pub async fn create(&self, topics: &[(&str, i32)]) -> anyhow::Result<()> {
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1)))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(KAFKA_TIMEOUT));
        for r in self.admin.create_topics(&new, &opts).await? {
            r.map_err(|(topic, code)| anyhow::anyhow!("creating topic {topic}: {code}"))?;
        }
        Ok(())
    }

    /// Deletes `topics`, best effort (a benchmark that cleans up must not fail on it).
    pub async fn delete(&self, topics: &[String]) {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let opts = AdminOptions::new().operation_timeout(Some(KAFKA_TIMEOUT));
        match self.admin.delete_topics(&names, &opts).await {
            Ok(results) => {
                for r in results {
                    if let Err((topic, code)) = r {
                        eprintln!("bench: could not delete topic {topic}: {code}");
                    }
                }
            }
            Err(e) => eprintln!("bench: could not delete topics: {e}"),
        }
    }

    /// Records of `topic` not yet committed by `group`: Σ (high watermark − committed),
    /// a partition without a commit counting from its low watermark.
    pub async fn committed_lag(
        &self,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> anyhow::Result<i64> {
        let (bootstrap, group, topic) =
            (self.bootstrap.clone(), group.to_string(), topic.to_string());
        tokio::task::spawn_blocking(move || {
            // Not subscribed, so it never joins the group: it only reads its offsets.
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", &group)
                .set("enable.auto.commit", "false")
                .create()?;
            let mut tpl = TopicPartitionList::new();
            for p in 0..partitions {
                tpl.add_partition(&topic, p);
            }
            let committed = c.committed_offsets(tpl, KAFKA_TIMEOUT)?;
            let mut lag = 0;
            for p in 0..partitions {
                let (low, high) = c.fetch_watermarks(&topic, p, KAFKA_TIMEOUT)?;
                let at = match committed.find_partition(&topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => low,
                };
                lag += high - at;
            }
            Ok(lag)
        })
        .await?
    }
}

/// Removes the registry subjects of `topics` (soft, then permanent delete, as the
/// Confluent API requires), best effort: a topic without a subject answers 404.
pub async fn delete_subjects(http: &reqwest::Client, registry_url: &str, topics: &[String]) {
    let base = registry_url.trim_end_matches('/');
    for topic in topics {
        let url = format!("{base}/subjects/{}", defaults::value_subject(topic));
        for url in [url.clone(), format!("{url}?permanent=true")] {
            let _ = http.delete(&url).send().await;
        }
    }
}

/// A `LIKE` pattern matching every string that starts with `prefix`.
pub fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Rows in `readings` whose user id starts with `prefix`.
pub async fn count_rows(pool: &PgPool, prefix: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(COUNT_ROWS)
        .bind(like_prefix(prefix))
        .fetch_one(pool)
        .await?)
}

/// Removes the rows a run inserted (every user id of a run shares a prefix), then
/// vacuums so the next round starts from the same table and index state.
pub async fn delete_rows(pool: &PgPool, prefixes: &[&str]) -> anyhow::Result<u64> {
    let mut deleted = 0;
    for prefix in prefixes {
        deleted += sqlx::query(DELETE_ROWS)
            .bind(like_prefix(prefix))
            .execute(pool)
            .await?
            .rows_affected();
    }
    // Both tables: the processor writes a version row per document, and dead ones left
    // by earlier rounds would slow later rounds' look-ups.
    sqlx::query("VACUUM (ANALYZE) readings, reading_documents")
        .execute(pool)
        .await?;
    Ok(deleted)
}

/// Removes the processor's delivery marks for the run's envelopes, best effort.
pub async fn delete_dedup_keys(redis_url: &str, keys: &[String]) {
    let result: anyhow::Result<()> = async {
        let client = redis::Client::open(redis_url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        for chunk in keys.chunks(1000) {
            redis::cmd("UNLINK")
                .arg(chunk)
                .query_async::<()>(&mut conn)
                .await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        eprintln!("bench: could not delete dedup keys: {e}");
    }
}

/// CPU seconds (user + system) a process has used; Linux `/proc`, USER_HZ = 100.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Machine-wide CPU ticks from `/proc/stat`: (busy, total).
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineCpu {
    busy: u64,
    total: u64,
}

impl MachineCpu {
    /// Current counters (zeros when `/proc/stat` is unreadable).
    pub fn now() -> Self {
        let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
            return MachineCpu::default();
        };
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|t| t.parse().ok())
            .collect();
        let total: u64 = ticks.iter().take(8).sum();
        // idle and iowait are the 4th and 5th counters.
        let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
        MachineCpu {
            busy: total.saturating_sub(idle),
            total,
        }
    }

    /// Fraction of all cores busy between `self` and `later`.
    pub fn busy_until(&self, later: &MachineCpu) -> f64 {
        let total = later.total.saturating_sub(self.total);
        if total == 0 {
            return 0.0;
        }
        later.busy.saturating_sub(self.busy) as f64 / total as f64
    }
}

/// A database of the run's own on the PostgreSQL server of DATABASE_URL.
pub struct OwnDatabase {
    /// The URL to give the processor and the benchmark's own sink.
    pub url: String,
    /// Its name.
    pub name: String,
    server_url: String,
}

impl OwnDatabase {
    /// Creates the empty database `name` on `server_url`'s server (the processor applies
    /// the migrations).
    pub async fn create(server_url: &str, name: &str) -> anyhow::Result<OwnDatabase> {
        let mut url = reqwest::Url::parse(server_url).context("DATABASE_URL: not a URL")?;
        url.set_path(&format!("/{name}"));
        let admin = PgPool::connect(server_url)
            .await
            .context("DATABASE_URL: cannot connect to PostgreSQL")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
            .execute(&admin)
            .await
            .with_context(|| format!("BENCH_DATABASE: creating database {name}"))?;
        admin.close().await;
        Ok(OwnDatabase {
            url: url.to_string(),
            name: name.to_string(),
            server_url: server_url.to_string(),
        })
    }

    /// Drops it, closing whatever connection is left (a killed service's).
    pub async fn drop_now(self) -> anyhow::Result<()> {
        let admin = PgPool::connect(&self.server_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "drop database if exists {} with (force)",
            self.name
        )))
        .execute(&admin)
        .await?;
        admin.close().await;
        Ok(())
    }
}
