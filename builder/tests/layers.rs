//! The builder's folders are its pipeline, and its dependencies point one way (issue 17):
//! every `crate::…` path in `builder/src` (outside the CLI) is read, and
//! - a stage only uses the stages listed for it in [`ALLOWED`] (what `src/lib.rs` documents);
//! - no module, at file granularity, reaches itself again through its imports (no circles,
//!   inside a stage either).
//!
//! Source text is scanned rather than compiled: a path in code (not in a comment) is a use.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each stage (a top-level module of `src/`) and the stages it may use.
const ALLOWED: &[(&str, &[&str])] = &[
    ("disk", &[]),
    ("confidential", &[]),
    ("progress", &[]),
    ("compose", &["disk", "confidential"]),
    ("measure", &["compose", "disk", "confidential"]),
    ("sign", &["measure", "compose", "disk"]),
    (
        "pipeline",
        &[
            "sign",
            "measure",
            "compose",
            "disk",
            "confidential",
            "progress",
        ],
    ),
    ("run", &["pipeline", "measure", "compose", "progress"]),
    ("export", &["measure", "compose"]),
    ("attest", &["run", "measure"]),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `measure/firmware/mod.rs` → `measure::firmware`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// The modules (of `known`) that `text` names by a `crate::` or `super::` path outside
/// comments.
fn uses(module: &str, text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    // `super` of `a::b` is `a`, whether the file is `a/b.rs` or `a/b/mod.rs`.
    let mut parent: Vec<&str> = module.split("::").collect();
    parent.pop();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        for (prefix, base) in [("crate::", Vec::new()), ("super::", parent.clone())] {
            let mut rest = code;
            while let Some(i) = rest.find(prefix) {
                let after = &rest[i + prefix.len()..];
                let path: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let mut parts: Vec<&str> = base.clone();
                parts.extend(path.split("::").filter(|s| !s.is_empty()));
                // The longest prefix of the path that is a module.
                for k in (1..=parts.len()).rev() {
                    let m = parts[..k].join("::");
                    if known.contains(&m) {
                        if m != module {
                            out.insert(m);
                        }
                        break;
                    }
                }
                rest = &after[path.len()..];
            }
        }
    }
    out
}

#[test]
fn stages_depend_one_way_and_no_module_imports_itself_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.retain(|f| {
        let rel = f.strip_prefix(&src).expect("under src");
        !rel.starts_with("cli") && rel != Path::new("main.rs") && rel != Path::new("lib.rs")
    });
    let known: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let m = module_of(&src, f);
        let text = std::fs::read_to_string(f).expect("read source");
        graph.insert(m.clone(), uses(&m, &text, &known));
    }

    // Stage rules.
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let stage = |m: &str| m.split("::").next().unwrap_or_default().to_string();
    let mut wrong = Vec::new();
    for (m, deps) in &graph {
        let s = stage(m);
        let Some(ok) = allowed.get(s.as_str()) else {
            wrong.push(format!(
                "{m}: stage `{s}` is not in ALLOWED (add it, with what it may use, and to lib.rs)"
            ));
            continue;
        };
        for d in deps {
            let ds = stage(d);
            if ds != s && !ok.contains(&ds.as_str()) {
                wrong.push(format!("{m} uses {d}: `{s}` may only use {ok:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // No circles, file by file.
    fn visit<'a>(
        m: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
        circles: &mut Vec<String>,
    ) {
        state.insert(m, 1);
        stack.push(m);
        for d in graph.get(m).into_iter().flatten() {
            match state.get(d.as_str()) {
                None => visit(d, graph, state, stack, circles),
                Some(1) => {
                    let from = stack.iter().position(|x| *x == d).unwrap_or_default();
                    let mut c: Vec<&str> = stack[from..].to_vec();
                    c.push(d);
                    circles.push(c.join(" -> "));
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(m, 2);
    }
    let mut state = BTreeMap::new();
    let mut circles = Vec::new();
    for m in graph.keys() {
        if !state.contains_key(m.as_str()) {
            visit(m, &graph, &mut state, &mut Vec::new(), &mut circles);
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
    // The scan sees something: the pipeline uses every stage before it.
    assert!(graph["pipeline"].iter().any(|d| d.starts_with("sign")));
    assert!(graph["run::diff"].iter().any(|d| d.starts_with("measure")));
}

#[test]
fn the_scanner_reads_paths_in_code_not_in_comments() {
    let known: BTreeSet<String> = ["a", "b", "b::c"].iter().map(|s| s.to_string()).collect();
    assert_eq!(
        uses("a", "use crate::b::c::Thing; // crate::a", &known),
        BTreeSet::from(["b::c".to_string()])
    );
    assert_eq!(
        uses("b::c", "/// crate::a\nfn f() { super::Y }", &known),
        BTreeSet::from(["b".to_string()])
    );
}
