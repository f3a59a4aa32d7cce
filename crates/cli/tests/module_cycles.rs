//! No crate of the workspace has an import cycle between its modules.
//!
//! For every crate root under `crates/*/src` (`lib.rs`, `main.rs`,
//! `bin/*.rs`) the modules are found by following `mod` declarations, and
//! every path that names a module of the same crate (`use crate::a::b`,
//! `crate::a::f()`, `super::x`, `self::y`, a `use` of a child module) becomes
//! an edge from the module where it is written to the module it names. A path
//! that ends at an item re-imported by a `use` (`crate::Client` where the
//! root says `pub use client::Client`) is followed to the module the item
//! comes from. Code under `#[cfg(test)]` and modules named `tests` are left
//! out: a test may look anywhere.
//!
//! The graph is checked level by level: for every module, the edges between
//! its children (a reference from anywhere inside child `a` to anywhere
//! inside child `b` is an edge `a -> b`) must not form a cycle. At the crate
//! root this is the graph of top-level modules; inside `transfer/src/fetch/`
//! it is the graph of `fetch`'s submodules. References between a module and
//! its own parent are not edges of either graph.
//!
//! The scanner is a small lexer, not a Rust parser: it skips comments,
//! strings and character literals, and knows `mod`, `use` and attributes. The
//! tests at the end run it on small crates written for the purpose, one with
//! each kind of cycle and one with none.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    /// `::`
    Sep,
    P(char),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

fn lex(src: &str) -> Vec<Token> {
    let b: Vec<char> = src.chars().collect();
    let at = |i: usize| b.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < b.len() {
        let c = b[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if (c == 'r' || (c == 'b' && at(i + 1) == 'r'))
            && raw_string_start(&b, if c == 'r' { i + 1 } else { i + 2 }).is_some()
        {
            let (hashes, open) =
                raw_string_start(&b, if c == 'r' { i + 1 } else { i + 2 }).unwrap_or((0, i + 1));
            let start_line = line;
            let mut j = open + 1;
            while j < b.len() && !(b[j] == '"' && (0..hashes).all(|k| at(j + 1 + k) == '#')) {
                if b[j] == '\n' {
                    line += 1;
                }
                j += 1;
            }
            let text: String = b[open + 1..j.min(b.len())].iter().collect();
            out.push(Token {
                tok: Tok::Str(text),
                line: start_line,
            });
            i = j + 1 + hashes;
        } else if c == '"' || (c == 'b' && at(i + 1) == '"') {
            let start_line = line;
            let mut j = if c == '"' { i + 1 } else { i + 2 };
            let open = j;
            while j < b.len() && b[j] != '"' {
                if b[j] == '\\' {
                    j += 1;
                }
                if at(j) == '\n' {
                    line += 1;
                }
                j += 1;
            }
            let text: String = b[open..j.min(b.len())].iter().collect();
            out.push(Token {
                tok: Tok::Str(text),
                line: start_line,
            });
            i = j + 1;
        } else if c == '\'' || (c == 'b' && at(i + 1) == '\'') {
            let q = if c == '\'' { i } else { i + 1 };
            if at(q + 1) == '\\' {
                // An escaped character literal: '\n', '\'', '\u{..}'.
                let mut j = q + 3;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if at(q + 2) == '\'' {
                i = q + 3;
            } else {
                // A lifetime: its name is lexed as an identifier next.
                i = q + 1;
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(b[start..i].iter().collect()),
                line,
            });
        } else if c == ':' && at(i + 1) == ':' {
            out.push(Token {
                tok: Tok::Sep,
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                tok: Tok::P(c),
                line,
            });
            i += 1;
        }
    }
    out
}

/// If `b[i..]` continues a raw string (`#*"`), the number of `#` and the
/// index of the opening quote.
fn raw_string_start(b: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    while b.get(j) == Some(&'#') {
        j += 1;
    }
    (b.get(j) == Some(&'"')).then_some((j - i, j))
}

type ModPath = Vec<String>;

/// A path written in the source, from the module it is written in.
#[derive(Debug, Clone)]
struct Ref {
    from: ModPath,
    segs: Vec<String>,
    file: PathBuf,
    line: usize,
}

#[derive(Debug, Default)]
struct Module {
    file: PathBuf,
    /// Names brought in by `use` (alias -> path as written).
    imports: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default)]
struct Crate {
    modules: BTreeMap<ModPath, Module>,
    refs: Vec<Ref>,
    /// Every file read or deliberately left out (test-only modules).
    seen_files: BTreeSet<PathBuf>,
    errors: Vec<String>,
}

struct Parser<'a> {
    toks: &'a [Token],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self, k: usize) -> Option<&Tok> {
        self.toks.get(self.pos + k).map(|t| &t.tok)
    }
    fn line(&self) -> usize {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map_or(0, |t| t.line)
    }
    fn is(&self, k: usize, c: char) -> bool {
        self.peek(k) == Some(&Tok::P(c))
    }
    fn ident(&self, k: usize) -> Option<&str> {
        match self.peek(k) {
            Some(Tok::Ident(s)) => Some(s),
            _ => None,
        }
    }
    /// With `pos` on an opening bracket, moves past its closing one and
    /// returns the tokens between.
    fn skip_balanced(&mut self) -> Vec<Tok> {
        let mut depth = 0usize;
        let mut inner = Vec::new();
        while let Some(t) = self.peek(0).cloned() {
            self.pos += 1;
            match t {
                Tok::P('(' | '[' | '{') => depth += 1,
                Tok::P(')' | ']' | '}') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return inner;
                    }
                }
                _ => {}
            }
            inner.push(t);
        }
        inner
    }
    /// Skips one item: up to a `;` outside brackets, or to the end of its
    /// first top-level `{ }` block.
    fn skip_item(&mut self) {
        while let Some(t) = self.peek(0) {
            match t {
                Tok::P(';') => {
                    self.pos += 1;
                    return;
                }
                Tok::P('{') => {
                    self.skip_balanced();
                    // `struct S { .. }`, `fn f() { .. }`, `mod m { .. }` end
                    // here; `let x = S { .. };` goes on to its `;`.
                    if !self.is(0, ';') && !self.is(0, '.') && !self.is(0, '?') {
                        return;
                    }
                }
                Tok::P('(' | '[') => {
                    self.skip_balanced();
                }
                Tok::P('}') => return,
                _ => self.pos += 1,
            }
        }
    }
}

/// `a::{b, c::d as e, f::*}` after `use`: pushes (alias or `*`, path).
fn parse_use_tree(p: &mut Parser<'_>, prefix: Vec<String>, out: &mut Vec<(String, Vec<String>)>) {
    let mut segs = prefix;
    while let Some(t) = p.peek(0).cloned() {
        match t {
            Tok::Sep => p.pos += 1,
            Tok::P('*') => {
                p.pos += 1;
                out.push(("*".to_string(), segs));
                return;
            }
            Tok::P('{') => {
                p.pos += 1;
                while p.peek(0).is_some() && !p.is(0, '}') {
                    parse_use_tree(p, segs.clone(), out);
                    // Past the `,` (or whatever else the tree left).
                    if !p.is(0, '}') {
                        p.pos += 1;
                    }
                }
                p.pos += 1;
                return;
            }
            Tok::Ident(s) => {
                p.pos += 1;
                segs.push(s);
                if p.peek(0) == Some(&Tok::Sep) {
                    p.pos += 1;
                    continue;
                }
                let alias = if p.ident(0) == Some("as") {
                    let a = p.ident(1).unwrap_or("_").to_string();
                    p.pos += 2;
                    a
                } else {
                    if segs.last().map(String::as_str) == Some("self") {
                        segs.pop();
                    }
                    segs.last().cloned().unwrap_or_default()
                };
                out.push((alias, segs));
                return;
            }
            _ => return,
        }
    }
}

fn is_test_cfg(attr: &[Tok]) -> bool {
    let has = |w: &str| attr.iter().any(|t| *t == Tok::Ident(w.to_string()));
    matches!(attr.first(), Some(Tok::Ident(s)) if s == "cfg") && has("test") && !has("not")
}

/// Where the files of `file`'s child modules live.
fn child_dir(file: &Path) -> PathBuf {
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if stem == "mod" {
        dir
    } else {
        dir.join(stem)
    }
}

fn load_file(krate: &mut Crate, path: ModPath, file: &Path, is_root: bool) {
    krate.seen_files.insert(file.to_path_buf());
    let src = match fs::read_to_string(file) {
        Ok(s) => s,
        Err(e) => {
            krate
                .errors
                .push(format!("cannot read {}: {e}", file.display()));
            return;
        }
    };
    let toks = lex(&src);
    let mut p = Parser {
        toks: &toks,
        pos: 0,
    };
    let dir = if is_root {
        file.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        child_dir(file)
    };
    krate.modules.entry(path.clone()).or_default().file = file.to_path_buf();
    parse_body(krate, &mut p, &path, file, &dir, false);
}

fn parse_body(
    krate: &mut Crate,
    p: &mut Parser<'_>,
    path: &ModPath,
    file: &Path,
    dir: &Path,
    inline: bool,
) {
    let mut test_only = false;
    let mut path_attr: Option<String> = None;
    while let Some(t) = p.peek(0).cloned() {
        match t {
            Tok::P('#') if p.is(1, '[') || (p.is(1, '!') && p.is(2, '[')) => {
                let outer = !p.is(1, '!');
                p.pos += if outer { 1 } else { 2 };
                let attr = p.skip_balanced();
                let inner = attr.get(1..).unwrap_or(&[]);
                if outer && is_test_cfg(inner) {
                    test_only = true;
                }
                if let (Some(Tok::Ident(k)), Some(Tok::P('=')), Some(Tok::Str(v))) =
                    (inner.first(), inner.get(1), inner.get(2))
                {
                    if k == "path" {
                        path_attr = Some(v.clone());
                    }
                }
            }
            Tok::Ident(ref k) if k == "pub" => {
                // A visibility such as `pub(in crate::a)` names no dependency.
                p.pos += 1;
                if p.is(0, '(') {
                    p.skip_balanced();
                }
            }
            Tok::Ident(ref k) if k == "mod" && p.ident(1).is_some() => {
                let name = p.ident(1).unwrap_or_default().to_string();
                p.pos += 2;
                let file_of_child = || -> Vec<PathBuf> {
                    match &path_attr {
                        Some(rel) => vec![file.parent().unwrap_or(dir).join(rel)],
                        None => vec![
                            dir.join(format!("{name}.rs")),
                            dir.join(&name).join("mod.rs"),
                        ],
                    }
                };
                let skip = test_only || name == "tests";
                let mut child = path.clone();
                child.push(name.clone());
                if p.is(0, ';') {
                    p.pos += 1;
                    let candidates = file_of_child();
                    match candidates.iter().find(|f| f.is_file()) {
                        Some(f) if skip => {
                            krate.seen_files.insert(f.clone());
                        }
                        Some(f) => load_file(krate, child, f, false),
                        None if skip => {}
                        None => krate.errors.push(format!(
                            "{}:{}: no file for `mod {name};` (looked at {:?})",
                            file.display(),
                            p.line(),
                            candidates
                        )),
                    }
                } else if p.is(0, '{') {
                    if skip {
                        p.skip_balanced();
                    } else {
                        p.pos += 1;
                        krate.modules.entry(child.clone()).or_default().file = file.to_path_buf();
                        parse_body(krate, p, &child, file, &dir.join(&name), true);
                    }
                }
                test_only = false;
                path_attr = None;
            }
            _ if test_only => {
                p.skip_item();
                test_only = false;
                path_attr = None;
            }
            Tok::Ident(ref k) if k == "use" => {
                let line = p.line();
                p.pos += 1;
                let mut items = Vec::new();
                parse_use_tree(p, Vec::new(), &mut items);
                for (alias, segs) in items {
                    if alias != "*" && alias != "_" {
                        let m = krate.modules.entry(path.clone()).or_default();
                        m.imports.entry(alias).or_insert_with(|| segs.clone());
                    }
                    krate.refs.push(Ref {
                        from: path.clone(),
                        segs,
                        file: file.to_path_buf(),
                        line,
                    });
                }
            }
            Tok::Ident(ref k)
                if matches!(k.as_str(), "crate" | "super" | "self")
                    && p.peek(1) == Some(&Tok::Sep) =>
            {
                let line = p.line();
                let mut segs = vec![k.clone()];
                p.pos += 1;
                while p.peek(0) == Some(&Tok::Sep) {
                    match p.ident(1) {
                        Some(s) => {
                            segs.push(s.to_string());
                            p.pos += 2;
                        }
                        None => break,
                    }
                }
                krate.refs.push(Ref {
                    from: path.clone(),
                    segs,
                    file: file.to_path_buf(),
                    line,
                });
            }
            Tok::P('{') => {
                // A block: scan inside it with the same rules (a `use` or
                // path inside a function body counts too).
                p.pos += 1;
                parse_body(krate, p, path, file, dir, true);
            }
            Tok::P('}') => {
                p.pos += 1;
                if inline {
                    return;
                }
            }
            _ => p.pos += 1,
        }
    }
}

impl Crate {
    /// The absolute path a written path stands for, if it starts in this
    /// crate.
    fn absolute(&self, from: &ModPath, segs: &[String]) -> Option<Vec<String>> {
        let first = segs.first()?;
        let mut base: Vec<String>;
        let mut rest = &segs[1..];
        match first.as_str() {
            "crate" => base = Vec::new(),
            "self" => base = from.clone(),
            "super" => {
                base = from.clone();
                base.pop()?;
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
            }
            name => {
                // `use child::X` (2018 paths), or a name imported in this
                // module (`use crate::a; ... a::f()`).
                let mut child = from.clone();
                child.push(name.to_string());
                if self.modules.contains_key(&child) {
                    base = child;
                } else {
                    return None;
                }
            }
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The module an absolute path ends in, following `use` re-imports.
    fn module_of(&self, abs: Vec<String>) -> ModPath {
        let mut abs = abs;
        for _ in 0..16 {
            let mut k = abs.len();
            while k > 0 && !self.modules.contains_key(&abs[..k]) {
                k -= 1;
            }
            let module = abs[..k].to_vec();
            let Some(name) = abs.get(k) else {
                return module;
            };
            let followed = self
                .modules
                .get(&module)
                .and_then(|m| m.imports.get(name))
                .and_then(|segs| self.absolute(&module, segs));
            match followed {
                Some(mut next) if next != abs => {
                    next.extend(abs[k + 1..].iter().cloned());
                    abs = next;
                }
                _ => return module,
            }
        }
        abs
    }
}

fn show(path: &[String]) -> String {
    if path.is_empty() {
        "crate".to_string()
    } else {
        path.join("::")
    }
}

/// A cycle between the children of one module.
#[derive(Debug)]
struct Cycle {
    /// The module whose children form the cycle (`crate` for top level).
    parent: String,
    /// The modules of the cycle, first one repeated at the end.
    path: Vec<String>,
    /// The cycle with one place in the source for each of its edges.
    text: String,
}

/// The cycles between sibling modules of one crate root.
fn cycles(root_file: &Path, shown_as: &str) -> Result<Vec<Cycle>, String> {
    let mut krate = Crate::default();
    load_file(&mut krate, Vec::new(), root_file, true);
    if !krate.errors.is_empty() {
        return Err(krate.errors.join("\n"));
    }
    let base = root_file
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    // parent -> child -> child -> first place of the reference
    type Graph = BTreeMap<String, BTreeMap<String, String>>;
    let mut graphs: BTreeMap<ModPath, Graph> = BTreeMap::new();
    for r in &krate.refs {
        let Some(abs) = krate.absolute(&r.from, &r.segs) else {
            continue;
        };
        let to = krate.module_of(abs);
        let from = &r.from;
        let k = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
        if k < from.len() && k < to.len() {
            let place = format!(
                "{}:{} `{}`",
                r.file.strip_prefix(&base).unwrap_or(&r.file).display(),
                r.line,
                r.segs.join("::")
            );
            graphs
                .entry(from[..k].to_vec())
                .or_default()
                .entry(from[k].clone())
                .or_default()
                .entry(to[k].clone())
                .or_insert(place);
        }
    }
    let mut found = Vec::new();
    for (parent, graph) in &graphs {
        for path in find_cycles(graph) {
            let mut text = format!(
                "{shown_as}: cycle between the modules of `{}`: {}",
                show(parent),
                path.join(" -> ")
            );
            for w in path.windows(2) {
                text.push_str(&format!(
                    "\n    {} -> {}: {}",
                    w[0], w[1], graph[&w[0]][&w[1]]
                ));
            }
            found.push(Cycle {
                parent: show(parent),
                path,
                text,
            });
        }
    }
    Ok(found)
}

/// One cycle for every back edge of a depth-first search (`a -> b -> a`).
fn find_cycles(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeMap<String, String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
        out: &mut Vec<Vec<String>>,
    ) {
        marks.insert(n.to_string(), Mark::Open);
        stack.push(n.to_string());
        for next in graph.get(n).into_iter().flat_map(|m| m.keys()) {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::New => visit(next, graph, marks, stack, out),
                Mark::Open => {
                    let start = stack.iter().position(|s| s == next).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    out.push(cycle);
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(n.to_string(), Mark::Done);
    }
    let mut marks = BTreeMap::new();
    let mut out = Vec::new();
    for n in graph.keys() {
        if marks.get(n).copied().unwrap_or(Mark::New) == Mark::New {
            visit(n, graph, &mut marks, &mut Vec::new(), &mut out);
        }
    }
    out
}

/// The crate roots of a package directory: `src/lib.rs`, `src/main.rs`,
/// `src/bin/*.rs`.
fn crate_roots(package: &Path) -> Vec<PathBuf> {
    let src = package.join("src");
    let mut roots: Vec<PathBuf> = ["lib.rs", "main.rs"]
        .iter()
        .map(|f| src.join(f))
        .filter(|f| f.is_file())
        .collect();
    if let Ok(entries) = fs::read_dir(src.join("bin")) {
        let mut bins: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| f.extension().is_some_and(|x| x == "rs"))
            .collect();
        bins.sort();
        roots.extend(bins);
    }
    roots
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Cycles present when this check was written, each with what it would
/// take to remove it: (crate root, parent module, modules of the cycle).
/// The check fails on any other cycle, and also when one of these is gone,
/// so that the list only ever shrinks.
const KNOWN: &[(&str, &str, &[&str])] = &[];

fn is_known(root: &str, c: &Cycle) -> bool {
    let mut members: Vec<&str> = c.path.iter().map(String::as_str).collect();
    members.sort_unstable();
    members.dedup();
    KNOWN.iter().any(|(r, p, m)| {
        *r == root && *p == c.parent && m.iter().copied().eq(members.iter().copied())
    })
}

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
    let crates_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut packages: Vec<PathBuf> = fs::read_dir(&crates_dir)
        .expect("crates/ is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    packages.sort();
    assert!(
        packages.len() >= 7,
        "expected the workspace's crates under {}, found {packages:?}",
        crates_dir.display()
    );
    let mut problems = Vec::new();
    let mut known_seen = BTreeSet::new();
    for package in &packages {
        let roots = crate_roots(package);
        assert!(!roots.is_empty(), "{} has no crate root", package.display());
        let mut seen = BTreeSet::new();
        for root in &roots {
            let shown = format!(
                "crates/{}",
                root.strip_prefix(&crates_dir).unwrap_or(root).display()
            );
            match cycles(root, &shown) {
                Ok(found) => {
                    for c in found {
                        if is_known(&shown, &c) {
                            let mut m = c.path.clone();
                            m.sort();
                            m.dedup();
                            known_seen.insert((shown.clone(), m.join(",")));
                        } else {
                            problems.push(c.text);
                        }
                    }
                }
                Err(e) => problems.push(e),
            }
            let mut krate = Crate::default();
            load_file(&mut krate, Vec::new(), root, true);
            seen.extend(krate.seen_files);
        }
        // Every source file must have been reached from a root, or the scan
        // missed a `mod` and would miss that module's references too.
        let mut all = Vec::new();
        rust_files(&package.join("src"), &mut all);
        for f in all {
            if !seen.contains(&f) {
                problems.push(format!(
                    "{} is not reached from any crate root",
                    f.display()
                ));
            }
        }
    }
    for (root, _, members) in KNOWN {
        if !known_seen.contains(&(root.to_string(), members.join(","))) {
            problems.push(format!(
                "{root}: the known cycle between {members:?} is gone: remove it from KNOWN"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "import cycles between modules (or files the scan could not follow):\n{}",
        problems.join("\n")
    );
}

/// Writes a small crate into a temporary directory and returns its cycles.
fn cycles_of(files: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (name, text) in files {
        let path = dir.path().join("src").join(name);
        fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        fs::write(&path, text).expect("write");
    }
    cycles(&dir.path().join("src/lib.rs"), "src/lib.rs")
        .expect("the scan follows every mod")
        .into_iter()
        .map(|c| c.text)
        .collect()
}

#[test]
fn a_cycle_between_top_level_modules_is_found() {
    let found = cycles_of(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        ("a.rs", "use crate::b::B;\npub struct A(B);\n"),
        ("b.rs", "pub struct B;\npub fn f(_: crate::a::A) {}\n"),
    ]);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].contains("a -> b -> a"), "{found:#?}");
    assert!(found[0].contains("src/a.rs:1 `crate::b::B`"), "{found:#?}");
}

#[test]
fn a_cycle_between_submodules_through_super_is_found() {
    let found = cycles_of(&[
        ("lib.rs", "pub mod d;\n"),
        ("d/mod.rs", "mod x;\nmod y;\npub use x::X;\n"),
        (
            "d/x.rs",
            "pub struct X;\nfn f() { let _ = super::y::g(); }\n",
        ),
        ("d/y.rs", "pub fn g() -> super::X { super::X }\n"),
    ]);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("modules of `d`: x -> y -> x"),
        "{found:#?}"
    );
}

#[test]
fn a_cycle_through_a_re_export_and_an_inline_module_is_found() {
    let found = cycles_of(&[
        (
            "lib.rs",
            "mod a;\nmod b { pub fn f() -> crate::A { crate::A } }\npub use a::A;\n",
        ),
        ("a.rs", "use crate::{b::{self, f as g}};\npub struct A;\n"),
    ]);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].contains("a -> b -> a"), "{found:#?}");
}

#[test]
fn test_code_comments_strings_and_visibilities_make_no_edge() {
    let found = cycles_of(&[
        ("lib.rs", "mod a;\nmod b;\n#[cfg(test)]\nmod testing;\n"),
        (
            "a.rs",
            "pub struct A;\n\
             // crate::b::B\n\
             /* use crate::b; */\n\
             pub(in crate::b) fn h() { let _ = \"crate::b::B\"; let _ = '\"'; }\n\
             #[cfg(test)]\nuse crate::b::B;\n\
             #[cfg(test)]\nfn t() -> crate::b::B { crate::b::B }\n\
             #[cfg(test)]\nmod tests { use crate::b::B; }\n\
             #[cfg(all(test, unix))]\nmod more { use crate::b::B; }\n",
        ),
        ("b.rs", "pub struct B;\npub fn f(_: crate::a::A) {}\n"),
        ("testing.rs", "use crate::b::B;\n"),
    ]);
    assert!(found.is_empty(), "{found:#?}");
}
