//! The extending guide (`docs/extending.md`) shows the code in the tree: every code
//! block captioned "In `path`:" is in that file, line for line (indentation aside),
//! its parts — separated by `// …` lines — in order. So the guide cannot drift from
//! the code it teaches.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::path::Path;

/// The captioned code blocks of `markdown`: (path, lines).
fn captioned_blocks(markdown: &str) -> Vec<(String, Vec<String>)> {
    let mut blocks = Vec::new();
    let mut caption: Option<String> = None;
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            let code: Vec<String> =
                lines.by_ref().take_while(|l| !l.trim().starts_with("```")).map(str::to_owned).collect();
            if let Some(path) = caption.take() {
                blocks.push((path, code));
            }
        } else if let Some(path) = trimmed.strip_prefix("In `").and_then(|rest| rest.strip_suffix("`:")) {
            caption = Some(path.to_owned());
        } else if !trimmed.is_empty() {
            caption = None;
        }
    }
    blocks
}

#[test]
fn the_guides_code_is_the_code_in_the_tree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let guide = std::fs::read_to_string(root.join("docs/extending.md")).unwrap();
    let blocks = captioned_blocks(&guide);
    assert!(blocks.len() >= 29, "the guide's captioned blocks were found: {}", blocks.len());
    for (path, code) in blocks {
        let source = std::fs::read_to_string(root.join(&path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        let source: Vec<&str> = source.lines().map(str::trim).collect();
        let mut from = 0;
        for part in code.split(|line| line.trim() == "// …") {
            let part: Vec<&str> = part.iter().map(|line| line.trim()).collect();
            let found = (from..source.len()).find(|&i| source.get(i..i + part.len()) == Some(&part[..]));
            let Some(at) = found else {
                panic!("docs/extending.md shows code that is not in {path} (any more):\n{}", part.join("\n"));
            };
            from = at + part.len();
        }
    }
}
