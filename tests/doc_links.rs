//! Documentation links, checked offline: every relative link (and image) in
//! `README.md`, `docs/*.md`, `bench/README.md` and `fuzz/README.md` names a file
//! that exists inside the repository, and every `#anchor` names a heading of the
//! page it points at, slugged as GitHub does (lowercase; spaces become `-`;
//! punctuation other than `-` and `_` is dropped; a repeated heading gets `-1`,
//! `-2`, …). `http(s)://` and `mailto:` links are not followed; links inside code
//! blocks and code spans are not links.
//!
//! Repository paths written as code spans (`` `src/store/kv.rs` ``, `` `envoy/fleet.yaml` ``)
//! are relative to the repository root, wherever the page lives; they must exist too,
//! so a moved or renamed file cannot leave the documentation pointing at nothing.

// A test: a setup step that fails should fail it loudly.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The pages checked, relative to the repository root.
fn pages(root: &Path) -> Vec<PathBuf> {
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .map(|dir| {
            dir.flatten()
                .map(|entry| entry.path())
                .filter(|p| p.extension().is_some_and(|e| e == "md"))
                .collect()
        })
        .unwrap_or_default();
    docs.sort();
    pages.extend(docs);
    for extra in ["bench/README.md", "fuzz/README.md"] {
        if root.join(extra).is_file() {
            pages.push(root.join(extra));
        }
    }
    pages
}

/// GitHub's anchor for a heading's text.
fn slug(heading: &str) -> String {
    let text = strip_links(heading);
    let mut out = String::new();
    for c in text.trim().chars() {
        if c == ' ' {
            out.push('-');
        } else if c.is_alphanumeric() || c == '-' || c == '_' {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// `[text](target)` becomes `text`, and HTML tags go (as in a rendered heading).
fn strip_links(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find(['[', '<']) {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        if tail.starts_with('<') {
            match tail.find('>') {
                Some(close) => rest = &tail[close + 1..],
                None => {
                    out.push_str(tail);
                    rest = "";
                }
            }
            continue;
        }
        match tail
            .find("](")
            .and_then(|mid| link_end(&tail[mid + 2..]).map(|end| (mid, mid + 2 + end)))
        {
            Some((mid, end)) => {
                out.push_str(&tail[1..mid]);
                rest = &tail[end + 1..];
            }
            None => {
                out.push('[');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The index of the `)` that closes a link target starting at `s[0]` (nested
/// parentheses allowed), if the line has one.
fn link_end(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some(i),
            ')' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// One line with its code spans cut out: the text outside them (each span replaced by
/// `CODE`), and the spans' contents.
fn split_code_spans(line: &str) -> (String, Vec<String>) {
    let chars: Vec<char> = line.chars().collect();
    let mut text = String::new();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            text.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&c| c == '`').count();
        // The closing run: exactly `run` backticks.
        let mut j = i + run;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let n = chars[j..].iter().take_while(|&&c| c == '`').count();
                if n == run {
                    close = Some(j);
                    break;
                }
                j += n;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                spans.push(
                    chars[i + run..j]
                        .iter()
                        .collect::<String>()
                        .trim()
                        .to_string(),
                );
                text.push_str("CODE");
                i = j + run;
            }
            None => {
                text.extend(&chars[i..i + run]);
                i += run;
            }
        }
    }
    (text, spans)
}

/// A parsed page: its anchors, and its links and code-span paths with line numbers.
#[derive(Default)]
struct Page {
    anchors: HashSet<String>,
    links: Vec<(usize, String)>,
    code_paths: Vec<(usize, String)>,
}

fn parse(markdown: &str) -> Page {
    let mut page = Page::default();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut add_heading = |page: &mut Page, text: &str| {
        let base = slug(text);
        let n = seen.entry(base.clone()).or_insert(0);
        let anchor = if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        *n += 1;
        page.anchors.insert(anchor);
    };
    let mut fence: Option<(char, usize)> = None;
    let mut previous = String::new();
    for (index, line) in markdown.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        // Fenced code blocks (``` or ~~~, closed by a run at least as long).
        let fence_char = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        if let Some(c) = fence_char {
            let run = trimmed.chars().take_while(|&x| x == c).count();
            if run >= 3 && indent <= 3 {
                match fence {
                    None => {
                        fence = Some((c, run));
                        previous.clear();
                        continue;
                    }
                    Some((open, len))
                        if open == c && run >= len && trimmed[run..].trim().is_empty() =>
                    {
                        fence = None;
                        previous.clear();
                        continue;
                    }
                    _ => {}
                }
            }
        }
        if fence.is_some() {
            continue;
        }
        // ATX headings.
        let hashes = trimmed.chars().take_while(|&c| c == '#').count();
        if indent <= 3 && (1..=6).contains(&hashes) {
            let rest = &trimmed[hashes..];
            if rest.is_empty() || rest.starts_with(' ') {
                let text = rest.trim().trim_end_matches('#').trim_end();
                add_heading(&mut page, text);
            }
        }
        // Setext headings: a paragraph line underlined with `=` or `-` only.
        let underline = trimmed.trim_end();
        if !underline.is_empty()
            && (underline.chars().all(|c| c == '=') || underline.chars().all(|c| c == '-'))
            && !previous.trim().is_empty()
            && !previous.trim_start().starts_with(['#', '|', '-', '*', '>'])
        {
            add_heading(&mut page, previous.trim());
        }
        previous = line.to_string();

        let (text, spans) = split_code_spans(line);
        for span in spans {
            let is_repo_path = ["src/", "tests/", "envoy/", "bench/", "fuzz/", "docs/"]
                .iter()
                .any(|p| span.starts_with(p))
                && span
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
            if is_repo_path {
                page.code_paths.push((number, span));
            }
        }
        // Explicit anchors: <a name="…"> or id="…".
        for key in ["name=\"", "id=\""] {
            for (at, _) in text.match_indices(key) {
                let value = &text[at + key.len()..];
                if let Some(end) = value.find('"') {
                    page.anchors.insert(value[..end].to_string());
                }
            }
        }
        // Inline links and images: [text](target "title").
        let mut rest = text.as_str();
        while let Some(mid) = rest.find("](") {
            let target = &rest[mid + 2..];
            match link_end(target) {
                Some(end) => {
                    page.links.push((number, target[..end].to_string()));
                    rest = &target[end + 1..];
                }
                None => break,
            }
        }
        // Reference definitions: [label]: target
        if indent <= 3 && trimmed.starts_with('[') {
            if let Some(close) = text.trim_start().find("]:") {
                let target = text.trim_start()[close + 2..].trim();
                if !target.is_empty() {
                    page.links.push((number, target.to_string()));
                }
            }
        }
        // HTML links and images.
        for key in ["href=\"", "src=\""] {
            for (at, _) in text.match_indices(key) {
                let value = &text[at + key.len()..];
                if let Some(end) = value.find('"') {
                    page.links.push((number, value[..end].to_string()));
                }
            }
        }
    }
    page
}

/// Every broken link of `files` (paths inside `root`), as `page:line: what`.
fn check(root: &Path, files: &[PathBuf]) -> Vec<String> {
    let root = root
        .canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let mut parsed: HashMap<PathBuf, Page> = HashMap::new();
    let mut load = |path: &Path| -> Option<HashSet<String>> {
        let key = path.canonicalize().ok()?;
        if !parsed.contains_key(&key) {
            let text = fs::read_to_string(&key).ok()?;
            parsed.insert(key.clone(), parse(&text));
        }
        parsed.get(&key).map(|p| p.anchors.clone())
    };
    let mut errors = Vec::new();
    for file in files {
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        let text = match fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                errors.push(format!("{shown}: cannot read: {e}"));
                continue;
            }
        };
        let page = parse(&text);
        let dir = file.parent().unwrap_or(&root);
        for (line, raw) in &page.links {
            let mut target = raw.trim();
            if let Some(inner) = target.strip_prefix('<') {
                target = inner.split('>').next().unwrap_or("");
            } else {
                target = target.split_whitespace().next().unwrap_or("");
            }
            let lower = target.to_ascii_lowercase();
            if lower.starts_with("http://")
                || lower.starts_with("https://")
                || lower.starts_with("mailto:")
            {
                continue;
            }
            if target.is_empty() {
                errors.push(format!("{shown}:{line}: empty link target"));
                continue;
            }
            if target.contains("://") {
                errors.push(format!(
                    "{shown}:{line}: `{target}`: only http(s) links may leave the repository"
                ));
                continue;
            }
            let (path_part, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target, None),
            };
            let path_part = path_part.replace("%20", " ");
            let mut resolved = if path_part.is_empty() {
                file.clone()
            } else if let Some(from_root) = path_part.strip_prefix('/') {
                root.join(from_root)
            } else {
                dir.join(&path_part)
            };
            let Ok(canonical) = resolved.canonicalize() else {
                errors.push(format!("{shown}:{line}: `{target}`: no such file"));
                continue;
            };
            if !canonical.starts_with(&root) {
                errors.push(format!(
                    "{shown}:{line}: `{target}`: outside the repository"
                ));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if canonical.is_dir() {
                resolved = canonical.join("README.md");
            } else {
                resolved = canonical;
            }
            let is_markdown = resolved.extension().is_some_and(|e| e == "md");
            if !is_markdown {
                // GitHub's line anchors of source files: #L10 or #L10-L20.
                let is_line = anchor.split('-').all(|part| {
                    part.len() > 1
                        && part.starts_with('L')
                        && part[1..].chars().all(|c| c.is_ascii_digit())
                });
                if !is_line {
                    errors.push(format!("{shown}:{line}: `{target}`: anchor `#{anchor}` in a file that is not Markdown"));
                }
                continue;
            }
            match load(&resolved) {
                Some(anchors) if anchors.contains(anchor) => {}
                Some(_) => errors.push(format!(
                    "{shown}:{line}: `{target}`: no heading with anchor `#{anchor}`"
                )),
                None => errors.push(format!(
                    "{shown}:{line}: `{target}`: cannot read the target page"
                )),
            }
        }
        for (line, path) in &page.code_paths {
            if !root.join(path).exists() {
                errors.push(format!(
                    "{shown}:{line}: `{path}`: names a repository path that does not exist"
                ));
            }
        }
    }
    errors
}

#[test]
fn every_relative_link_and_anchor_in_the_documentation_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pages = pages(root);
    assert!(pages.len() >= 2, "no documentation pages found: {pages:?}");
    let errors = check(root, &pages);
    assert!(
        errors.is_empty(),
        "broken documentation links:\n{}",
        errors.join("\n")
    );
}

#[test]
fn slugs_are_githubs() {
    assert_eq!(
        slug("Running several Envoys (fleet mode)"),
        "running-several-envoys-fleet-mode"
    );
    assert_eq!(
        slug("JWT access tokens (RFC 9068)"),
        "jwt-access-tokens-rfc-9068"
    );
    assert_eq!(
        slug("Configuration: token endpoint (`root_id: oauth2_token`)"),
        "configuration-token-endpoint-root_id-oauth2_token"
    );
    assert_eq!(
        slug("`GET` / `POST /authorize` (RFC 6749 §4.1, §4.2; RFC 7636)"),
        "get--post-authorize-rfc-6749-41-42-rfc-7636"
    );
    assert_eq!(
        slug("2. Lockout of a legitimate client or user"),
        "2-lockout-of-a-legitimate-client-or-user"
    );
    assert_eq!(slug("Speed: `make bench`"), "speed-make-bench");
    assert_eq!(
        slug("See [the store](store.md) <em>now</em>"),
        "see-the-store-now"
    );
}

/// The checker finds what it must, and nothing else, on a sample tree.
#[test]
fn the_checker_fails_on_broken_links() {
    let dir = std::env::temp_dir().join(format!("doc_links_selftest_{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("docs")).unwrap();
    fs::create_dir_all(dir.join("src")).unwrap();
    fs::write(dir.join("src/here.rs"), "").unwrap();
    fs::write(dir.join("picture.svg"), "").unwrap();
    fs::write(
        dir.join("README.md"),
        "# Title\n\
         \n\
         ## Same\n\
         ## Same\n\
         ## `GET` / `POST /authorize` (RFC 6749 §4.1)\n\
         \n\
         [ok](docs/page.md#other-heading) [ok](#same-1) [ok](#get--post-authorize-rfc-6749-41)\n\
         [bad anchor](#same-2) and [bad anchor elsewhere](docs/page.md#nope)\n\
         [missing file](docs/missing.md) ![missing image](missing.svg) ![ok](picture.svg)\n\
         [ok](https://example.com/#whatever) [ok](src/here.rs) [ok](src/here.rs#L3-L5)\n\
         [bad line anchor](src/here.rs#section) [outside](../../etc/passwd)\n\
         `src/here.rs` exists, `src/gone.rs` does not; `[not a link](nowhere.md)`\n\
         \n\
         ```sh\n\
         [not a link either](nowhere.md) `src/gone-too.rs`\n\
         ```\n\
         [defined]: docs/undefined.md\n",
    )
    .unwrap();
    fs::write(
        dir.join("docs/page.md"),
        "Other heading\n\
         -------------\n\
         \n\
         Back [up](../README.md#title), [wrong](../README.md#titel), [self](page.md#other-heading).\n",
    )
    .unwrap();
    let errors = check(&dir, &[dir.join("README.md"), dir.join("docs/page.md")]);
    let _ = fs::remove_dir_all(&dir);
    let expected = [
        "README.md:8: `#same-2`: no heading with anchor `#same-2`",
        "README.md:8: `docs/page.md#nope`: no heading with anchor `#nope`",
        "README.md:9: `docs/missing.md`: no such file",
        "README.md:9: `missing.svg`: no such file",
        "README.md:11: `src/here.rs#section`: anchor `#section` in a file that is not Markdown",
        "README.md:11: `../../etc/passwd`: outside the repository",
        "README.md:17: `docs/undefined.md`: no such file",
        "README.md:12: `src/gone.rs`: names a repository path that does not exist",
        "docs/page.md:4: `../README.md#titel`: no heading with anchor `#titel`",
    ];
    assert_eq!(errors, expected, "got:\n{}", errors.join("\n"));
}
