//! docker-compose.yml cannot be run on the project's machines (no Docker engine), so
//! this test keeps it consistent with what does run: the stack script's ports
//! (`scripts/stack`), the connection defaults compiled into the binaries
//! (`bridge_core::defaults`), the environment variables edge and processor actually
//! read (`env = "…"` in their `config.rs`) and the Dockerfile's build targets.
//! A second test checks the same connection defaults in the Makefile and the other
//! scripts. No services are needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bridge_core::defaults;
use serde_yaml::Value;

/// Services docker-compose.yml must define.
const SERVICES: [&str; 6] = [
    "kafka",
    "schema-registry",
    "postgres",
    "redis",
    "edge",
    "processor",
];

/// Variables the binaries read that are not clap options: the tracing/logging set-up
/// (bridge-core/src/telemetry.rs reads `LOG_FORMAT` and `OTEL_EXPORTER_OTLP_ENDPOINT`;
/// `RUST_LOG` goes through `EnvFilter`) and the standard Rust runtime ones.
const STANDARD_ENV: [&str; 3] = ["RUST_LOG", "RUST_BACKTRACE", "LOG_FORMAT"];
const STANDARD_ENV_PREFIXES: [&str; 1] = ["OTEL_"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A binary's settings: its own `config.rs` followed by every vendor's settings for that
/// side (`vendors/src/<vendor>/<side>.rs`, flattened into the binary's `Config`).
fn read_config(side: &str) -> String {
    let mut text = read(&format!("{side}/src/config.rs"));
    let vendors = root().join("vendors/src");
    let mut dirs: Vec<_> = std::fs::read_dir(&vendors)
        .unwrap_or_else(|e| panic!("{}: {e}", vendors.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    dirs.sort();
    for dir in dirs {
        if let Ok(more) = std::fs::read_to_string(dir.join(format!("{side}.rs"))) {
            text.push('\n');
            text.push_str(&more);
        }
    }
    text
}

// ------------------------------------------------------------------ small parsers

/// The parts of a URL or `host:port` string this test compares.
#[derive(Debug, Default, PartialEq, Eq)]
struct Url {
    scheme: Option<String>,
    user: Option<String>,
    password: Option<String>,
    host: String,
    port: Option<u16>,
    path: String,
}

/// Parses `scheme://user:password@host:port/path` and bare `host:port`.
fn parse_url(s: &str) -> Url {
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (Some(scheme.to_string()), rest),
        None => (None, s),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, String::new()),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((user, pass)) => (Some(user.to_string()), Some(pass.to_string())),
            None => (Some(u.to_string()), None),
        },
        None => (None, None),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().ok()),
        None => (hostport.to_string(), None),
    };
    Url {
        scheme,
        user,
        password,
        host,
        port,
        path,
    }
}

/// Shell assignments of the form `NAME=${NAME:-value}` and `NAME=value` (an optional
/// leading `export`; trailing comments dropped), with `$VAR` / `${VAR}` references
/// to earlier assignments expanded. Later assignments of a name win.
fn shell_assignments(script: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in script.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        // Only the first word: `X=1 # comment` and `X=${X:-1} # comment`.
        let value = value.split(" #").next().unwrap_or("").trim();
        let value = match value
            .strip_prefix("${")
            .and_then(|v| v.strip_suffix('}'))
            .and_then(|v| v.split_once(":-"))
        {
            Some((inner, default)) if inner == name => default.to_string(),
            _ => value.to_string(),
        };
        if value.contains(' ') || value.contains('(') || value.contains('"') {
            continue; // a command, not a plain default
        }
        let expanded = expand(&value, &vars);
        vars.insert(name.to_string(), expanded);
    }
    vars
}

/// Replaces `$NAME` and `${NAME}` by their values in `vars` (unknown names stay).
fn expand(value: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        match vars.get(name) {
            Some(v) if !name.is_empty() => out.push_str(v),
            _ => out.push_str(&rest[i..i + 1 + consumed]),
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}

/// `NAME ?= value` lines of a Makefile.
fn make_defaults(makefile: &str) -> BTreeMap<String, String> {
    makefile
        .lines()
        .filter_map(|l| l.split_once("?="))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// One `#[arg(...)]` attribute of a clap config: its `env` and string `default_value`.
#[derive(Debug)]
struct ArgAttr {
    env: Option<String>,
    default: Option<String>,
}

/// The string literal after `key = "` inside `attr`, if any.
fn string_after(attr: &str, key: &str) -> Option<String> {
    let mut from = 0;
    while let Some(i) = attr[from..].find(key) {
        let start = from + i;
        let before_ok = start == 0
            || !attr[..start]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let after = attr[start + key.len()..].trim_start();
        if before_ok && let Some(after) = after.strip_prefix('=') {
            let after = after.trim_start();
            if let Some(lit) = after.strip_prefix('"') {
                return lit.split('"').next().map(str::to_string);
            }
            return None; // e.g. `default_value = defaults::X`: not a literal
        }
        from = start + key.len();
    }
    None
}

/// Every `#[arg(...)]` attribute in a config source, by plain text scan (attributes may
/// span lines; parentheses are balanced outside string literals).
fn arg_attrs(source: &str) -> Vec<ArgAttr> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(i) = rest.find("#[arg(") {
        let body = &rest[i + "#[arg(".len()..];
        let (mut depth, mut in_str, mut end) = (1usize, false, body.len());
        for (j, c) in body.char_indices() {
            match c {
                '"' => in_str = !in_str,
                '(' if !in_str => depth += 1,
                ')' if !in_str => {
                    depth -= 1;
                    if depth == 0 {
                        end = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        let attr = &body[..end];
        out.push(ArgAttr {
            env: string_after(attr, "env"),
            default: string_after(attr, "default_value"),
        });
        rest = &body[end..];
    }
    out
}

/// Every `env = "NAME"` in a source file (the names the binary reads).
fn env_names(source: &str) -> BTreeSet<String> {
    arg_attrs(source)
        .into_iter()
        .filter_map(|a| a.env)
        .collect()
}

/// The literal default of the option read from `env`, if it has one.
fn env_default(source: &str, env: &str) -> Option<String> {
    arg_attrs(source)
        .into_iter()
        .find(|a| a.env.as_deref() == Some(env))
        .and_then(|a| a.default)
}

fn is_standard_env(name: &str) -> bool {
    STANDARD_ENV.contains(&name) || STANDARD_ENV_PREFIXES.iter().any(|p| name.starts_with(p))
}

// ------------------------------------------------------------------ compose access

fn service<'a>(compose: &'a Value, name: &str) -> Option<&'a Value> {
    compose.get("services")?.get(name)
}

/// A service's environment, whether written as a map or as a `KEY=value` list.
fn environment(svc: &Value) -> BTreeMap<String, String> {
    let scalar = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => format!("{other:?}"),
    };
    match svc.get("environment") {
        Some(Value::Mapping(m)) => m.iter().map(|(k, v)| (scalar(k), scalar(v))).collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|i| {
                let s = scalar(i);
                match s.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (s, String::new()),
                }
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `(host_port, container_port)` of each `ports:` entry (`[ip:]host:container[/proto]`,
/// or the long syntax with `published`/`target`).
fn ports(svc: &Value) -> Vec<(Option<u16>, Option<u16>)> {
    let Some(Value::Sequence(items)) = svc.get("ports") else {
        return Vec::new();
    };
    items
        .iter()
        .map(|p| match p {
            Value::Mapping(_) => {
                let num = |k: &str| match p.get(k) {
                    Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                    Some(Value::String(s)) => s.parse().ok(),
                    _ => None,
                };
                (num("published"), num("target"))
            }
            other => {
                let s = match other {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => String::new(),
                };
                let s = s.split('/').next().unwrap_or("").to_string();
                let parts: Vec<&str> = s.rsplitn(3, ':').collect();
                match parts.as_slice() {
                    [container] => (None, container.parse().ok()),
                    [container, host, ..] => (host.parse().ok(), container.parse().ok()),
                    [] => (None, None),
                }
            }
        })
        .collect()
}

// ------------------------------------------------------------------ the checks

/// What the compose file is checked against, read from the repository.
struct Expected {
    /// `scripts/stack`'s assignments, expanded.
    stack: BTreeMap<String, String>,
    /// `env = "…"` names the edge reads (its config and the vendors' edge settings).
    edge_env: BTreeSet<String>,
    /// `env = "…"` names the processor reads (its config and the vendors' processor settings).
    processor_env: BTreeSet<String>,
    /// Default port of `EDGE_LISTEN_ADDR` / `PROCESSOR_LISTEN_ADDR`.
    edge_port: Option<u16>,
    processor_port: Option<u16>,
    /// `FROM … AS <name>` stages of the Dockerfile.
    docker_stages: BTreeSet<String>,
    /// `ENV NAME=…` per Dockerfile stage.
    docker_env: BTreeMap<String, BTreeSet<String>>,
    /// Drain bounds: edge `SHUTDOWN_TIMEOUT`, processor `DRAIN_TIMEOUT` defaults.
    edge_drain: Option<std::time::Duration>,
    processor_drain: Option<std::time::Duration>,
}

impl Expected {
    fn from_repo() -> Self {
        let edge_cfg = read_config("edge");
        let processor_cfg = read_config("processor");
        let listen_port =
            |src: &str, env: &str| env_default(src, env).and_then(|d| parse_url(&d).port);
        let dockerfile = read("Dockerfile");
        let mut docker_stages = BTreeSet::new();
        let mut docker_env: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut stage = String::new();
        for line in dockerfile.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [from, .., as_, name]
                    if from.eq_ignore_ascii_case("FROM") && as_.eq_ignore_ascii_case("AS") =>
                {
                    stage = name.to_string();
                    docker_stages.insert(stage.clone());
                }
                [env, assignments @ ..] if env.eq_ignore_ascii_case("ENV") => {
                    for a in assignments {
                        if let Some((k, _)) = a.split_once('=') {
                            docker_env
                                .entry(stage.clone())
                                .or_default()
                                .insert(k.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        Expected {
            stack: shell_assignments(&read("scripts/stack")),
            edge_port: listen_port(&edge_cfg, "EDGE_LISTEN_ADDR"),
            processor_port: listen_port(&processor_cfg, "PROCESSOR_LISTEN_ADDR"),
            edge_env: env_names(&edge_cfg),
            processor_env: env_names(&processor_cfg),
            edge_drain: env_default(&edge_cfg, "SHUTDOWN_TIMEOUT")
                .and_then(|d| humantime::parse_duration(&d).ok()),
            processor_drain: env_default(&processor_cfg, "DRAIN_TIMEOUT")
                .and_then(|d| humantime::parse_duration(&d).ok()),
            docker_stages,
            docker_env,
        }
    }

    fn stack_port(&self, name: &str) -> Option<u16> {
        self.stack.get(name).and_then(|v| v.parse().ok())
    }
}

/// Every inconsistency between `compose` and the repository, as readable lines.
fn problems(compose: &Value, exp: &Expected) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |ok: bool, msg: String| {
        if !ok {
            out.push(msg);
        }
    };

    for name in SERVICES {
        check(
            service(compose, name).is_some(),
            format!("service `{name}` is missing"),
        );
    }

    // Host ports: the script's defaults, the binaries' defaults and compose agree.
    let kafka = parse_url(defaults::KAFKA_BOOTSTRAP_SERVERS);
    let registry = parse_url(defaults::SCHEMA_REGISTRY_URL);
    let database = parse_url(defaults::DATABASE_URL);
    let redis = parse_url(defaults::REDIS_URL);
    let host_ports = [
        ("kafka", "KAFKA_PORT", "KAFKA_BOOTSTRAP_SERVERS", kafka.port),
        (
            "schema-registry",
            "REGISTRY_PORT",
            "SCHEMA_REGISTRY_URL",
            registry.port,
        ),
        ("postgres", "PG_PORT", "DATABASE_URL", database.port),
        ("redis", "REDIS_PORT", "REDIS_URL", redis.port),
    ];
    for (svc, stack_var, default_name, default_port) in host_ports {
        let stack_port = exp.stack_port(stack_var);
        check(
            stack_port.is_some(),
            format!("scripts/stack has no `{stack_var}=${{{stack_var}:-<port>}}` default"),
        );
        check(
            stack_port == default_port,
            format!(
                "scripts/stack {stack_var} = {stack_port:?} but bridge_core::defaults::{default_name} has port {default_port:?}"
            ),
        );
        if let Some(s) = service(compose, svc) {
            let published: Vec<Option<u16>> = ports(s).into_iter().map(|(h, _)| h).collect();
            check(
                default_port.is_some() && published.contains(&default_port),
                format!(
                    "compose `{svc}` publishes host ports {published:?}, expected {default_port:?} (scripts/stack {stack_var}, defaults::{default_name})"
                ),
            );
        }
    }
    for (svc, env, port) in [
        ("edge", "EDGE_LISTEN_ADDR", exp.edge_port),
        ("processor", "PROCESSOR_LISTEN_ADDR", exp.processor_port),
    ] {
        check(
            port.is_some(),
            format!("no literal default for {env} in {svc}/src/config.rs"),
        );
        let Some(s) = service(compose, svc) else {
            continue;
        };
        let mapped = ports(s);
        check(
            mapped.iter().any(|(h, _)| *h == port),
            format!(
                "compose `{svc}` publishes {mapped:?}, expected host port {port:?} ({env} default)"
            ),
        );
        // The listen address given in compose must be the port that is published.
        if let Some(addr) = environment(s).get(env) {
            let inside = parse_url(addr).port;
            check(
                mapped.iter().any(|(_, c)| *c == inside && inside.is_some()),
                format!("compose `{svc}` listens on {addr} ({env}) but publishes {mapped:?}"),
            );
        }
    }

    // Environment names given to edge and processor are names the binaries read.
    for (svc, known) in [("edge", &exp.edge_env), ("processor", &exp.processor_env)] {
        check(
            !known.is_empty(),
            format!("no `env = \"…\"` found in {svc}/src/config.rs"),
        );
        let Some(s) = service(compose, svc) else {
            continue;
        };
        for name in environment(s).keys() {
            check(
                known.contains(name) || is_standard_env(name),
                format!(
                    "compose `{svc}` sets {name}, which {svc} does not read ({svc}/src/config.rs, vendors/src/*/{svc}.rs)"
                ),
            );
        }
        // The Dockerfile stage of the same name, too.
        for name in exp.docker_env.get(svc).into_iter().flatten() {
            check(
                known.contains(name) || is_standard_env(name),
                format!(
                    "Dockerfile stage `{svc}` sets ENV {name}, which {svc} does not read ({svc}/src/config.rs, vendors/src/*/{svc}.rs)"
                ),
            );
        }
        // Built from the Dockerfile target of the same name.
        let target = s
            .get("build")
            .and_then(|b| b.get("target"))
            .and_then(Value::as_str);
        check(
            target.is_some_and(|t| exp.docker_stages.contains(t)),
            format!(
                "compose `{svc}` builds target {target:?}; Dockerfile stages are {:?}",
                exp.docker_stages
            ),
        );
    }

    let container_port = |svc: &str| -> Vec<u16> {
        service(compose, svc)
            .map(|s| ports(s).into_iter().filter_map(|(_, c)| c).collect())
            .unwrap_or_default()
    };
    // Operations: every service restarts by itself (the processor exits on purpose after
    // a long outage), and edge/processor get a stop grace above their drain bound.
    for name in SERVICES {
        let Some(s) = service(compose, name) else {
            continue;
        };
        let restart = s.get("restart").and_then(Value::as_str);
        check(
            matches!(restart, Some("unless-stopped" | "always" | "on-failure")),
            format!("compose `{name}` has restart policy {restart:?}; it must restart by itself"),
        );
    }
    for (svc, bound, var) in [
        ("edge", exp.edge_drain, "SHUTDOWN_TIMEOUT"),
        ("processor", exp.processor_drain, "DRAIN_TIMEOUT"),
    ] {
        let Some(s) = service(compose, svc) else {
            continue;
        };
        // The service's own setting in compose wins over the code's default.
        let bound = environment(s)
            .get(var)
            .and_then(|v| humantime::parse_duration(v).ok())
            .or(bound);
        let grace = s
            .get("stop_grace_period")
            .and_then(Value::as_str)
            .and_then(|g| humantime::parse_duration(g).ok());
        check(
            bound.is_some() && grace.is_some_and(|g| Some(g) > bound),
            format!(
                "compose `{svc}` stop_grace_period {grace:?} must exceed {var} ({bound:?}), else Docker kills the drain"
            ),
        );
    }
    // The registry keeps schemas in the compose PostgreSQL, not in memory.
    if let Some(r) = service(compose, "schema-registry") {
        let env = environment(r);
        let url = env
            .get("APICURIO_DATASOURCE_URL")
            .cloned()
            .unwrap_or_default();
        let jdbc = parse_url(url.trim_start_matches("jdbc:"));
        check(
            env.get("APICURIO_STORAGE_KIND").map(String::as_str) == Some("sql")
                && env.get("APICURIO_STORAGE_SQL_KIND").map(String::as_str) == Some("postgresql")
                && jdbc.host == "postgres"
                && jdbc
                    .port
                    .is_some_and(|p| container_port("postgres").contains(&p))
                && jdbc.path.len() > 1
                && env.get("APICURIO_DATASOURCE_USERNAME") == database.user.as_ref()
                && env.get("APICURIO_DATASOURCE_PASSWORD") == database.password.as_ref(),
            format!(
                "compose `schema-registry` must store schemas in the postgres service (APICURIO_STORAGE_KIND=sql, APICURIO_STORAGE_SQL_KIND=postgresql, APICURIO_DATASOURCE_URL=jdbc:postgresql://postgres:<port>/<db>, its user/password); got {env:?}"
            ),
        );
        let deps = r
            .get("depends_on")
            .and_then(|d| d.get("postgres"))
            .is_some();
        check(
            deps,
            "compose `schema-registry` must depend on postgres".into(),
        );
    }

    // PostgreSQL credentials = the DATABASE_URL default's user/password/database.
    if let Some(pg) = service(compose, "postgres") {
        let env = environment(pg);
        let db_name = database.path.trim_start_matches('/').to_string();
        for (var, want) in [
            ("POSTGRES_USER", database.user.clone()),
            ("POSTGRES_PASSWORD", database.password.clone()),
            ("POSTGRES_DB", Some(db_name)),
        ] {
            check(
                env.get(var) == want.as_ref(),
                format!(
                    "compose postgres {var} = {:?}, defaults::DATABASE_URL says {want:?}",
                    env.get(var)
                ),
            );
        }
    }

    // Connection settings inside the compose network point at real services and ports.
    let kafka_advertised: Vec<Url> = service(compose, "kafka")
        .map(environment)
        .and_then(|e| e.get("KAFKA_ADVERTISED_LISTENERS").cloned())
        .unwrap_or_default()
        .split(',')
        .map(|l| parse_url(l.trim()))
        .collect();
    check(
        kafka_advertised
            .iter()
            .any(|l| l.port == kafka.port && matches!(l.host.as_str(), "localhost" | "127.0.0.1")),
        format!(
            "compose kafka advertises {kafka_advertised:?}; host clients need localhost:{:?}",
            kafka.port
        ),
    );
    for svc in ["edge", "processor"] {
        let Some(s) = service(compose, svc) else {
            continue;
        };
        let env = environment(s);
        if let Some(v) = env.get("KAFKA_BOOTSTRAP_SERVERS") {
            for server in v.split(',') {
                let u = parse_url(server.trim());
                check(
                    kafka_advertised
                        .iter()
                        .any(|l| l.host == u.host && l.port == u.port),
                    format!(
                        "compose `{svc}` KAFKA_BOOTSTRAP_SERVERS={v} is not an advertised Kafka listener"
                    ),
                );
            }
        }
        if let Some(v) = env.get("SCHEMA_REGISTRY_URL") {
            let u = parse_url(v);
            check(
                u.host == "schema-registry"
                    && u.port
                        .is_some_and(|p| container_port("schema-registry").contains(&p))
                    && u.path == registry.path,
                format!(
                    "compose `{svc}` SCHEMA_REGISTRY_URL={v}: expected schema-registry:<its container port>{}",
                    registry.path
                ),
            );
        }
        if let Some(v) = env.get("DATABASE_URL") {
            let u = parse_url(v);
            check(
                u.host == "postgres"
                    && u.port
                        .is_some_and(|p| container_port("postgres").contains(&p))
                    && (u.user.as_ref(), u.password.as_ref(), u.path.as_str())
                        == (
                            database.user.as_ref(),
                            database.password.as_ref(),
                            database.path.as_str(),
                        ),
                format!("compose `{svc}` DATABASE_URL={v} does not match the postgres service"),
            );
        }
        if let Some(v) = env.get("REDIS_URL") {
            let u = parse_url(v);
            check(
                u.host == "redis" && u.port.is_some_and(|p| container_port("redis").contains(&p)),
                format!("compose `{svc}` REDIS_URL={v} does not match the redis service"),
            );
        }
        if let Some(v) = env.get("RAW_TOPIC") {
            check(
                v == defaults::RAW_TOPIC,
                format!(
                    "compose `{svc}` RAW_TOPIC={v}, default is {}",
                    defaults::RAW_TOPIC
                ),
            );
        }
        // depends_on names existing services.
        let deps: Vec<String> = match s.get("depends_on") {
            Some(Value::Mapping(m)) => m
                .keys()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect(),
            Some(Value::Sequence(v)) => v
                .iter()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        for d in deps {
            check(
                service(compose, &d).is_some(),
                format!("compose `{svc}` depends on unknown service `{d}`"),
            );
        }
    }
    out
}

fn compose() -> Value {
    serde_yaml::from_str(&read("docker-compose.yml")).expect("docker-compose.yml is valid YAML")
}

#[test]
fn compose_matches_script_and_code() {
    let exp = Expected::from_repo();
    let found = problems(&compose(), &exp);
    assert!(
        found.is_empty(),
        "docker-compose.yml disagrees with scripts/stack / the code:\n  {}",
        found.join("\n  ")
    );
}

/// The checker itself: a changed port, an unknown variable or a wrong password in
/// compose must each be reported.
#[test]
fn checker_notices_drift() {
    let exp = Expected::from_repo();
    let base = compose();
    let mutate = |f: &dyn Fn(&mut Value)| {
        let mut c = base.clone();
        f(&mut c);
        problems(&c, &exp)
    };
    /// Sets `key` of `service` to `value`.
    fn set(c: &mut Value, service: &str, key: &str, value: Value) {
        let s = c
            .get_mut("services")
            .and_then(|s| s.get_mut(service))
            .unwrap_or_else(|| panic!("service {service}"));
        if let Value::Mapping(m) = s {
            m.insert(Value::String(key.into()), value);
        }
    }

    for (service, bad) in [
        ("kafka", "127.0.0.1:19092:9092"),
        ("schema-registry", "127.0.0.1:18081:8080"),
        ("postgres", "127.0.0.1:15432:5432"),
        ("redis", "127.0.0.1:16379:6379"),
        ("edge", "127.0.0.1:18088:8088"),
        ("processor", "127.0.0.1:18089:8089"),
    ] {
        let found = mutate(&|c| set(c, service, "ports", Value::Sequence(vec![bad.into()])));
        assert!(
            found.iter().any(|p| p.contains(service)),
            "changing {service}'s port to {bad} went unnoticed: {found:?}"
        );
    }

    let found = mutate(&|c| {
        let mut env = environment(service(c, "edge").unwrap());
        env.insert("EDGE_PORT".into(), "8088".into());
        let map = env
            .into_iter()
            .map(|(k, v)| (Value::String(k), Value::String(v)))
            .collect();
        set(c, "edge", "environment", Value::Mapping(map));
    });
    assert!(
        found.iter().any(|p| p.contains("EDGE_PORT")),
        "an unknown edge variable went unnoticed: {found:?}"
    );

    let found = mutate(&|c| {
        let mut env = environment(service(c, "postgres").unwrap());
        env.insert("POSTGRES_PASSWORD".into(), "secret".into());
        let map = env
            .into_iter()
            .map(|(k, v)| (Value::String(k), Value::String(v)))
            .collect();
        set(c, "postgres", "environment", Value::Mapping(map));
    });
    assert!(
        found.iter().any(|p| p.contains("POSTGRES_PASSWORD")),
        "a wrong PostgreSQL password went unnoticed: {found:?}"
    );

    let found = mutate(&|c| set(c, "processor", "stop_grace_period", "10s".into()));
    assert!(
        found.iter().any(|p| p.contains("DRAIN_TIMEOUT")),
        "a stop grace below the drain bound went unnoticed: {found:?}"
    );
    let found = mutate(&|c| set(c, "kafka", "restart", "no".into()));
    assert!(
        found.iter().any(|p| p.contains("restart policy")),
        "a missing restart policy went unnoticed: {found:?}"
    );
    let found = mutate(&|c| {
        let mut env = environment(service(c, "schema-registry").unwrap());
        env.remove("APICURIO_STORAGE_SQL_KIND");
        let map = env
            .into_iter()
            .map(|(k, v)| (Value::String(k), Value::String(v)))
            .collect();
        set(c, "schema-registry", "environment", Value::Mapping(map));
    });
    assert!(
        found.iter().any(|p| p.contains("store schemas")),
        "an in-memory registry went unnoticed: {found:?}"
    );

    let found = mutate(&|c| {
        if let Some(Value::Mapping(s)) = c.get_mut("services") {
            s.remove("redis");
        }
    });
    assert!(
        found.iter().any(|p| p.contains("`redis` is missing")),
        "{found:?}"
    );
}

/// The connection defaults are the same in the binaries, scripts/stack, scripts/run,
/// .ci/run, the Makefile and the demo/benchmark scripts.
#[test]
fn connection_defaults_agree_everywhere() {
    let want = [
        ("KAFKA_BOOTSTRAP_SERVERS", defaults::KAFKA_BOOTSTRAP_SERVERS),
        ("SCHEMA_REGISTRY_URL", defaults::SCHEMA_REGISTRY_URL),
        ("DATABASE_URL", defaults::DATABASE_URL),
        ("REDIS_URL", defaults::REDIS_URL),
    ];
    let mut problems = Vec::new();

    // scripts/stack builds its URLs from HOST and the ports.
    let stack = shell_assignments(&read("scripts/stack"));
    let stack_urls = [
        (
            "KAFKA_BOOTSTRAP_SERVERS",
            expand("$HOST:$KAFKA_PORT", &stack),
        ),
        (
            "SCHEMA_REGISTRY_URL",
            stack.get("REGISTRY_URL").cloned().unwrap_or_default(),
        ),
        (
            "DATABASE_URL",
            stack.get("BRIDGE_DB_URL").cloned().unwrap_or_default(),
        ),
        ("REDIS_URL", expand("redis://$HOST:$REDIS_PORT", &stack)),
    ];
    for ((name, want), (_, got)) in want.iter().zip(&stack_urls) {
        if got != want {
            problems.push(format!(
                "scripts/stack {name}: {got:?}, defaults say {want:?}"
            ));
        }
    }

    // These set all four; the demo and benchmark scripts set the ones they use.
    let mut files = vec![
        ("Makefile", make_defaults(&read("Makefile")), true),
        ("scripts/run", shell_assignments(&read("scripts/run")), true),
        (".ci/run", shell_assignments(&read(".ci/run")), true),
    ];
    for script in [
        "scripts/demo",
        "scripts/bench-edge",
        "scripts/bench-processor",
    ] {
        if root().join(script).exists() {
            files.push((script, shell_assignments(&read(script)), false));
        }
    }
    for (file, vars, all) in &files {
        for (name, want) in want {
            match vars.get(name) {
                Some(got) if got == want => {}
                None if !all => {}
                got => problems.push(format!("{file} {name}: {got:?}, defaults say {want:?}")),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn parsers() {
    let u = parse_url("postgres://bridge:pw@127.0.0.1:5432/bridge");
    assert_eq!(
        (
            u.user.as_deref(),
            u.password.as_deref(),
            u.host.as_str(),
            u.port,
            u.path.as_str()
        ),
        (
            Some("bridge"),
            Some("pw"),
            "127.0.0.1",
            Some(5432),
            "/bridge"
        )
    );
    assert_eq!(parse_url("kafka:29092").port, Some(29092));
    assert_eq!(
        parse_url("PLAINTEXT_HOST://localhost:9092").host,
        "localhost"
    );

    let vars = shell_assignments(
        "HOST=127.0.0.1\nKAFKA_PORT=${KAFKA_PORT:-9092} # comment\nURL=http://$HOST:${KAFKA_PORT}/x\n",
    );
    assert_eq!(vars["KAFKA_PORT"], "9092");
    assert_eq!(vars["URL"], "http://127.0.0.1:9092/x");

    let src = r#"
        #[arg(long, env = "A_ADDR", default_value = "0.0.0.0:1")]
        #[arg(
            long,
            env = "B",
            value_delimiter = ',',
            hide_env_values = true
        )]
        #[arg(long, env = "C", default_value = defaults::C)]
    "#;
    assert_eq!(
        env_names(src),
        ["A_ADDR", "B", "C"].map(String::from).into_iter().collect()
    );
    assert_eq!(env_default(src, "A_ADDR").as_deref(), Some("0.0.0.0:1"));
    assert_eq!(env_default(src, "C"), None);

    let svc: Value = serde_yaml::from_str(
        "ports: ['127.0.0.1:8081:8080', '9000:9000/tcp', {published: 1, target: 2}]",
    )
    .unwrap();
    assert_eq!(
        ports(&svc),
        vec![
            (Some(8081), Some(8080)),
            (Some(9000), Some(9000)),
            (Some(1), Some(2))
        ]
    );
}
