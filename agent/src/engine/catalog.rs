//! The catalog: compiled resources and the graph that orders them. The
//! graph part ([`Graph`]) knows only indices; [`Catalog`] ties it to
//! resources, metaparameters and their origin.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use resources::{Location, Resource, ResourceId};

use crate::engine::compile_error::{CompileError, CompileErrorKind};

/// A directed graph over `0..n` with a stable topological order: among the
/// nodes that are ready, the one declared first goes first.
/// Edges are kept as sorted lists of `u32`: most nodes have one or two,
/// and a catalog of 100k resources should not cost a tree node each.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    n: usize,
    succ: Vec<Vec<u32>>,
    pred: Vec<Vec<u32>>,
}

/// Inserts `x` into the sorted list `v` unless present.
fn insert_sorted(v: &mut Vec<u32>, x: usize) {
    let x = u32::try_from(x).expect("fewer than 2^32 resources");
    if let Err(pos) = v.binary_search(&x) {
        v.insert(pos, x);
    }
}

impl Graph {
    pub fn new(n: usize) -> Self {
        Graph {
            n,
            succ: vec![Vec::new(); n],
            pred: vec![Vec::new(); n],
        }
    }

    /// `from` must run before `to`.
    pub fn add_edge(&mut self, from: usize, to: usize) {
        if from != to {
            insert_sorted(&mut self.succ[from], to);
            insert_sorted(&mut self.pred[to], from);
        }
    }

    pub fn predecessors(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.pred[i].iter().map(|&p| p as usize)
    }

    pub fn edges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.succ
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.iter().map(move |&j| (i, j as usize)))
    }

    /// The order, or one cycle (as a list of nodes, first repeated at the end).
    pub fn toposort(&self) -> Result<Vec<usize>, Vec<usize>> {
        let mut indegree: Vec<usize> = self.pred.iter().map(|p| p.len()).collect();
        let mut ready: BTreeSet<usize> = (0..self.n).filter(|&i| indegree[i] == 0).collect();
        let mut order = Vec::with_capacity(self.n);
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &j in &self.succ[i] {
                let j = j as usize;
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    ready.insert(j);
                }
            }
        }
        if order.len() == self.n {
            return Ok(order);
        }
        Err(self.find_cycle(&indegree))
    }

    /// Walks backwards from a node left with predecessors until a node repeats.
    fn find_cycle(&self, indegree: &[usize]) -> Vec<usize> {
        let start = (0..self.n)
            .find(|&i| indegree[i] > 0)
            .expect("a node is left");
        let mut path = vec![start];
        let mut seen = HashMap::from([(start, 0usize)]);
        let mut cur = start;
        loop {
            let next = self.pred[cur]
                .iter()
                .map(|&p| p as usize)
                .find(|&p| indegree[p] > 0)
                .expect("cycle member");
            if let Some(&pos) = seen.get(&next) {
                let mut cycle: Vec<usize> = path[pos..].to_vec();
                cycle.push(next);
                cycle.reverse(); // predecessors were followed: turn into run order
                return cycle;
            }
            seen.insert(next, path.len());
            path.push(next);
            cur = next;
        }
    }
}

/// Metaparameters of a resource, references already resolved to ids.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    pub require: Vec<ResourceId>,
    pub before: Vec<ResourceId>,
    pub notify: Vec<ResourceId>,
    pub subscribe: Vec<ResourceId>,
    pub tags: Vec<String>,
    pub noop: bool,
    /// `skip_if`: when it renders to a reason, the resource is left alone
    /// this run (not checked), with the reason as a notice.
    pub skip_if: Option<String>,
}

/// No metaparameters: what most resources have.
static NO_META: Meta = Meta {
    require: Vec::new(),
    before: Vec::new(),
    notify: Vec::new(),
    subscribe: Vec::new(),
    tags: Vec::new(),
    noop: false,
    skip_if: None,
};

/// One resource of the catalog.
pub struct Entry {
    pub id: ResourceId,
    pub resource: Box<dyn Resource>,
    /// `None` when there are no metaparameters (no allocation).
    meta: Option<Box<Meta>>,
    pub location: Location,
}

impl Entry {
    pub fn new(
        id: ResourceId,
        resource: Box<dyn Resource>,
        meta: Meta,
        location: Location,
    ) -> Self {
        let meta = (meta != NO_META).then(|| Box::new(meta));
        Entry {
            id,
            resource,
            meta,
            location,
        }
    }

    pub fn meta(&self) -> &Meta {
        self.meta.as_deref().unwrap_or(&NO_META)
    }

    /// True when `tag` is one of this resource's tags: those its `tags:`
    /// give, and, as Puppet tags every resource with its type and class,
    /// its type name and the name of the manifest declaring it
    /// (`profiles/stash.yaml` → `stash`). Case-blind, as Puppet's.
    pub fn has_tag(&self, tag: &str) -> bool {
        let manifest = self
            .location
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        tag.eq_ignore_ascii_case(&self.id.type_name)
            || tag.eq_ignore_ascii_case(&manifest)
            || self.meta().tags.iter().any(|t| t.eq_ignore_ascii_case(tag))
    }
}

/// Which resources a run with `--tags` / `--skip_tags` manages: those with
/// one of `tags` (all when empty) and what they need (their predecessors,
/// transitively, as Puppet applies what a tagged resource requires), less
/// those with one of `skip_tags`. `None` when both are empty.
pub fn select(catalog: &Catalog, tags: &[String], skip_tags: &[String]) -> Option<Vec<bool>> {
    if tags.is_empty() && skip_tags.is_empty() {
        return None;
    }
    let n = catalog.entries.len();
    let mut chosen = vec![tags.is_empty(); n];
    if !tags.is_empty() {
        let mut todo: Vec<usize> = (0..n)
            .filter(|&i| tags.iter().any(|t| catalog.entries[i].has_tag(t)))
            .collect();
        while let Some(i) = todo.pop() {
            if !std::mem::replace(&mut chosen[i], true) {
                todo.extend(catalog.graph.predecessors(i).filter(|&p| !chosen[p]));
            }
        }
    }
    for (i, e) in catalog.entries.iter().enumerate() {
        if skip_tags.iter().any(|t| e.has_tag(t)) {
            chosen[i] = false;
        }
    }
    Some(chosen)
}

/// Compiled, ordered resources.
pub struct Catalog {
    pub entries: Vec<Entry>,
    pub graph: Graph,
    /// `refresh[i]`: entries to refresh when entry `i` changes (sorted).
    pub refresh: Vec<Vec<u32>>,
    pub order: Vec<usize>,
}

impl Catalog {
    /// Orders `entries`: unique ids, metaparameter edges, autorequires,
    /// toposort. Every problem found is returned, not just the first.
    pub fn build(entries: Vec<Entry>) -> Result<Catalog, Vec<CompileError>> {
        let mut errors = Vec::new();
        let mut index: HashMap<ResourceId, usize> = HashMap::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            if let Some(&first) = index.get(&e.id) {
                errors.push(CompileError::new(
                    e.location.clone(),
                    CompileErrorKind::Duplicate {
                        id: e.id.clone(),
                        first: entries[first].location.clone(),
                    },
                ));
            } else {
                index.insert(e.id.clone(), i);
            }
        }
        let mut graph = Graph::new(entries.len());
        let mut refresh = vec![Vec::new(); entries.len()];
        for (i, e) in entries.iter().enumerate() {
            let mut resolve = |r: &ResourceId, relation: &'static str| -> Option<usize> {
                let found = index.get(r).copied();
                if found.is_none() {
                    errors.push(
                        CompileError::new(
                            e.location.clone(),
                            CompileErrorKind::UnknownReference {
                                id: e.id.clone(),
                                relation,
                                target: r.clone(),
                            },
                        )
                        .hint(
                            "declare that resource in this node's manifests, or fix the \
                             reference: `type[title]`, the title as the resource spells it",
                        ),
                    );
                }
                found
            };
            let meta = e.meta();
            for r in &meta.require {
                if let Some(j) = resolve(r, "requires") {
                    graph.add_edge(j, i);
                }
            }
            for r in &meta.subscribe {
                if let Some(j) = resolve(r, "subscribes to") {
                    graph.add_edge(j, i);
                    insert_sorted(&mut refresh[j], i);
                }
            }
            for r in &meta.before {
                if let Some(j) = resolve(r, "comes before") {
                    graph.add_edge(i, j);
                }
            }
            for r in &meta.notify {
                if let Some(j) = resolve(r, "notifies") {
                    graph.add_edge(i, j);
                    insert_sorted(&mut refresh[i], j);
                }
            }
            for r in e.resource.autorequires() {
                if let Some(&j) = index.get(&r) {
                    graph.add_edge(j, i);
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        match graph.toposort() {
            Ok(order) => Ok(Catalog {
                entries,
                graph,
                refresh,
                order,
            }),
            Err(cycle) => {
                // The cycle ends where it started: each member once.
                let members = &cycle[..cycle.len().saturating_sub(1)];
                let cycle = members
                    .iter()
                    .map(|&i| (entries[i].id.clone(), entries[i].location.clone()))
                    .collect();
                let error = CompileError::nowhere(CompileErrorKind::DependencyCycle { cycle });
                Err(vec![error.hint(
                    "remove one of the require/before/notify/subscribe edges",
                )])
            }
        }
    }

    /// The graph in Graphviz dot.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph catalog {\n  rankdir=LR;\n");
        for e in &self.entries {
            let _ = writeln!(out, "  \"{}\";", escape_dot(&e.id.to_string()));
        }
        for (i, j) in self.graph.edges() {
            let style = if self.refresh[i].binary_search(&(j as u32)).is_ok() {
                " [style=dashed,label=\"refresh\"]"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\"{style};",
                escape_dot(&self.entries[i].id.to_string()),
                escape_dot(&self.entries[j].id.to_string())
            );
        }
        out.push_str("}\n");
        out
    }
}

fn escape_dot(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_order_and_cycle() {
        let mut g = Graph::new(4);
        g.add_edge(2, 0);
        assert_eq!(g.toposort().unwrap(), vec![1, 2, 0, 3]);
        g.add_edge(0, 3);
        g.add_edge(3, 2);
        let cycle = g.toposort().unwrap_err();
        assert_eq!(cycle.first(), cycle.last());
        let members: BTreeSet<_> = cycle.iter().copied().collect();
        assert_eq!(members, BTreeSet::from([0, 2, 3]));
        // consecutive members are real edges
        for w in cycle.windows(2) {
            assert!(g.succ[w[0]].contains(&(w[1] as u32)), "{cycle:?}");
        }
    }
}
