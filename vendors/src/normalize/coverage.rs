//! Fixture coverage: which numeric fields of the vendors' payloads become readings.
//!
//! Nothing here is a hand-kept claim. For every fixture input
//! `tests/fixtures/<vendor>/<case>.json` that normalizes without error, every numeric leaf (a
//! JSON number, or a string holding only a decimal number, as Google Health writes int64s)
//! is perturbed on its own (`x * 1.37 + 0.5`, integers kept integers) and the payload is
//! normalized again through the fixture harness's own dispatch. If the readings change, the
//! leaf is **read**; if they do not, it is **dropped**; if the payload is now refused, it is
//! **rejected** (consumed by a check, not counted as read). Error cases and deletions
//! (tombstones, no readings: nothing to read) are not measured. Long sample arrays are
//! sampled; [`group_fates`] says how.
//!
//! The only hand-written input is what is *not* a health value: `<vendor>/coverage_ignore.txt`
//! lists JSON-path patterns (ids, epoch timestamps, offsets, versions, codes), one per line,
//! each with a `# reason`. A pattern that matches no leaf fails the test, so the lists cannot
//! rot into blanket exclusions. Paths are keys joined by `.`, array indices written `[]`;
//! an element of an array of named series (an object with string `name` and `units`, Health
//! Auto Export's metrics) is written `[name=<name>]`, so one metric's samples are one pattern;
//! a key that starts with a digit (a time-keyed map) is written `{}`; `*` in a pattern matches
//! any run of characters.
//!
//! The ratchet: `tests/coverage_floors.txt` holds, per vendor, the floor of the leaf ratio
//! (read / health leaves) and of the pattern ratio (path patterns whose every leaf is read /
//! all health patterns; sample arrays make the leaf ratio easy to inflate, the pattern ratio
//! is not). The test fails when a vendor falls below either, or has no floor. To raise a
//! floor after mapping more fields: run `make coverage`, and write the measured ratios
//! rounded down to two decimals. A floor is lowered only when a new fixture brings fields
//! the code does not map yet (they are listed in the report: say so in the commit), never
//! because a change stopped reading a field; a field that is really not a health value goes
//! in the ignore list with its reason instead.
//!
//! The report is printed and written to `target/coverage.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::fixture_tests::{Args, VENDOR_DIRS, fixtures_root, read_optional, run};
use bridge_core::model::{Normalized, Reading};

/// Per fixture directory: the path patterns of numeric leaves that carry no health value.
pub(super) const IGNORE_FILE: &str = "coverage_ignore.txt";

/// Beside the fixtures directory: `<vendor> <leaf floor> <pattern floor>` per line.
const FLOORS_FILE: &str = "coverage_floors.txt";

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
    Named(usize, String),
}

/// One leaf's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Read,
    Dropped,
    Rejected,
}

#[derive(Debug, Default)]
struct PatternStat {
    read: usize,
    dropped: usize,
    rejected: usize,
    /// Cases where a leaf of the pattern was not read.
    missed_in: BTreeSet<String>,
    /// Some leaves' fate was extrapolated from a sample ([`group_fates`]).
    extrapolated: bool,
}

impl PatternStat {
    fn fully_read(&self) -> bool {
        self.dropped == 0 && self.rejected == 0
    }
}

#[derive(Debug, Default)]
struct VendorReport {
    cases: Vec<String>,
    error_cases: Vec<String>,
    deletion_cases: Vec<String>,
    ignored_leaves: usize,
    read: usize,
    dropped: usize,
    rejected: usize,
    patterns: BTreeMap<String, PatternStat>,
}

impl VendorReport {
    fn health_leaves(&self) -> usize {
        self.read + self.dropped + self.rejected
    }

    fn leaf_ratio(&self) -> f64 {
        ratio(self.read, self.health_leaves())
    }

    fn patterns_read(&self) -> usize {
        self.patterns.values().filter(|p| p.fully_read()).count()
    }

    fn pattern_ratio(&self) -> f64 {
        ratio(self.patterns_read(), self.patterns.len())
    }
}

/// An empty vendor (no health leaves) reads everything it has: 1.0, so it never blocks.
fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        1.0
    } else {
        part as f64 / whole as f64
    }
}

/// One ignore-list line: the pattern and why it is not a health value.
#[derive(Debug)]
struct Ignore {
    pattern: String,
    used: bool,
}

fn load_ignores(dir: &Path) -> Result<Vec<Ignore>, String> {
    let path = dir.join(IGNORE_FILE);
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (pattern, reason) = line.split_once('#').unwrap_or((line, ""));
        if reason.trim().is_empty() {
            return Err(format!(
                "{}:{}: `{}` has no `# reason`",
                path.display(),
                n + 1,
                pattern.trim()
            ));
        }
        out.push(Ignore {
            pattern: pattern.trim().to_owned(),
            used: false,
        });
    }
    Ok(out)
}

/// `*` matches any run of characters (dots and brackets included); the rest is literal.
fn glob(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// A string that is only a decimal number (`"112"`, `"-3.5"`), not `"3600s"` or a date.
fn numeric_string(s: &str) -> bool {
    let t = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match t.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (t, None),
    };
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    digits(int) && frac.is_none_or(digits)
}

fn collect_leaves(v: &Value, steps: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                steps.push(Step::Key(k.clone()));
                collect_leaves(x, steps, out);
                steps.pop();
            }
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                let named = match (x.get("name"), x.get("units")) {
                    (Some(Value::String(name)), Some(Value::String(_))) => Some(name.clone()),
                    _ => None,
                };
                steps.push(match named {
                    Some(name) => Step::Named(i, name),
                    None => Step::Index(i),
                });
                collect_leaves(x, steps, out);
                steps.pop();
            }
        }
        Value::Number(_) => out.push(steps.clone()),
        Value::String(s) if numeric_string(s) => out.push(steps.clone()),
        _ => {}
    }
}

fn pattern_of(steps: &[Step]) -> String {
    let mut s = String::new();
    for step in steps {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                // A key that starts with a digit is data (Polar's `"23:40": 2` hypnogram),
                // not a field name: one pattern for the whole map, like an array.
                if k.starts_with(|c: char| c.is_ascii_digit()) {
                    s.push_str("{}");
                } else {
                    s.push_str(k);
                }
            }
            Step::Index(_) => s.push_str("[]"),
            Step::Named(_, name) => {
                let _ = write!(s, "[name={name}]");
            }
        }
    }
    s
}

fn leaf_mut<'a>(v: &'a mut Value, steps: &[Step]) -> &'a mut Value {
    steps.iter().fold(v, |cur, step| match step {
        Step::Key(k) => &mut cur[k.as_str()],
        Step::Index(i) | Step::Named(i, _) => &mut cur[*i],
    })
}

fn bump_int(i: i64) -> i64 {
    let j = (i as f64 * 1.37 + 0.5).round() as i64;
    if j == i { i + 1 } else { j }
}

fn bump_float(x: f64) -> f64 {
    let y = x * 1.37 + 0.5;
    if y == x { x + 1.0 } else { y }
}

/// The leaf changed, in the vendor's own representation (integer stays integer, a numeric
/// string stays a string).
fn perturb(v: &Value) -> Value {
    match v {
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(bump_int(i)),
            (None, Some(u), _) => Value::from(u / 2),
            (_, _, Some(x)) => Value::from(bump_float(x)),
            _ => unreachable!("a JSON number is an i64, a u64 or an f64"),
        },
        Value::String(s) => match s.parse::<i64>() {
            Ok(i) => Value::String(bump_int(i).to_string()),
            Err(_) => {
                let x: f64 = s.parse().expect("numeric_string");
                Value::String(bump_float(x).to_string())
            }
        },
        other => unreachable!("not a numeric leaf: {other:?}"),
    }
}

/// The readings in a canonical order, so two runs compare as sets: sorting on the fields
/// is far cheaper than formatting thousands of sample readings per perturbed leaf.
fn fingerprint(n: &Normalized) -> Vec<Reading> {
    let mut rows = n.readings.clone();
    rows.sort_by(|a, b| {
        (
            a.metric,
            a.start_time,
            a.end_time,
            &a.source_record_id,
            &a.source,
        )
            .cmp(&(
                b.metric,
                b.start_time,
                b.end_time,
                &b.source_record_id,
                &b.source,
            ))
            .then(a.value.total_cmp(&b.value))
            .then_with(|| {
                (&a.user_id, &a.vendor, a.ordering).cmp(&(&b.user_id, &b.vendor, b.ordering))
            })
            .then_with(|| a.activity.cmp(&b.activity))
    });
    rows
}

struct Case {
    input: Vec<u8>,
    args: Args,
    headers: HashMap<String, String>,
}

impl Case {
    fn load(dir: &Path, case: &str) -> Result<Case, String> {
        let path = dir.join(format!("{case}.json"));
        Ok(Case {
            input: fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?,
            args: read_optional(&dir.join(format!("{case}.args.json")))?,
            headers: read_optional(&dir.join(format!("{case}.headers.json")))?,
        })
    }

    fn normalize(&self, vendor: &str, body: &[u8]) -> Result<Result<Normalized, String>, String> {
        Ok(run(vendor, body, self.args.clone(), self.headers.clone())?.map_err(|(r, _)| r.into()))
    }
}

fn case_names(dir: &Path) -> Result<Vec<String>, String> {
    let companion = [".expected.json", ".headers.json", ".args.json"];
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|n| !companion.iter().any(|c| n.ends_with(c)))
        .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

/// Leaves of one pattern in one case tested one by one, up to this many; see [`group_fates`].
const SAMPLE: usize = 64;

struct GroupFates {
    counts: Vec<(Fate, usize)>,
    extrapolated: bool,
}

/// What perturbing these leaves together does to the readings. The document is restored.
fn try_leaves(
    case: &Case,
    vendor: &str,
    doc: &mut Value,
    baseline: &[Reading],
    leaves: &[&Vec<Step>],
) -> Result<Fate, String> {
    let old: Vec<Value> = leaves
        .iter()
        .map(|steps| {
            let leaf = leaf_mut(doc, steps);
            let new = perturb(leaf);
            std::mem::replace(leaf, new)
        })
        .collect();
    let body = serde_json::to_vec(doc).map_err(|e| e.to_string());
    for (steps, value) in leaves.iter().zip(old) {
        *leaf_mut(doc, steps) = value;
    }
    Ok(match case.normalize(vendor, &body?) {
        Ok(Ok(n)) if fingerprint(&n) != baseline => Fate::Read,
        Ok(Ok(_)) => Fate::Dropped,
        // A harness error (a Suunto job asking for a document the fixture lacks) is a
        // refusal too: the leaf steered the code, but no reading came of it.
        Ok(Err(_)) | Err(_) => Fate::Rejected,
    })
}

/// The fate of every leaf of one pattern in one case. A group of at most [`SAMPLE`] leaves
/// (every object field, most arrays) is tested leaf by leaf. A longer sample array (1,440
/// heart-rate samples) would cost a normalizer run per sample, so [`SAMPLE`] evenly spaced
/// leaves (first and last included) are tested one by one and the rest perturbed together
/// once: when every sampled leaf had the same fate and the rest, changed together, has it
/// too, the rest is counted with that fate (marked *extrapolated* in the report; a rest that
/// changes nothing when changed together is exactly dropped). Otherwise every leaf is
/// tested on its own.
fn group_fates(
    case: &Case,
    vendor: &str,
    doc: &mut Value,
    baseline: &[Reading],
    group: &[Vec<Step>],
) -> Result<GroupFates, String> {
    let n = group.len();
    let picked: Vec<usize> = if n <= SAMPLE {
        (0..n).collect()
    } else {
        (0..SAMPLE).map(|k| k * (n - 1) / (SAMPLE - 1)).collect()
    };
    let mut fates = Vec::with_capacity(n);
    for &i in &picked {
        fates.push(try_leaves(case, vendor, doc, baseline, &[&group[i]])?);
    }
    let mut extrapolated = false;
    if n > SAMPLE {
        let rest: Vec<usize> = (0..n).filter(|i| !picked.contains(i)).collect();
        let uniform = fates.iter().all(|f| *f == fates[0]);
        let rest_leaves: Vec<&Vec<Step>> = rest.iter().map(|&i| &group[i]).collect();
        if uniform && try_leaves(case, vendor, doc, baseline, &rest_leaves)? == fates[0] {
            extrapolated = fates[0] != Fate::Dropped;
            fates.extend(std::iter::repeat_n(fates[0], rest.len()));
        } else {
            for leaf in rest_leaves {
                fates.push(try_leaves(case, vendor, doc, baseline, &[leaf])?);
            }
        }
    }
    let counts = [Fate::Read, Fate::Dropped, Fate::Rejected]
        .into_iter()
        .map(|f| (f, fates.iter().filter(|x| **x == f).count()))
        .collect();
    Ok(GroupFates {
        counts,
        extrapolated,
    })
}

fn measure_vendor(vendor: &str) -> Result<(VendorReport, Vec<String>), String> {
    let dir = fixtures_root().join(vendor);
    let mut ignores = load_ignores(&dir)?;
    let mut report = VendorReport::default();
    let mut problems = Vec::new();
    for name in case_names(&dir)? {
        let case = Case::load(&dir, &name)?;
        let baseline = match case.normalize(vendor, &case.input)? {
            // A deletion carries no data to read: its values are not "dropped".
            Ok(n)
                if n.readings.is_empty()
                    && !(n.tombstones.is_empty() && n.range_deletions.is_empty()) =>
            {
                report.deletion_cases.push(name);
                continue;
            }
            Ok(n) => fingerprint(&n),
            Err(_) => {
                report.error_cases.push(name);
                continue;
            }
        };
        let doc: Value = serde_json::from_slice(&case.input)
            .map_err(|e| format!("{vendor}/{name}.json: {e}"))?;
        // Perturbed payloads are re-serialized (keys sorted): the untouched payload must
        // give the same readings that way, or a difference would be blamed on a leaf.
        let reserialized = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
        if case
            .normalize(vendor, &reserialized)?
            .map(|n| fingerprint(&n))
            != Ok(baseline.clone())
        {
            problems.push(format!(
                "{vendor}/{name}: readings depend on the payload's formatting or key order"
            ));
            continue;
        }
        let mut leaves = Vec::new();
        collect_leaves(&doc, &mut Vec::new(), &mut leaves);
        // Leaves grouped by pattern, in document order within each group.
        let mut groups: BTreeMap<String, Vec<Vec<Step>>> = BTreeMap::new();
        for steps in leaves {
            groups.entry(pattern_of(&steps)).or_default().push(steps);
        }
        let mut doc = doc;
        for (pattern, group) in groups {
            if let Some(ig) = ignores.iter_mut().find(|ig| glob(&ig.pattern, &pattern)) {
                ig.used = true;
                report.ignored_leaves += group.len();
                continue;
            }
            let fates = group_fates(&case, vendor, &mut doc, &baseline, &group)?;
            let stat = report.patterns.entry(pattern).or_default();
            stat.extrapolated |= fates.extrapolated;
            if fates.counts.iter().any(|(f, n)| *f != Fate::Read && *n > 0) {
                stat.missed_in.insert(name.clone());
            }
            for (fate, n) in fates.counts {
                match fate {
                    Fate::Read => {
                        report.read += n;
                        stat.read += n;
                    }
                    Fate::Dropped => {
                        report.dropped += n;
                        stat.dropped += n;
                    }
                    Fate::Rejected => {
                        report.rejected += n;
                        stat.rejected += n;
                    }
                }
            }
        }
        report.cases.push(name);
    }
    for ig in ignores.iter().filter(|ig| !ig.used) {
        problems.push(format!(
            "{vendor}/{IGNORE_FILE}: `{}` matches no numeric leaf of any case (remove it)",
            ig.pattern
        ));
    }
    Ok((report, problems))
}

/// `vendor -> (leaf floor, pattern floor)`.
fn load_floors(path: &Path) -> Result<BTreeMap<String, (f64, f64)>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let parsed = match fields[..] {
            [vendor, leaf, pattern] => leaf
                .parse::<f64>()
                .ok()
                .zip(pattern.parse::<f64>().ok())
                .map(|floors| (vendor.to_owned(), floors)),
            _ => None,
        };
        let (vendor, floors) = parsed.ok_or_else(|| {
            format!(
                "{}:{}: expected `<vendor> <leaf floor> <pattern floor>`",
                path.display(),
                n + 1
            )
        })?;
        out.insert(vendor, floors);
    }
    Ok(out)
}

fn floor2(x: f64) -> f64 {
    (x * 100.0 + 1e-9).floor() / 100.0
}

fn render(reports: &BTreeMap<&str, VendorReport>, floors: &BTreeMap<String, (f64, f64)>) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Fixture coverage\n\n\
         Generated by `make coverage` (vendors/src/normalize/coverage.rs): every numeric leaf \
         of every fixture input that normalizes without error, perturbed on its own; *read* = \
         the readings changed, *dropped* = they did not, *rejected* = the payload was then \
         refused. Leaves listed in `<vendor>/coverage_ignore.txt` (ids, timestamps, codes) are \
         not health values and not counted. Pattern ratio = path patterns whose every leaf is \
         read / all patterns.\n"
    );
    let _ = writeln!(
        md,
        "| vendor | cases | health leaves | read | dropped | rejected | leaf ratio (floor) | \
         patterns read | pattern ratio (floor) | ignored leaves |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (vendor, r) in reports {
        let (lf, pf) = floors
            .get(*vendor)
            .map(|(l, p)| (format!("{l:.2}"), format!("{p:.2}")))
            .unwrap_or_else(|| ("none".into(), "none".into()));
        let _ = writeln!(
            md,
            "| {vendor} | {} | {} | {} | {} | {} | {:.3} ({lf}) | {}/{} | {:.3} ({pf}) | {} |",
            r.cases.len(),
            r.health_leaves(),
            r.read,
            r.dropped,
            r.rejected,
            r.leaf_ratio(),
            r.patterns_read(),
            r.patterns.len(),
            r.pattern_ratio(),
            r.ignored_leaves,
        );
    }
    for (vendor, r) in reports {
        let _ = writeln!(md, "\n## {vendor}\n");
        let not_read: Vec<(&String, &PatternStat)> =
            r.patterns.iter().filter(|(_, p)| !p.fully_read()).collect();
        if not_read.is_empty() {
            let _ = writeln!(md, "Every health leaf is read.");
        } else {
            let _ = writeln!(
                md,
                "Not read (leaves not read of the pattern's leaves; in cases):\n"
            );
        }
        for (pattern, p) in not_read {
            let cases: Vec<&str> = p.missed_in.iter().map(String::as_str).collect();
            let rejected = if p.rejected > 0 {
                format!(" ({} rejected)", p.rejected)
            } else {
                String::new()
            };
            let _ = writeln!(
                md,
                "- `{pattern}`: {} of {}{rejected}; {}",
                p.dropped + p.rejected,
                p.dropped + p.rejected + p.read,
                cases.join(", ")
            );
        }
        let sampled: Vec<String> = r
            .patterns
            .iter()
            .filter(|(_, p)| p.extrapolated)
            .map(|(pattern, _)| format!("`{pattern}`"))
            .collect();
        if !sampled.is_empty() {
            let _ = writeln!(
                md,
                "\nSampled (more than {SAMPLE} leaves in a case; the rest's fate extrapolated \
                 after one joint perturbation agreed): {}",
                sampled.join(", ")
            );
        }
        if !r.deletion_cases.is_empty() {
            let _ = writeln!(
                md,
                "\nDeletion cases (not measured): {}",
                r.deletion_cases.join(", ")
            );
        }
        if !r.error_cases.is_empty() {
            let _ = writeln!(
                md,
                "\nError cases (not measured): {}",
                r.error_cases.join(", ")
            );
        }
    }
    md
}

/// Where cargo puts this test binary's artifacts: `<target>/<profile>/deps/<binary>`.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

#[test]
fn fixture_coverage_does_not_fall_below_its_floors() {
    let mut reports = BTreeMap::new();
    let mut problems = Vec::new();
    for vendor in VENDOR_DIRS {
        let (report, mut found) = measure_vendor(vendor).unwrap_or_else(|e| panic!("{e}"));
        problems.append(&mut found);
        reports.insert(vendor, report);
    }
    let floors_path = fixtures_root().join("..").join(FLOORS_FILE);
    let floors = load_floors(&floors_path).unwrap_or_else(|e| panic!("{e}"));
    let md = render(&reports, &floors);
    println!("{md}");
    let out = target_dir().join("coverage.md");
    if let Err(e) = fs::write(&out, &md) {
        println!("could not write {}: {e}", out.display());
    } else {
        println!("written to {}", out.display());
    }

    for (vendor, r) in &reports {
        let (leaf, pattern) = (r.leaf_ratio(), r.pattern_ratio());
        match floors.get(*vendor) {
            None => problems.push(format!(
                "{vendor}: no floor in {FLOORS_FILE}; add `{vendor} {:.2} {:.2}`",
                floor2(leaf),
                floor2(pattern)
            )),
            Some(&(lf, pf)) => {
                if leaf + 1e-9 < lf || pattern + 1e-9 < pf {
                    problems.push(format!(
                        "{vendor}: coverage regressed: leaf ratio {leaf:.3} (floor {lf:.2}), \
                         pattern ratio {pattern:.3} (floor {pf:.2}); see the dropped paths above. A change \
                         that stops reading a field must not pass; a new fixture with fields not \
                         mapped yet may lower the floor (coverage.rs says how)"
                    ));
                } else if floor2(leaf) > lf || floor2(pattern) > pf {
                    println!(
                        "{vendor}: coverage rose; raise its floor in {FLOORS_FILE} to `{vendor} {:.2} {:.2}`",
                        floor2(leaf),
                        floor2(pattern)
                    );
                }
            }
        }
    }
    for vendor in floors.keys() {
        if !reports.contains_key(vendor.as_str()) {
            problems.push(format!("{FLOORS_FILE}: {vendor} has no fixture directory"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

mod unit {
    use super::*;

    #[test]
    fn glob_and_numeric_strings() {
        assert!(glob("data[].metadata.*_time", "data[].metadata.start_time"));
        assert!(glob("*.id", "data[].records[].id"));
        assert!(!glob("*.id", "data[].idle"));
        assert!(glob("user_id", "user_id"));
        assert!(!glob("user_id", "user_ids"));
        assert!(numeric_string("112") && numeric_string("-3.5"));
        assert!(!numeric_string("3600s") && !numeric_string("1.") && !numeric_string(""));
    }

    #[test]
    fn perturbation_always_changes_and_keeps_the_representation() {
        for i in [-2_i64, -1, 0, 1, 2, 50, 1_735_718_400_000] {
            let p = perturb(&Value::from(i));
            assert!(p.is_i64() && p != i, "{i} -> {p}");
        }
        let p = perturb(&Value::from(97.5));
        assert!(p.is_f64() && p != 97.5);
        assert_eq!(perturb(&Value::from("112")), Value::from("154"));
        assert!(perturb(&Value::from("0.5")).is_string());
    }

    /// Health Auto Export payload with `n` samples of `name`, one a minute.
    fn hae_series(name: &str, n: usize) -> Value {
        let data: Vec<Value> = (0..n)
            .map(|i| {
                serde_json::json!({"qty": 100 + i,
                    "date": format!("2025-01-01 {:02}:{:02}:00 -0500", i / 60, i % 60)})
            })
            .collect();
        serde_json::json!({"data": {"metrics": [{"name": name, "units": "count", "data": data}]}})
    }

    fn fates_of(doc: Value) -> (Vec<(Fate, usize)>, bool) {
        let case = Case {
            input: serde_json::to_vec(&doc).unwrap(),
            args: serde_json::from_value(serde_json::json!({"principal": "u1"})).unwrap(),
            headers: HashMap::new(),
        };
        let baseline = fingerprint(&case.normalize("healthkit", &case.input).unwrap().unwrap());
        let mut leaves = Vec::new();
        collect_leaves(&doc, &mut Vec::new(), &mut leaves);
        let mut doc = doc;
        let f = group_fates(&case, "healthkit", &mut doc, &baseline, &leaves).unwrap();
        assert_eq!(
            serde_json::to_vec(&doc).unwrap(),
            case.input,
            "document restored"
        );
        (f.counts, f.extrapolated)
    }

    #[test]
    fn long_series_are_sampled_and_short_ones_tested_leaf_by_leaf() {
        let (counts, extrapolated) = fates_of(hae_series("step_count", 10));
        assert_eq!(counts[0], (Fate::Read, 10));
        assert!(!extrapolated);
        let (counts, extrapolated) = fates_of(hae_series("step_count", 200));
        assert_eq!(counts[0], (Fate::Read, 200));
        assert!(extrapolated);
        // Nothing maps this name: every leaf dropped, which the joint perturbation proves.
        let (counts, extrapolated) = fates_of(hae_series("no_such_metric", 200));
        assert_eq!(counts[1], (Fate::Dropped, 200));
        assert!(!extrapolated);
    }

    #[test]
    fn named_series_are_one_pattern_per_name() {
        let doc: Value = serde_json::json!({"data": {"metrics": [
            {"name": "step_count", "units": "count", "data": [{"qty": 1}, {"qty": 2}]},
        ]}, "list": [{"x": 1}], "hypnogram": {"23:40": 2}});
        let mut leaves = Vec::new();
        collect_leaves(&doc, &mut Vec::new(), &mut leaves);
        let patterns: Vec<String> = leaves.iter().map(|s| pattern_of(s)).collect();
        assert_eq!(
            patterns,
            [
                "data.metrics[name=step_count].data[].qty",
                "data.metrics[name=step_count].data[].qty",
                "hypnogram.{}",
                "list[].x"
            ]
        );
    }
}
