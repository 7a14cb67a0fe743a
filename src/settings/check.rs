//! Every configuration problem in one pass, each with where it comes from.
//!
//! figment stops at the first type error or unknown key, and does not know
//! which line of the file or which environment variable a key came from. So
//! the file is parsed with `toml_edit` (which keeps spans) and each key is
//! checked on its own against the key set of [`Settings::default`]: an
//! unknown key gets the nearest valid one suggested (strsim), a known one is
//! extracted alone over the defaults, so a type error in one key does not hide
//! the next. The same for `CHURNWATCH_*` variables. The keys that pass are
//! then merged (defaults, file, environment) and the cross-field checks of
//! [`Settings::problems`] run on the result, their sources looked up too.

use std::{collections::BTreeMap, path::Path};

use figment::{
    error::Kind,
    providers::{Env, Serialized},
    Figment,
};

use super::Settings;
use crate::config::ConfigProblem;

/// Environment variables that configure churnwatch start with this.
pub const ENV_PREFIX: &str = "CHURNWATCH_";

/// Keys that hold free-form tables (any sub-key is valid).
const OPEN_TABLES: &[&str] = &["kafka.properties"];

/// Optional keys absent from the serialized defaults (`None`).
const OPTIONAL_KEYS: &[&str] = &[
    "kafka.group_id",
    "kafka.group_instance_id",
    "http.bearer_token",
    "model.prior",
    "outreach.holdout.check_in",
    "outreach.holdout.win_back",
    "outreach.holdout.service_recovery",
    "outreach.holdout.escalate_to_agent",
    "outreach.holdout.feedback_follow_up",
    "outreach.holdout.renewal_save",
];

/// Environment variables figment was told to ignore (`CHURNWATCH_LOG` is
/// the test harness's log switch, not a setting).
const IGNORED_ENV: &[&str] = &["log"];

/// Where a key's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Origin {
    File { line: usize },
    Env { var: String },
}

/// A key path as the messages show it: dotted, segments with dots quoted.
fn display_path(path: &[String]) -> String {
    path.iter()
        .map(|s| {
            if s.contains('.') {
                format!("\"{s}\"")
            } else {
                s.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The valid key paths: tables and leaves of the defaults, plus the optional ones.
fn known_keys() -> BTreeMap<String, bool> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, bool>) {
        if let toml::Value::Table(t) = v {
            for (k, v) in t {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                let table = v.is_table() && !OPEN_TABLES.contains(&path.as_str());
                out.insert(path.clone(), table);
                if table {
                    walk(&path, v, out);
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(v) = toml::Value::try_from(Settings::default()) {
        walk("", &v, &mut out);
    }
    for k in OPTIONAL_KEYS.iter().chain(OPEN_TABLES) {
        out.insert((*k).to_owned(), false);
    }
    out
}

/// The valid key paths that are values (not tables), sorted.
pub(super) fn leaf_keys() -> Vec<String> {
    known_keys()
        .into_iter()
        .filter(|(_, table)| !table)
        .map(|(k, _)| k)
        .collect()
}

/// "did you mean" for an unknown key: the nearest known key at the same
/// level, if it is close enough to be a typo.
fn nearest(path: &[String], known: &BTreeMap<String, bool>) -> Option<String> {
    let parent = display_path(&path[..path.len() - 1]);
    let last = path.last()?;
    known
        .keys()
        .filter_map(|k| {
            let (kp, kl) = k.rsplit_once('.').unwrap_or(("", k));
            (kp == parent).then_some(kl)
        })
        .map(|cand| {
            // A key cut short (`bootstrap` for `bootstrap_servers`) is a typo too.
            let cut = cand.starts_with(last.as_str()) || last.starts_with(cand);
            let d = strsim::damerau_levenshtein(last, cand);
            (if cut { d.min(1) } else { d }, cand)
        })
        .filter(|(d, cand)| *d <= 2.max(cand.len() / 3))
        .min()
        .map(|(_, cand)| {
            if parent.is_empty() {
                cand.to_owned()
            } else {
                format!("{parent}.{cand}")
            }
        })
}

fn env_name(path: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        path.replace('.', "__").to_ascii_uppercase()
    )
}

/// A serde error as one sentence, without figment's doubled backticks.
fn describe(kind: &Kind) -> String {
    // Rust's type names mean little to an operator.
    let plain = |e: &str| -> String {
        match e {
            "i32" | "i64" => "an integer".into(),
            "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer".into(),
            "f32" | "f64" => "a number".into(),
            "a boolean" | "bool" => "true or false".into(),
            other => other.to_owned(),
        }
    };
    match kind {
        Kind::InvalidType(actual, expected) => {
            format!("expected {}, found {actual}", plain(expected))
        }
        Kind::InvalidValue(actual, expected) => {
            format!("expected {}, found {actual}", plain(expected))
        }
        Kind::UnknownVariant(v, expected) => format!(
            "unknown value `{v}`; expected one of {}",
            expected
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Kind::UnknownField(f, expected) => format!(
            "unknown key `{f}`; expected one of {}",
            expected
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Kind::Message(m) => m.clone(),
        other => other.to_string(),
    }
}

/// The problems of one candidate key: extracted alone over the defaults.
fn type_problems(fig: Figment, path: &str) -> Vec<(String, String)> {
    match fig.extract::<Settings>() {
        Ok(_) => Vec::new(),
        Err(e) => e
            .into_iter()
            .map(|err| {
                let key = if err.path.is_empty() {
                    path.to_owned()
                } else {
                    err.path.join(".")
                };
                (key, describe(&err.kind))
            })
            .collect(),
    }
}

fn defaults() -> Figment {
    Figment::from(Serialized::defaults(Settings::default()))
}

/// One file leaf: its path, value and line.
struct Leaf {
    path: Vec<String>,
    value: toml::Value,
    line: usize,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Collects the file's keys: leaves (known or not) and unknown tables.
fn collect(
    text: &str,
    table: &dyn toml_edit::TableLike,
    prefix: &[String],
    known: &BTreeMap<String, bool>,
    leaves: &mut Vec<Leaf>,
    unknown: &mut Vec<(Vec<String>, usize)>,
) {
    for (k, item) in table.iter() {
        let mut path = prefix.to_vec();
        path.push(k.to_owned());
        let line = table
            .key(k)
            .and_then(toml_edit::Key::span)
            .or_else(|| item.span())
            .map_or(0, |s| line_of(text, s.start));
        let shown = display_path(&path);
        match known.get(&shown) {
            None => unknown.push((path, line)),
            Some(true) => {
                if let Some(t) = item.as_table_like() {
                    collect(text, t, &path, known, leaves, unknown);
                } else {
                    leaves.push(Leaf {
                        value: to_value(item),
                        path,
                        line,
                    });
                }
            }
            Some(false) => leaves.push(Leaf {
                value: to_value(item),
                path,
                line,
            }),
        }
    }
}

/// A toml_edit item as a plain TOML value (its text, re-read).
fn to_value(item: &toml_edit::Item) -> toml::Value {
    let text = match item.clone().into_value() {
        Ok(v) => v.decorated("", "").to_string(),
        Err(other) => other.to_string(),
    };
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or(toml::Value::String(text))
}

impl Settings {
    /// Defaults, then the file (if any), then `CHURNWATCH_*` variables, every
    /// problem at once with its source. `require_broker`: the file or the
    /// environment must set `kafka.bootstrap_servers` (the service must not
    /// silently target a default broker; `replay` needs none).
    pub(super) fn load_checked(
        file: Option<&Path>,
        require_broker: bool,
    ) -> Result<Settings, Vec<ConfigProblem>> {
        let known = known_keys();
        let mut problems: Vec<ConfigProblem> = Vec::new();
        let mut origins: BTreeMap<String, Origin> = BTreeMap::new();
        let mut merged = defaults();
        let file_name = file.map(|f| f.display().to_string()).unwrap_or_default();
        if let Some(f) = file {
            let text = match std::fs::read_to_string(f) {
                Ok(t) => t,
                Err(e) => {
                    return Err(vec![ConfigProblem::new(
                        "--config",
                        format!("cannot read {}: {e}", f.display()),
                    )])
                }
            };
            match toml_edit::ImDocument::parse(text.as_str()) {
                Err(e) => {
                    let line = e.span().map_or(0, |s| line_of(&text, s.start));
                    let msg = e.message().trim().to_owned();
                    return Err(vec![
                        ConfigProblem::new("(syntax)", msg).at(format!("{file_name}:{line}"))
                    ]);
                }
                Ok(doc) => {
                    let (mut leaves, mut unknown) = (Vec::new(), Vec::new());
                    collect(
                        &text,
                        doc.as_table(),
                        &[],
                        &known,
                        &mut leaves,
                        &mut unknown,
                    );
                    for (path, line) in unknown {
                        let hint = nearest(&path, &known)
                            .map(|k| format!(" (did you mean `{k}`?)"))
                            .unwrap_or_default();
                        problems.push(
                            ConfigProblem::new(display_path(&path), format!("unknown key{hint}"))
                                .at(format!("{file_name}:{line}")),
                        );
                    }
                    for leaf in leaves {
                        let path = display_path(&leaf.path);
                        let dotted = leaf.path.join(".");
                        let one = Serialized::default(&dotted, &leaf.value);
                        let found = type_problems(defaults().merge(one.clone()), &path);
                        let at = format!("{file_name}:{}", leaf.line);
                        if found.is_empty() {
                            merged = merged.merge(one);
                            origins.insert(path, Origin::File { line: leaf.line });
                        } else {
                            for (key, p) in found {
                                problems.push(ConfigProblem::new(key, p).at(at.clone()));
                            }
                        }
                    }
                }
            }
        }
        let mut vars: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        for (var, _) in vars {
            let path = var[ENV_PREFIX.len()..]
                .to_ascii_lowercase()
                .replace("__", ".");
            if IGNORED_ENV.contains(&path.as_str()) {
                continue;
            }
            let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
            let known_leaf = known.get(&path) == Some(&false);
            let under_open = OPEN_TABLES
                .iter()
                .any(|t| path.starts_with(&format!("{t}.")));
            if !known_leaf || under_open {
                let hint = if under_open {
                    " (a [kafka.properties] key has dots, which a variable name cannot carry: set it in the file)".to_owned()
                } else {
                    nearest(&segments, &known)
                        .map(|k| format!(" (did you mean {}?)", env_name(&k)))
                        .unwrap_or_default()
                };
                problems.push(
                    ConfigProblem::new(path.clone(), format!("unknown key{hint}")).at(var.clone()),
                );
                continue;
            }
            let wanted = var.clone();
            let target = path.clone();
            let one = Env::raw().filter_map(move |k| {
                (k.as_str() == wanted.as_str()).then(|| target.clone().into())
            });
            let found = type_problems(defaults().merge(one.clone()), &path);
            if found.is_empty() {
                merged = merged.merge(one);
                origins.insert(path, Origin::Env { var });
            } else {
                for (key, p) in found {
                    problems.push(ConfigProblem::new(key, p).at(var.clone()));
                }
            }
        }
        if require_broker && !origins.contains_key("kafka.bootstrap_servers") {
            problems.push(ConfigProblem::new(
                "kafka.bootstrap_servers",
                format!(
                    "not set: name the brokers (`bootstrap_servers` under [kafka] in the file, or {}); churnwatch does not guess one",
                    env_name("kafka.bootstrap_servers")
                ),
            ));
        }
        let settings = match merged.extract::<Settings>() {
            Ok(s) => s,
            Err(e) => {
                for err in e {
                    problems.push(ConfigProblem::new(err.path.join("."), describe(&err.kind)));
                }
                return Err(problems);
            }
        };
        for mut p in settings.problems() {
            p.origin = source_of(&p.key, &origins, &file_name);
            problems.push(p);
        }
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(problems)
        }
    }
}

/// The source of a cross-field problem's key: the variable or file line that
/// set it (or the longest set key it starts with), else the default.
fn source_of(key: &str, origins: &BTreeMap<String, Origin>, file: &str) -> Option<String> {
    let exact = origins.get(key);
    let under = || {
        origins
            .iter()
            .find(|(k, _)| k.starts_with(&format!("{key}.")))
            .map(|(_, o)| o)
    };
    let prefix = || {
        origins
            .iter()
            .filter(|(k, _)| key.starts_with(&format!("{k}.")))
            .max_by_key(|(k, _)| k.len())
            .map(|(_, o)| o)
    };
    match exact.or_else(prefix).or_else(under) {
        Some(Origin::Env { var }) => Some(var.clone()),
        Some(Origin::File { line }) => Some(format!("{file}:{line}")),
        None => Some("default".to_owned()),
    }
}
