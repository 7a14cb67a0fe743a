//! The docs and the code agree. Every configuration key the settings know
//! has a row in docs/configuration.md and every row names a key; every
//! rejection reason the code can give has a row in docs/events.md and every
//! row names one; every relative link in README.md and docs/ resolves, to a
//! file and, where it names one, to a heading. (The metrics reference is
//! checked both ways, with help texts, types and labels, by
//! tests/observability.rs.)

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Lines outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            if l.starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// The code spans of a table row's first cell: "| `x` | ..." -> [x];
/// "| `a`, `b` | ..." -> [a, b]. Empty for any other line.
fn first_cell_codes(line: &str) -> Vec<&str> {
    let Some(cell) = line
        .strip_prefix("| `")
        .and_then(|c| c.split_once("` |"))
        .map(|(c, _)| c)
    else {
        return Vec::new();
    };
    cell.split("`, `").collect()
}

/// The table a line opens, if it names one: a heading holding "`[kafka]`",
/// or a paragraph starting with "`[score.weights]`". "Top level" opens the
/// root. `None` for any other heading (its rows are not keys).
fn opens(line: &str) -> Option<Option<String>> {
    let heading = line.starts_with('#');
    if heading && line.trim_start_matches('#').trim() == "Top level" {
        return Some(Some(String::new()));
    }
    let at = if heading {
        line.find("`[")?
    } else if line.starts_with("`[") {
        0
    } else {
        return None;
    };
    let rest = &line[at + 2..];
    let name = rest.split_once("]`")?.0;
    Some(Some(name.to_owned()))
}

fn documented_keys() -> BTreeSet<String> {
    let text = read("docs/configuration.md");
    let mut table: Option<String> = None;
    let mut keys = BTreeSet::new();
    for line in prose(&text) {
        if let Some(t) = opens(line) {
            table = t;
            continue;
        }
        if line.starts_with('#') {
            table = None;
            continue;
        }
        let Some(t) = &table else { continue };
        for key in first_cell_codes(line) {
            keys.insert(if t.is_empty() {
                key.to_owned()
            } else {
                format!("{t}.{key}")
            });
        }
    }
    keys
}

#[test]
fn every_configuration_key_is_documented_and_every_documented_key_exists() {
    let code: BTreeSet<String> = churnwatch::settings::keys().into_iter().collect();
    assert!(code.len() > 50, "the settings know {} keys", code.len());
    let docs = documented_keys();
    let undocumented: Vec<&String> = code.difference(&docs).collect();
    let unknown: Vec<&String> = docs.difference(&code).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "keys in the code without a row in docs/configuration.md: {undocumented:?}; \
         rows in docs/configuration.md for keys the code does not know: {unknown:?}"
    );
}

#[test]
fn every_rejection_reason_is_documented_and_every_documented_one_exists() {
    let mut code: BTreeSet<&str> = churnwatch::validate::Rejection::REASONS
        .iter()
        .chain(churnwatch::codec::DecodeError::REASONS.iter())
        .copied()
        .collect();
    code.insert(churnwatch::codec::TRUNCATED_FILE);
    // A valid event too late to fold goes to the dead letters with this.
    code.insert(churnwatch::metrics::DropReason::Late.as_str());
    let text = read("docs/events.md");
    let start = text
        .find("\n## Rejection reasons")
        .expect("docs/events.md has a Rejection reasons section");
    let section = &text[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |e| e + 3);
    let docs: BTreeSet<&str> = prose(&section[..end])
        .into_iter()
        .flat_map(first_cell_codes)
        .collect();
    let undocumented: Vec<&&str> = code.difference(&docs).collect();
    let unknown: Vec<&&str> = docs.difference(&code).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "reasons in the code without a row in docs/events.md: {undocumented:?}; \
         rows for reasons the code does not give: {unknown:?}"
    );
}

/// GitHub's anchor for a heading: lower case, punctuation but `-` and `_`
/// dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    prose(&text)
        .into_iter()
        .filter(|l| l.starts_with('#'))
        .map(anchor)
        .collect()
}

#[test]
fn links_in_readme_and_docs_resolve() {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    // Each linked file's headings, read once.
    let mut headings: std::collections::BTreeMap<PathBuf, BTreeSet<String>> =
        std::collections::BTreeMap::new();
    let mut broken = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let dir = f.parent().unwrap_or(Path::new("."));
        for line in prose(&text) {
            let mut rest = line;
            while let Some(at) = rest.find("](") {
                rest = &rest[at + 2..];
                let Some(end) = rest.find(')') else { break };
                let target = &rest[..end];
                rest = &rest[end..];
                if target.starts_with("http") || target.contains(' ') {
                    continue;
                }
                let (file, frag) = target.split_once('#').unwrap_or((target, ""));
                let path = if file.is_empty() {
                    f.clone()
                } else {
                    dir.join(file)
                };
                let name = f.strip_prefix(root()).unwrap_or(f).display().to_string();
                if !path.exists() {
                    broken.push(format!("{name}: {target} (no such file)"));
                } else if !frag.is_empty()
                    && path.extension().is_some_and(|x| x == "md")
                    && !headings
                        .entry(path.clone())
                        .or_insert_with(|| anchors(&path))
                        .contains(frag)
                {
                    broken.push(format!("{name}: {target} (no such heading)"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_is_a_front_page() {
    let n = read("README.md").lines().count();
    assert!(
        n <= 300,
        "README.md has {n} lines; the detail belongs in docs/"
    );
}
