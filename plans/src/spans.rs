//! Where each field of a plan file is written: field path → line and column.
//!
//! The typed plan ([`crate::raw`]) carries no positions, so that its structs
//! stay plain and its JSON Schema stays clean. Instead the YAML event stream is
//! walked once more and every node is indexed by the same path syntax the
//! validator uses (`stages[2].canary.steps[1].setWeight`). The validator then
//! reports against paths, and positions are attached at the end.
//!
//! Aliases are not expanded here (an alias is indexed where it is written),
//! so this pass cannot be made to blow up by an alias bomb; nesting is walked
//! with an explicit stack, never recursion.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser, Span};

use crate::diagnostic::Location;

/// Positions of every mapping key and value in one YAML document.
#[derive(Debug, Default)]
pub struct SpanIndex {
    by_path: HashMap<String, Location>,
    /// Where each mapping key is written, under the path of its value.
    keys: Vec<(Location, String)>,
    /// (line, column) of every mapping key, for "is this a key".
    key_positions: std::collections::HashSet<(usize, usize)>,
    /// (position, path) of every key and value sorted by position (deeper
    /// paths last among equals), for "which field is at line:col".
    ordered: Vec<(Location, String)>,
    /// Scalar values written directly under the root mapping (`apiVersion`,
    /// `kind`), so the document kind can be checked before the typed parse.
    top_level: HashMap<String, String>,
    /// What the document's root node is.
    root: Option<RootKind>,
    /// Where nesting first went deeper than the limit given to `build`.
    too_deep: Option<Location>,
}

/// The kind of a document's root node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    Mapping,
    Sequence,
    Scalar,
}

enum Frame {
    Mapping {
        path: String,
        /// `Some(key)` once a key was read and its value is awaited.
        pending_key: Option<(String, Location)>,
    },
    Sequence {
        path: String,
        next_index: usize,
    },
}

fn location_of(span: &Span) -> Location {
    let start = span.start;
    let width = if span.end.line() == start.line() {
        span.end.index().saturating_sub(start.index())
    } else {
        1
    };
    Location {
        line: start.line(),
        column: start.col() + 1,
        width: width.max(1),
    }
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl SpanIndex {
    /// Indexes `source`. Stops quietly at the first syntax error: the parse
    /// proper reports that error, and what was indexed before it still helps.
    /// Nesting deeper than `max_depth` stops the walk and is remembered.
    pub fn build(source: &str, max_depth: usize) -> SpanIndex {
        let mut index = SpanIndex::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut documents = 0usize;
        for event in Parser::new_from_str(source) {
            let Ok((event, span)) = event else { break };
            if index.root.is_none() {
                index.root = match &event {
                    Event::MappingStart(..) => Some(RootKind::Mapping),
                    Event::SequenceStart(..) => Some(RootKind::Sequence),
                    Event::Scalar(..) | Event::Alias(..) => Some(RootKind::Scalar),
                    _ => None,
                };
            }
            if stack.len() >= max_depth
                && matches!(event, Event::MappingStart(..) | Event::SequenceStart(..))
            {
                index.too_deep = Some(location_of(&span));
                break;
            }
            match event {
                Event::DocumentStart(..) => {
                    documents += 1;
                    if documents > 1 {
                        break;
                    }
                }
                Event::Scalar(value, ..) => {
                    let path = index.node(&mut stack, &span, Some(value.as_ref()), None);
                    let is_value_under_root = stack.len() == 1
                        && matches!(
                            stack.first(),
                            Some(Frame::Mapping {
                                pending_key: None,
                                ..
                            })
                        );
                    if is_value_under_root && !path.is_empty() {
                        index.top_level.insert(path, value.into_owned());
                    }
                }
                Event::Alias(..) => {
                    index.node(&mut stack, &span, None, None);
                }
                Event::SequenceStart(..) => {
                    let path = index.node(&mut stack, &span, None, Some(()));
                    stack.push(Frame::Sequence {
                        path,
                        next_index: 0,
                    });
                }
                Event::MappingStart(..) => {
                    let path = index.node(&mut stack, &span, None, Some(()));
                    stack.push(Frame::Mapping {
                        path,
                        pending_key: None,
                    });
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        let mut ordered: Vec<(Location, String)> = index
            .by_path
            .iter()
            .map(|(path, location)| (*location, path.clone()))
            .chain(std::mem::take(&mut index.keys))
            .collect();
        ordered.sort_by(|(a, a_path), (b, b_path)| {
            (a.line, a.column, a_path.len()).cmp(&(b.line, b.column, b_path.len()))
        });
        index.ordered = ordered;
        index
    }

    /// Records one node and returns its path. A scalar in key position
    /// becomes the pending key instead (and `"?"` stands for complex keys).
    fn node(
        &mut self,
        stack: &mut [Frame],
        span: &Span,
        scalar: Option<&str>,
        collection: Option<()>,
    ) -> String {
        let here = location_of(span);
        match stack.last_mut() {
            None => {
                self.by_path.entry(String::new()).or_insert(here);
                String::new()
            }
            Some(Frame::Sequence { path, next_index }) => {
                let item = format!("{path}[{next_index}]");
                *next_index += 1;
                self.by_path.insert(item.clone(), here);
                item
            }
            Some(Frame::Mapping { path, pending_key }) => match pending_key.take() {
                None => {
                    let key = scalar.unwrap_or("?").to_string();
                    let key_path = child_path(path, &key);
                    self.keys.push((here, key_path.clone()));
                    self.key_positions.insert((here.line, here.column));
                    *pending_key = Some((key, here));
                    // A collection used as a key is indexed under the key
                    // path; its contents are not interesting to anyone.
                    key_path
                }
                Some((key, key_location)) => {
                    let value_path = child_path(path, &key);
                    // Scalars are reported where the value is; collections
                    // at their key, which is where a reader looks for them.
                    let best = if collection.is_some() {
                        key_location
                    } else {
                        here
                    };
                    self.by_path.insert(value_path.clone(), best);
                    value_path
                }
            },
        }
    }

    pub fn root(&self) -> Option<RootKind> {
        self.root
    }

    pub fn too_deep(&self) -> Option<Location> {
        self.too_deep
    }

    /// A scalar written directly under the root mapping, such as `kind`.
    pub fn top_level_scalar(&self, key: &str) -> Option<&str> {
        self.top_level.get(key).map(String::as_str)
    }

    /// Where `path` is written, or else its nearest written ancestor.
    pub fn locate(&self, path: &str) -> Option<Location> {
        let mut current = path;
        loop {
            if let Some(location) = self.by_path.get(current) {
                return Some(*location);
            }
            if current.is_empty() {
                return None;
            }
            current = parent_path(current);
        }
    }

    /// Whether a mapping key is written exactly at `location`.
    pub fn is_key_at(&self, location: Location) -> bool {
        self.key_positions
            .contains(&(location.line, location.column))
    }

    /// The innermost field written at or before `location`: the path a parse
    /// error at that position is about.
    pub fn path_at(&self, location: Location) -> Option<&str> {
        let probe = (location.line, location.column);
        let position = self
            .ordered
            .partition_point(|(at, _)| (at.line, at.column) <= probe);
        let (_, path) = self.ordered.get(position.checked_sub(1)?)?;
        Some(path)
    }
}

/// `a.b[2].c` → `a.b[2]` → `a.b` → `a` → ``.
pub fn parent_path(path: &str) -> &str {
    if path.ends_with(']')
        && let Some(open) = path.rfind('[')
    {
        return &path[..open];
    }
    match path.rfind('.') {
        Some(dot) => &path[..dot],
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "\
metadata:
  name: demo
stages:
  - name: api
    canary:
      steps:
        - setWeight: 150
";

    #[test]
    fn scalar_values_are_located_at_the_value() {
        let index = SpanIndex::build(SOURCE, 32);
        let location = index.locate("stages[0].canary.steps[0].setWeight").unwrap();
        assert_eq!((location.line, location.column, location.width), (7, 22, 3));
    }

    #[test]
    fn collections_are_located_at_their_key() {
        let index = SpanIndex::build(SOURCE, 32);
        let location = index.locate("stages[0].canary").unwrap();
        assert_eq!((location.line, location.column), (5, 5));
    }

    #[test]
    fn unknown_paths_fall_back_to_the_nearest_ancestor() {
        let index = SpanIndex::build(SOURCE, 32);
        let location = index.locate("stages[0].canary.gates[3]").unwrap();
        assert_eq!((location.line, location.column), (5, 5));
    }

    #[test]
    fn positions_map_back_to_paths() {
        let index = SpanIndex::build(SOURCE, 32);
        let at = Location {
            line: 7,
            column: 11,
            width: 1,
        };
        assert_eq!(
            index.path_at(at),
            Some("stages[0].canary.steps[0].setWeight")
        );
    }

    #[test]
    fn parent_paths() {
        assert_eq!(parent_path("a.b[2].c"), "a.b[2]");
        assert_eq!(parent_path("a.b[2]"), "a.b");
        assert_eq!(parent_path("a"), "");
    }
}
