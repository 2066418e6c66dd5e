//! The loader: saphyr-parser's events into a [`Node`] tree, with the
//! position of every node and the style of every scalar, which a
//! serde-based YAML library throws away.
//!
//! Beyond building the tree it does what a YAML document's reader expects:
//! aliases are expanded (within a budget, so that a "billion laughs"
//! document is refused rather than eating the machine), a duplicate key is
//! an error, and merge keys (`<<: *base`) are applied, explicit keys
//! winning over merged ones. A syntax error inside an unclosed `[` or `{`
//! also names where that bracket opened: the parser only sees the problem
//! where the file ends, the person needs the line they forgot to close.

use std::collections::HashSet;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};

use super::node::{Data, Mark, Node, Scalar, Style};

/// A document that is not YAML, or not one this loader accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    pub mark: Mark,
    /// What is wrong, without the position.
    pub message: String,
    /// The flow collection (`sequence` or `mapping`) left open, and where.
    pub unclosed: Option<(&'static str, Mark)>,
}

impl YamlError {
    fn new(mark: Mark, message: impl Into<String>) -> YamlError {
        YamlError {
            mark,
            message: message.into(),
            unclosed: None,
        }
    }

    /// The message for a reader that shows the line itself.
    pub fn describe(&self) -> String {
        match self.unclosed {
            Some((what, at)) => format!(
                "{}; the flow {what} opened at {at} is not closed",
                self.message
            ),
            None => self.message.clone(),
        }
    }
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.message, self.mark)?;
        if let Some((what, at)) = self.unclosed {
            write!(f, "; the flow {what} opened at {at} is not closed")?;
        }
        Ok(())
    }
}

impl std::error::Error for YamlError {}

/// How many nodes aliases may copy in one document: far above any real
/// configuration, far below what exponential aliasing reaches.
const ALIAS_BUDGET: usize = 1_000_000;

/// How deep collections may nest: the tree is walked recursively (to JSON,
/// by serde), so a hostile `[[[[...` must stop here, not overflow the stack.
const MAX_DEPTH: usize = 256;

/// Parses a single-document YAML text. An empty text (or one with only
/// comments or `---`) is a null node at line 1.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let mut loader = Loader {
        text,
        stack: Vec::new(),
        anchors: Vec::new(),
        budget: ALIAS_BUDGET,
        docs: Vec::new(),
    };
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| loader.scan_error(&e))?;
        loader.event(event, span)?;
    }
    let mut docs = loader.docs;
    match docs.len() {
        0 => Ok(Node {
            mark: Mark { line: 1, col: 1 },
            data: Data::Scalar(Scalar {
                text: String::new(),
                style: Style::Plain,
                tag: None,
            }),
        }),
        1 => Ok(docs.remove(0)),
        _ => Err(YamlError::new(
            docs[1].mark,
            "more than one YAML document in the file",
        )),
    }
}

/// A collection being read.
struct Frame {
    mark: Mark,
    anchor: usize,
    kind: FrameKind,
}

enum FrameKind {
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>, Option<Node>),
}

struct Loader<'t> {
    text: &'t str,
    stack: Vec<Frame>,
    /// Anchored nodes by anchor id, with their size in nodes.
    anchors: Vec<Option<(Node, usize)>>,
    budget: usize,
    docs: Vec<Node>,
}

fn mark_of(span: Span) -> Mark {
    Mark {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

impl Loader<'_> {
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), YamlError> {
        let mark = mark_of(span);
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted => Style::SingleQuoted,
                    ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                    ScalarStyle::Literal | ScalarStyle::Folded => Style::Block,
                };
                let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
                let node = Node {
                    mark,
                    data: Data::Scalar(Scalar {
                        text: text.into_owned(),
                        style,
                        tag,
                    }),
                };
                self.finish(node, anchor)
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
                Err(YamlError::new(
                    mark,
                    format!("collections nested deeper than {MAX_DEPTH} levels"),
                ))
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Frame {
                    mark,
                    anchor,
                    kind: FrameKind::Seq(Vec::new()),
                });
                Ok(())
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame {
                    mark,
                    anchor,
                    kind: FrameKind::Map(Vec::new(), None),
                });
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return Err(YamlError::new(mark, "unbalanced collection end"));
                };
                let data = match frame.kind {
                    FrameKind::Seq(items) => Data::Seq(items),
                    FrameKind::Map(entries, _) => Data::Map(merge(check_keys(entries)?)?),
                };
                let node = Node {
                    mark: frame.mark,
                    data,
                };
                self.finish(node, frame.anchor)
            }
            Event::Alias(id) => {
                let Some(Some((node, size))) = self.anchors.get(id) else {
                    return Err(YamlError::new(mark, "alias to an unknown anchor"));
                };
                if *size > self.budget {
                    return Err(YamlError::new(mark, "aliases expand to too many nodes"));
                }
                self.budget -= size;
                // The copy points at the alias, where the reader used it.
                let node = Node {
                    mark,
                    data: node.data.clone(),
                };
                self.finish(node, 0)
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd => Ok(()),
        }
    }

    /// A complete node: remember its anchor, hand it to its parent.
    fn finish(&mut self, node: Node, anchor: usize) -> Result<(), YamlError> {
        if anchor > 0 {
            if self.anchors.len() <= anchor {
                self.anchors.resize(anchor + 1, None);
            }
            self.anchors[anchor] = Some((node.clone(), size(&node)));
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame {
                kind: FrameKind::Seq(items),
                ..
            }) => items.push(node),
            Some(Frame {
                kind: FrameKind::Map(entries, key),
                ..
            }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
        Ok(())
    }

    /// The parser's error, with where the innermost unclosed flow
    /// collection opened.
    fn scan_error(&self, e: &ScanError) -> YamlError {
        let mark = Mark {
            line: e.marker().line(),
            col: e.marker().col() + 1,
        };
        let mut error = YamlError::new(mark, e.info());
        if let Some(open) = self.stack.last() {
            let opener = self
                .text
                .lines()
                .nth(open.mark.line.saturating_sub(1))
                .and_then(|l| l.chars().nth(open.mark.col.saturating_sub(1)));
            let what = match opener {
                Some('[') => Some("sequence"),
                Some('{') => Some("mapping"),
                _ => None,
            };
            if let Some(what) = what {
                if open.mark.line != mark.line {
                    error.unclosed = Some((what, open.mark));
                }
            }
        }
        error
    }
}

/// How many nodes `node` holds, itself included.
fn size(node: &Node) -> usize {
    match &node.data {
        Data::Scalar(_) => 1,
        Data::Seq(items) => 1 + items.iter().map(size).sum::<usize>(),
        Data::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| size(k) + size(v))
                .sum::<usize>()
        }
    }
}

/// Refuses a key written twice in one mapping (scalar keys compare by
/// text, so `1` and `"1"` clash too: they would as JSON keys).
fn check_keys(entries: Vec<(Node, Node)>) -> Result<Vec<(Node, Node)>, YamlError> {
    let mut seen = HashSet::with_capacity(entries.len());
    for (k, _) in &entries {
        if let Some(s) = k.scalar() {
            if !seen.insert(s.text.as_str()) {
                return Err(YamlError::new(
                    k.mark,
                    format!("duplicate entry with key \"{}\"", s.text),
                ));
            }
        }
    }
    Ok(entries)
}

/// Keys as [`check_keys`] compares them.
fn same_key(a: &Node, b: &Node) -> bool {
    match (a.scalar(), b.scalar()) {
        (Some(x), Some(y)) => x.text == y.text,
        _ => a.data == b.data,
    }
}

fn is_merge_key(k: &Node) -> bool {
    k.scalar()
        .is_some_and(|s| s.style == Style::Plain && s.text == "<<")
}

/// Applies `<<` merge keys: the entries of the merged mapping (or of each
/// mapping of a list, the first winning) that the mapping does not set.
fn merge(entries: Vec<(Node, Node)>) -> Result<Vec<(Node, Node)>, YamlError> {
    if !entries.iter().any(|(k, _)| is_merge_key(k)) {
        return Ok(entries);
    }
    let (sources, mut out): (Vec<_>, Vec<_>) =
        entries.into_iter().partition(|(k, _)| is_merge_key(k));
    for (_, source) in sources {
        let maps = match source.data {
            Data::Map(m) => vec![m],
            Data::Seq(items) => items
                .into_iter()
                .map(|n| match n.data {
                    Data::Map(m) => Ok(m),
                    _ => Err(YamlError::new(n.mark, "expected a mapping for merging")),
                })
                .collect::<Result<_, _>>()?,
            Data::Scalar(_) => {
                return Err(YamlError::new(
                    source.mark,
                    "expected a mapping or list of mappings for merging",
                ))
            }
        };
        for m in maps {
            for (k, v) in m {
                let present = out.iter().any(|(o, _): &(Node, Node)| same_key(o, &k));
                if !present {
                    out.push((k, v));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn json(text: &str) -> serde_json::Value {
        parse(text).unwrap().to_json()
    }

    #[test]
    fn nodes_carry_line_column_and_style() {
        let n = parse("# c\nresources:\n  - file: /a\n    mode: '0644'\n  - exec: b\n").unwrap();
        let items = match &n.get("resources").unwrap().data {
            Data::Seq(items) => items.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(items[0].mark, Mark { line: 3, col: 5 });
        assert_eq!(items[1].mark.line, 5);
        let (k, v) = items[0].entry("mode").unwrap();
        assert_eq!(k.mark, Mark { line: 4, col: 5 });
        assert_eq!(v.scalar().unwrap().style, Style::SingleQuoted);
        assert_eq!(v.to_json(), json!("0644"));
    }

    #[test]
    fn empty_documents_are_null() {
        for t in ["", "---\n", "# only a comment\n"] {
            assert!(parse(t).unwrap().is_null(), "{t:?}");
        }
        let e = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(e.message.contains("more than one"), "{e}");
    }

    #[test]
    fn aliases_expand_and_merge_keys_apply() {
        assert_eq!(
            json("base: &b {x: 1, y: 1}\nnode:\n  <<: *b\n  y: 2\nl: [*b]\n"),
            json!({"base": {"x": 1, "y": 1}, "node": {"x": 1, "y": 2}, "l": [{"x": 1, "y": 1}]})
        );
        assert_eq!(
            json("a: &a {x: 1}\nb: &b {x: 2, z: 3}\nc: {<<: [*a, *b]}\n")["c"],
            json!({"x": 1, "z": 3})
        );
        assert!(parse("a: &a 1\nb: {<<: *a}\n").is_err());
        // Quoted, `<<` is an ordinary key.
        assert_eq!(json("'<<': 1\n"), json!({"<<": 1}));
    }

    #[test]
    fn duplicate_keys_are_refused_where_written() {
        let e = parse("a: 1\nb:\n  c: 1\n  c: 2\n").unwrap_err();
        assert_eq!(e.mark, Mark { line: 4, col: 3 });
        assert!(e.message.contains("duplicate entry with key \"c\""), "{e}");
    }

    #[test]
    fn exponential_aliases_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("too many nodes"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        // The parser has a limit of its own, a little lower than ours.
        let e = parse(&"[".repeat(100_000)).unwrap_err();
        assert!(e.message.contains("recursion limit"), "{e}");
        let e = parse(&"- ".repeat(100_000)).unwrap_err();
        assert!(
            e.message.contains("recursion limit") || e.message.contains("nested deeper"),
            "{e}"
        );
        assert!(parse(&format!("{}{}", "[".repeat(200), "]".repeat(200))).is_ok());
    }

    #[test]
    fn an_unclosed_flow_collection_is_named_where_it_opened() {
        let e = parse("resources:\n  - file: /x\n    content: [unclosed\n").unwrap_err();
        assert_eq!(e.mark.line, 4);
        assert_eq!(e.unclosed, Some(("sequence", Mark { line: 3, col: 14 })));
        assert!(
            e.to_string().ends_with(
                "at line 4 column 1; the flow sequence opened at line 3 column 14 is not closed"
            ),
            "{e}"
        );
        let e = parse("motd: hello\nlist:\n  - a\n - b\n").unwrap_err();
        assert_eq!(e.mark.line, 4);
        assert!(e.message.contains("did not find expected key"), "{e}");
        assert_eq!(e.unclosed, None, "{e}");
    }
}
