//! The README's metric catalog is generated, never hand-kept.
//!
//! The section between `<!-- catalog:begin -->` and `<!-- catalog:end -->` is rendered from
//! `bridge_core::catalog` (every metric's unit, UCUM code, kind, plausible range, LOINC code
//! and its notes; the session vocabulary; the sleep-stage codes) and from the vendor
//! fixtures: "fed by" lists the vendors whose fixture expectations (checked against the
//! normalizers by the fixture harness) contain a reading of the metric. The test fails when
//! the README differs; `make catalog` (`UPDATE_CATALOG=1`) rewrites the section in place.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use bridge_core::catalog::{Activity, CATALOG, Kind, Metric, SleepStage};
use serde_json::Value;

const BEGIN: &str = "<!-- catalog:begin -->";
const END: &str = "<!-- catalog:end -->";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What the vendors' fixtures produce: metric -> vendors, activity -> vendors, stage -> vendors.
#[derive(Default)]
struct FedBy {
    metrics: BTreeMap<String, BTreeSet<String>>,
    activities: BTreeMap<String, BTreeSet<String>>,
    stages: BTreeMap<u8, BTreeSet<String>>,
}

fn fed_by() -> FedBy {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut fed = FedBy::default();
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        !dirs.is_empty(),
        "no fixture directories in {}",
        root.display()
    );
    for dir in dirs {
        let vendor = dir.file_name().unwrap().to_string_lossy().into_owned();
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if !path.to_string_lossy().ends_with(".expected.json") {
                continue;
            }
            let text = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let doc: Value =
                serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let readings = match &doc {
                Value::Array(items) => items.as_slice(),
                _ => doc["readings"].as_array().map_or(&[][..], Vec::as_slice),
            };
            for r in readings {
                let metric = r["metric"].as_str().unwrap_or_else(|| {
                    panic!("{}: a reading without a metric name", path.display())
                });
                fed.metrics
                    .entry(metric.to_owned())
                    .or_default()
                    .insert(vendor.clone());
                if let Some(a) = r["activity"].as_str() {
                    fed.activities
                        .entry(a.to_owned())
                        .or_default()
                        .insert(vendor.clone());
                }
                if metric == Metric::SleepStage.as_str() {
                    let code = r["value"].as_f64().unwrap_or(f64::NAN);
                    let stage = SleepStage::ALL
                        .into_iter()
                        .find(|s| s.code() == code)
                        .unwrap_or_else(|| {
                            panic!("{}: sleep_stage value {code} is no stage", path.display())
                        });
                    fed.stages
                        .entry(stage as u8)
                        .or_default()
                        .insert(vendor.clone());
                }
            }
        }
    }
    for name in fed.metrics.keys() {
        assert!(
            name.parse::<Metric>().is_ok(),
            "fixtures expect {name:?}, which is not in the catalog"
        );
    }
    for name in fed.activities.keys() {
        assert!(
            name.parse::<Activity>().is_ok(),
            "fixtures expect activity {name:?}, which is not in the vocabulary"
        );
    }
    fed
}

/// `1234567` as `1,234,567`; fractions as written.
fn number(x: f64) -> String {
    if x.fract() != 0.0 {
        return format!("{x}");
    }
    let digits = format!("{}", x.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 { format!("−{out}") } else { out }
}

fn range(min: f64, max: f64, unit: &str) -> String {
    let max_text = if min < 0.0 {
        format!("+{}", number(max))
    } else {
        number(max)
    };
    let mut s = format!("{}–{max_text}", number(min));
    if unit == "s" && max >= 3600.0 {
        let hours = max / 3600.0;
        let _ = if hours % 24.0 == 0.0 && hours > 48.0 {
            write!(s, " ({} d)", number(hours / 24.0))
        } else {
            write!(s, " ({} h)", number(hours))
        };
    }
    s
}

fn kind_meaning(kind: Kind) -> &'static str {
    match kind {
        Kind::Instant => {
            "a level (a sample, or the statistic the metric names over the interval); never summed"
        }
        Kind::Interval => {
            "an amount accumulated over the interval; summable over non-overlapping intervals of one source"
        }
        Kind::Session => {
            "one row per workout or sleep: the interval is the session, the value its length in seconds, `activity` its type; its other readings share its `source_record_id`"
        }
        Kind::Score => "the vendor's own unitless score, not comparable across vendors",
        Kind::State => "a coded state held over the interval (the value is a code, not a quantity)",
    }
}

fn vendors(set: Option<&BTreeSet<String>>) -> String {
    match set {
        Some(s) if !s.is_empty() => s.iter().cloned().collect::<Vec<_>>().join(", "),
        _ => "—".into(),
    }
}

/// The generated section, markers excluded.
fn render() -> String {
    let fed = fed_by();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "<!-- Generated by `make catalog` from bridge-core/src/catalog.rs and the fixture \
         expectations in vendors/tests/fixtures; vendors/tests/catalog_doc.rs fails when this \
         differs. Do not edit by hand. -->\n"
    );
    let _ = writeln!(
        md,
        "**The metric catalog** (`bridge-core/src/catalog.rs`, {} metrics). `readings.unit` \
         holds the unit label; UCUM is the same unit as a UCUM code. A value outside the \
         plausible range (inclusive, in the unit) is not stored. *Fed by*: the vendors with a \
         fixture that yields the metric (`vendors/tests/fixtures`). Kinds:\n",
        CATALOG.len()
    );
    for kind in [
        Kind::Instant,
        Kind::Interval,
        Kind::Session,
        Kind::Score,
        Kind::State,
    ] {
        let _ = writeln!(md, "- *{}*: {}.", kind.as_str(), kind_meaning(kind));
    }
    let _ = writeln!(
        md,
        "\n| metric | unit | UCUM | kind | plausible range | LOINC | fed by | what |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for spec in CATALOG {
        let mut loinc = spec.loinc.unwrap_or("—").to_owned();
        if spec.metric.loinc_note().is_some() {
            loinc.push_str(" †");
        }
        let _ = writeln!(
            md,
            "| `{}` | {} | `{}` | {} | {} | {} | {} | {} |",
            spec.name,
            spec.unit,
            spec.ucum,
            spec.kind.as_str(),
            range(spec.min, spec.max, spec.unit),
            loinc,
            vendors(fed.metrics.get(spec.name)),
            // Rustdoc links (`[`SleepStage`]`) read as plain code in Markdown.
            spec.description
                .trim()
                .replace("[`", "`")
                .replace("`]", "`")
                .replace('|', "\\|"),
        );
    }
    let _ = writeln!(md, "\n† LOINC notes:\n");
    for spec in CATALOG {
        if let Some(note) = spec.metric.loinc_note() {
            let _ = writeln!(md, "- `{}`: {}.", spec.name, note);
        }
    }
    let _ = writeln!(
        md,
        "\n**Session types** (`readings.activity`, `Activity`): Apple HealthKit's \
         `HKWorkoutActivityType` names in snake_case, plus `sleep` and `other` (a sport the \
         vendor names that has no code here; the vendor's name is counted as unmapped). Fed by, \
         in parentheses:\n"
    );
    let codes: Vec<String> = Activity::ALL
        .into_iter()
        .map(|a| match fed.activities.get(a.as_str()) {
            Some(v) => format!("`{}` ({})", a.as_str(), vendors(Some(v))),
            None => format!("`{}`", a.as_str()),
        })
        .collect();
    let _ = writeln!(md, "{}.", codes.join(", "));
    let _ = writeln!(
        md,
        "\n**Sleep stages** (`sleep_stage` readings, value = the code; codes start at 1 so no \
         stage is mistaken for an absent value):\n"
    );
    let _ = writeln!(md, "| code | stage | fed by |");
    let _ = writeln!(md, "|---|---|---|");
    for stage in SleepStage::ALL {
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            stage.code(),
            stage.as_str(),
            vendors(fed.stages.get(&(stage as u8)))
        );
    }
    md
}

/// The README split around the generated section: (before, section, after).
fn split(readme: &str) -> (&str, &str, &str) {
    let begin = readme
        .find(BEGIN)
        .unwrap_or_else(|| panic!("README.md has no {BEGIN} marker"));
    let end = readme
        .find(END)
        .unwrap_or_else(|| panic!("README.md has no {END} marker"));
    assert!(begin < end, "README.md: {END} before {BEGIN}");
    assert_eq!(readme.matches(BEGIN).count(), 1, "two {BEGIN} markers");
    let inner = begin + BEGIN.len();
    (&readme[..inner], &readme[inner..end], &readme[end..])
}

#[test]
fn readme_catalog_section_is_generated_from_the_catalog() {
    let path = repo_root().join("README.md");
    let readme = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (before, current, after) = split(&readme);
    let wanted = format!("\n{}", render());
    if current == wanted {
        return;
    }
    if std::env::var_os("UPDATE_CATALOG").is_some_and(|v| v == "1") {
        fs::write(&path, format!("{before}{wanted}{after}"))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        println!("rewrote the catalog section of {}", path.display());
        return;
    }
    let first_diff = current
        .lines()
        .zip(wanted.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(current.lines().count().min(wanted.lines().count()));
    panic!(
        "README.md's catalog section is out of date: run `make catalog` to regenerate it.\n\
         first differing line {}:\n  README: {:?}\n  wanted: {:?}",
        first_diff + 1,
        current.lines().nth(first_diff).unwrap_or(""),
        wanted.lines().nth(first_diff).unwrap_or(""),
    );
}

#[test]
fn rendering_is_deterministic_and_lists_every_metric_once() {
    let a = render();
    assert_eq!(a, render());
    for spec in CATALOG {
        let row = format!("| `{}` |", spec.name);
        assert_eq!(a.matches(&row).count(), 1, "{}", spec.name);
    }
    assert_eq!(number(172_800.0), "172,800");
    assert_eq!(number(-10.0), "−10");
    assert_eq!(range(0.0, 172_800.0, "s"), "0–172,800 (48 h)");
    assert_eq!(range(-10.0, 10.0, "degC"), "−10–+10");
}
