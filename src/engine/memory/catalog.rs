//! The catalog: defined metrics, the tree of path names, and the registry
//! that maps series handles to (metric, node) and to their data.
//!
//! Handles are dense indices in creation order, so replaying the same
//! definitions in the same order gives the same handles. Children are kept
//! in name order, which makes every walk of the tree (and so every
//! aggregation) independent of the order in which series were created.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;

use crate::engine::error::EngineError;
use crate::engine::memory::chunks::{self, CHUNK_SLOTS};
use crate::engine::memory::series::SeriesData;
use crate::engine::model::metric::{Aggregation, MetricDef};
use crate::engine::model::names::display_path;

pub type SeriesId = u32;
pub type MetricId = u32;
type NodeId = u32;

const ROOT: NodeId = 0;

struct Node {
    /// Shared with the parent's `children` key: one allocation per name.
    name: Arc<str>,
    parent: NodeId,
    children: BTreeMap<Arc<str>, NodeId>,
    /// (metric, series) pairs stored at this node; a handful at most.
    series: Vec<(MetricId, SeriesId)>,
}

pub struct SeriesEntry {
    pub metric: MetricId,
    pub frequency: i64,
    node: NodeId,
    pub data: Arc<RwLock<SeriesData>>,
    /// The address of the chunk the series last wrote one value into: a
    /// prefetch hint for tick writes (see `write_each`), never
    /// dereferenced, so a stale value is harmless.
    pub hot_chunk: AtomicUsize,
}

/// Writes into the series at positions `range` of `series`, in order, each
/// under its series' lock (a series listed twice in a row takes it once).
/// `write(data, i)` writes element `i` and returns the address of the chunk
/// it wrote last (as `SeriesData::write_one` does), kept as the series'
/// prefetch hint; element `i` writes first at slot `slot(i)`.
///
/// Each element is a series' lock and fields, then a line of its chunk:
/// cache (and TLB) misses on a 10,000-series tick, which dominate it.
/// Prefetching them for the element `AHEAD` places on overlaps them.
pub fn write_each(
    entries: &[SeriesEntry],
    series: &[SeriesId],
    range: Range<usize>,
    slot: impl Fn(usize) -> i64,
    mut write: impl FnMut(&mut SeriesData, usize) -> usize,
) {
    const AHEAD: usize = 8;
    let end = range.end;
    let prefetch = |i: usize| {
        if i < end {
            let entry = &entries[series[i] as usize];
            // The lock and the series' fields can straddle two cache
            // lines: ask for both.
            let data = Arc::as_ptr(&entry.data) as usize;
            chunks::prefetch(data);
            chunks::prefetch(data + std::mem::size_of::<RwLock<SeriesData>>() - 1);
            let chunk = entry.hot_chunk.load(Ordering::Relaxed);
            if chunk != 0 {
                let offset = slot(i).rem_euclid(CHUNK_SLOTS as i64) as usize;
                chunks::prefetch(chunk + offset * std::mem::size_of::<f32>());
            }
        }
    };
    (range.start..range.start + AHEAD).for_each(prefetch);
    let mut i = range.start;
    while i < end {
        let id = series[i];
        let entry = &entries[id as usize];
        let mut data = entry.data.write();
        while i < end && series[i] == id {
            prefetch(i + AHEAD);
            entry
                .hot_chunk
                .store(write(&mut data, i), Ordering::Relaxed);
            i += 1;
        }
    }
}

#[derive(Default)]
pub struct Catalog {
    metrics: Vec<MetricDef>,
    metric_ids: HashMap<String, MetricId>,
    nodes: Vec<Node>,
    series: Vec<SeriesEntry>,
}

impl Catalog {
    pub fn new() -> Self {
        Catalog {
            nodes: vec![Node {
                name: "".into(),
                parent: ROOT,
                children: BTreeMap::new(),
                series: Vec::new(),
            }],
            ..Default::default()
        }
    }

    pub fn metrics(&self) -> &[MetricDef] {
        &self.metrics
    }

    pub fn metric_id(&self, name: &str) -> Result<MetricId, EngineError> {
        self.metric_ids
            .get(name)
            .copied()
            .ok_or_else(|| EngineError::UnknownMetric {
                name: name.to_owned(),
            })
    }

    pub fn metric(&self, id: MetricId) -> &MetricDef {
        &self.metrics[id as usize]
    }

    /// Whether `def` is already defined identically (`Ok(true)`), new
    /// (`Ok(false)`), or conflicts with an existing definition.
    pub fn check_definition(&self, def: &MetricDef) -> Result<bool, EngineError> {
        let Some(&id) = self.metric_ids.get(&def.name) else {
            return Ok(false);
        };
        let existing = &self.metrics[id as usize];
        if existing == def {
            return Ok(true);
        }
        let settings = |d: &MetricDef| {
            let unit = d
                .unit
                .as_ref()
                .map_or("None".to_owned(), |u| format!("{u:?}"));
            format!(
                "frequency {}, aggregation {:?}, unit {unit}",
                d.frequency,
                d.aggregation.as_str()
            )
        };
        Err(EngineError::MetricConflict {
            name: def.name.clone(),
            existing: settings(existing),
            requested: settings(def),
        })
    }

    /// Defines a new metric (checked with `check_definition`).
    pub fn define_metric(&mut self, def: MetricDef) {
        let id = self.metrics.len() as MetricId;
        self.metric_ids.insert(def.name.clone(), id);
        self.metrics.push(def);
    }

    /// Whether the tree has a node at `path` (a series there or below).
    pub fn has_path<S: AsRef<str>>(&self, path: &[S]) -> bool {
        self.find_node(path).is_some()
    }

    fn find_node<S: AsRef<str>>(&self, path: &[S]) -> Option<NodeId> {
        let mut node = ROOT;
        for name in path {
            node = *self.nodes[node as usize].children.get(name.as_ref())?;
        }
        Some(node)
    }

    fn series_at(&self, node: NodeId, metric: MetricId) -> Option<SeriesId> {
        self.nodes[node as usize]
            .series
            .iter()
            .find(|(m, _)| *m == metric)
            .map(|(_, s)| *s)
    }

    pub fn find_series<S: AsRef<str>>(&self, metric: MetricId, path: &[S]) -> Option<SeriesId> {
        self.find_node(path)
            .and_then(|node| self.series_at(node, metric))
    }

    /// Creates the series (and any missing path nodes); the path must be
    /// validated and the series must not exist yet.
    pub fn create_series<S: AsRef<str>>(&mut self, metric: MetricId, path: &[S]) -> SeriesId {
        let mut node = ROOT;
        for (level, name) in path.iter().enumerate() {
            let name = name.as_ref();
            let next = self.nodes.len() as NodeId;
            let children = &mut self.nodes[node as usize].children;
            let found = if level + 1 < path.len() {
                // Upper levels mostly exist: look before making a name.
                match children.get(name) {
                    Some(&child) => Ok(child),
                    None => {
                        let name: Arc<str> = name.into();
                        children.insert(Arc::clone(&name), next);
                        Err(name)
                    }
                }
            } else {
                // The last level is mostly new (a collector's first tick
                // adds thousands below one node): one search, not two.
                match children.entry(name.into()) {
                    Entry::Occupied(child) => Ok(*child.get()),
                    Entry::Vacant(slot) => {
                        let name = Arc::clone(slot.key());
                        slot.insert(next);
                        Err(name)
                    }
                }
            };
            // Err: no such child, now `next`, named by the map's key.
            node = found.unwrap_or_else(|name| {
                self.nodes.push(Node {
                    name,
                    parent: node,
                    children: BTreeMap::new(),
                    series: Vec::new(),
                });
                next
            });
        }
        let id = self.series.len() as SeriesId;
        self.nodes[node as usize].series.push((metric, id));
        self.series.push(SeriesEntry {
            metric,
            frequency: self.metrics[metric as usize].frequency,
            node,
            data: Arc::default(),
            hot_chunk: AtomicUsize::new(0),
        });
        id
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn entry(&self, id: SeriesId) -> Option<&SeriesEntry> {
        self.series.get(id as usize)
    }

    pub fn entries(&self) -> &[SeriesEntry] {
        &self.series
    }

    /// How many series each metric has, by metric id.
    pub fn series_per_metric(&self) -> Vec<usize> {
        let mut counts = vec![0; self.metrics.len()];
        for entry in &self.series {
            counts[entry.metric as usize] += 1;
        }
        counts
    }

    /// The paths two levels below the root ("cluster/host"), in name order.
    /// A node exists only where a series is at or below it.
    pub fn hosts(&self) -> Vec<String> {
        let root = &self.nodes[ROOT as usize];
        root.children
            .iter()
            .flat_map(|(cluster, &id)| {
                self.nodes[id as usize]
                    .children
                    .keys()
                    .map(move |host| format!("{cluster}/{host}"))
            })
            .collect()
    }

    /// The path of a series, root first.
    pub fn path_of(&self, id: SeriesId) -> Vec<String> {
        let mut names = Vec::new();
        let mut node = self.series[id as usize].node;
        while node != ROOT {
            let n = &self.nodes[node as usize];
            names.push(n.name.to_string());
            node = n.parent;
        }
        names.reverse();
        names
    }

    /// The series a read of `metric` at `path` combines: the series at the
    /// path itself if there is one, otherwise, below each child in name
    /// order, the nearest series of the metric (a level that holds the metric
    /// hides its descendants, as in cc-backend).
    pub fn sources<S: AsRef<str>>(
        &self,
        metric: MetricId,
        path: &[S],
    ) -> Result<Vec<SeriesId>, EngineError> {
        let unknown = || EngineError::UnknownSeries {
            metric: self.metrics[metric as usize].name.clone(),
            path: display_path(path),
        };
        let node = self.find_node(path).ok_or_else(unknown)?;
        let mut found = Vec::new();
        let mut stack = vec![node];
        while let Some(node) = stack.pop() {
            if let Some(series) = self.series_at(node, metric) {
                found.push(series);
                continue;
            }
            // Reversed so the stack pops children in name order.
            stack.extend(self.nodes[node as usize].children.values().rev());
        }
        if found.is_empty() {
            return Err(unknown());
        }
        Ok(found)
    }

    /// The series with handles in `ids` as (metric id, path), in handle
    /// order.
    pub fn series_paths_in(&self, ids: std::ops::Range<usize>) -> Vec<(MetricId, Vec<String>)> {
        ids.map(|id| (self.series[id].metric, self.path_of(id as SeriesId)))
            .collect()
    }

    pub fn aggregation(&self, metric: MetricId) -> Aggregation {
        self.metrics[metric as usize].aggregation
    }
}
