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

/// The items of the first parenthesized list in `doc`, up to a `;` (`e.g.` and `...` dropped).
fn listed(doc: &str) -> Vec<&str> {
    let open = doc
        .find('(')
        .unwrap_or_else(|| panic!("no (list) in {doc:?}"));
    let close = doc[open..].find(')').map(|i| open + i).expect("unclosed (");
    let inner = &doc[open + 1..close];
    let inner = inner.split(';').next().unwrap_or("");
    let items: Vec<&str> = inner
        .split(',')
        .map(|t| t.trim().trim_start_matches("e.g.").trim())
        .map(|t| t.trim_start_matches("...").trim())
        .filter(|t| !t.is_empty() && *t != "...")
        .collect();
    assert!(!items.is_empty(), "empty (list) in {doc:?}");
    items
}

/// The Avro value of the readings changelog documents the catalog: the UCUM, LOINC and
/// activity fields exist and are optional (BACKWARD compatible), and every unit, UCUM code,
/// LOINC code and activity their docs name is the catalog's, so the schema, the README and
/// the code cannot drift apart.
#[test]
fn reading_schema_documents_the_catalog() {
    let path = repo_root().join("schemas/reading.v1.avsc");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text).expect("reading.v1.avsc is JSON");
    let fields = schema["fields"].as_array().expect("fields");
    let field = |name: &str| {
        fields
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("reading.v1.avsc has no field {name}"))
    };
    let doc = |name: &str| {
        field(name)["doc"]
            .as_str()
            .unwrap_or_else(|| panic!("field {name} has no doc"))
    };
    for name in ["unit_ucum", "loinc", "activity"] {
        let f = field(name);
        assert_eq!(f["type"], serde_json::json!(["null", "string"]), "{name}");
        assert_eq!(
            f.get("default"),
            Some(&Value::Null),
            "{name} needs a null default"
        );
    }

    let units: BTreeSet<&str> = CATALOG.iter().map(|s| s.unit).collect();
    let unit_doc = doc("unit");
    for u in listed(unit_doc) {
        assert!(
            units.contains(u),
            "unit doc names {u:?}, not a catalog unit"
        );
    }
    let unnamed: Vec<&&str> = units
        .iter()
        .filter(|u| !listed(unit_doc).contains(u))
        .collect();
    if !unnamed.is_empty() {
        // The doc may defer to the README, whose generated catalog names every unit.
        assert!(
            unit_doc.contains("README"),
            "unit doc names neither {unnamed:?} nor the README's catalog"
        );
        let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
        let (_, section, _) = split(&readme);
        for u in unnamed {
            assert!(
                section.contains(&format!("| {u} |")),
                "README catalog lacks unit {u}"
            );
        }
    }

    for item in listed(doc("unit_ucum")) {
        match item.split_once(" for ") {
            Some((code, unit)) => assert!(
                CATALOG.iter().any(|s| s.ucum == code && s.unit == unit),
                "unit_ucum doc: {code:?} is not the UCUM code of {unit:?}"
            ),
            None => assert!(
                CATALOG.iter().any(|s| s.ucum == item),
                "unit_ucum doc names {item:?}, not a catalog UCUM code"
            ),
        }
    }

    let loinc_doc = doc("loinc");
    let codes: Vec<&str> = loinc_doc
        .split(|c: char| !(c.is_ascii_digit() || c == '-'))
        .filter(|w| w.len() > 2 && w.contains('-') && w.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert!(!codes.is_empty(), "loinc doc names no code: {loinc_doc:?}");
    for code in codes {
        assert!(
            CATALOG.iter().any(|s| s.loinc == Some(code)),
            "loinc doc names {code}, which no catalog metric has"
        );
    }
    for spec in CATALOG {
        if loinc_doc.contains(&format!("{} has none", spec.name)) {
            assert_eq!(spec.loinc, None, "loinc doc: {} has none", spec.name);
        }
    }

    let activity_doc = doc("activity");
    for code in listed(activity_doc) {
        assert!(
            code.parse::<Activity>().is_ok(),
            "activity doc names {code:?}, not an activity code"
        );
    }
    for spec in CATALOG.iter().filter(|s| s.kind == Kind::Session) {
        assert!(
            activity_doc.contains(spec.name),
            "activity doc does not name the session metric {}",
            spec.name
        );
    }
}
