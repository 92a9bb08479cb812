//! Staging of tick writes: ticks over one list of series are kept as rows
//! and written into the series' chunks many slots at a time.
//!
//! Why: a tick writes one value into each of its series, and each write
//! touches the series' lock and fields and a line of its chunk, lines that
//! a 10,000-series tick has evicted by the time the next tick comes. A tick
//! cost about 25 ns per series, nearly all of it waiting for memory. Staged,
//! a tick costs a copy of its values plus writing out a slice of earlier
//! rows: each series visited takes up to [`ROWS`] consecutive slots at once,
//! so its lines are fetched once per [`ROWS`] ticks. In memory, a
//! 10,000-series tick went from 30 to 7.2 ns per value (docs/decisions.md). In
//! `always` mode the apply runs beside the writer's fdatasync and slows it,
//! so a cheaper apply is also a faster durable tick.
//!
//! Two sets of rows per series list: the rows filling, and the full rows
//! before them, which each new tick writes out a slice of series of; they
//! are all out when the filling rows are full, and the two swap. No tick
//! pays for a whole batch.
//!
//! Up to [`LISTS`] series lists are staged at once, so that writers on
//! several threads, each ticking its own series, all stage. Lists may
//! share series: a series is staged under one list at a time, and a list
//! taking it first writes out the list that had it.
//!
//! The rules that keep staging invisible to everything but timing:
//! - only a tick whose series share one frequency (one slot for all) is
//!   staged, and only onto rows of the same series list at earlier slots;
//!   a series is staged under one list at a time. Staged rows therefore
//!   never write the same (series, slot) twice, and the order they are
//!   written out in cannot change what is stored; within a row, a series
//!   listed twice keeps the later value, as in a direct tick;
//! - the store writes every row out (`Store::settle`) before any other op
//!   changes series data and before anything reads series data: reads,
//!   statistics, the memory limit, checkpoints.
//!
//! Lock order: the stage, then the catalog, then one series at a time; so
//! `settle` is never called with the catalog locked.

use std::ops::Range;
use std::sync::Arc;

use crate::engine::memory::catalog::{SeriesEntry, SeriesId, write_each};
use crate::engine::memory::chunks::ChunkPool;

/// Rows filled at most before they are written out: 64 consecutive slots,
/// four cache lines of a chunk, per series.
pub const ROWS: usize = 64;

/// Fewer rows than this would not pay for the copy: wider ticks are
/// applied directly.
const MIN_ROWS: usize = 4;

/// Values in the filling rows at most (4 MiB, and as much again in the rows
/// being written out): ticks wider than `MAX_VALUES / ROWS` fill fewer rows.
const MAX_VALUES: usize = 1 << 20;

/// Series lists staged at once: one per writer thread, for a few threads.
const LISTS: usize = 4;

/// Rows filled before they are written out, for ticks of `series` series.
fn capacity(series: usize) -> usize {
    (MAX_VALUES / series.max(1)).min(ROWS)
}

/// Where staged values are written out to: a store's series and its pool.
#[derive(Clone, Copy)]
pub struct SeriesMemory<'a> {
    pub entries: &'a [SeriesEntry],
    pub pool: &'a Arc<ChunkPool>,
}

/// The staged ticks of a store.
#[derive(Default)]
pub struct Stage {
    lists: Vec<TickStage>,
    /// Per series handle: 1 + the index in `lists` of the list it is staged
    /// under, or 0.
    owner: Vec<u8>,
    /// Staged ticks so far, and per list the count when it last took one:
    /// the list written out to make room is the one idle longest.
    ticks: u64,
    last_used: Vec<u64>,
}

impl Stage {
    /// Whether ticks over `series` series are staged at all.
    pub fn stages(series: usize) -> bool {
        series > 0 && capacity(series) >= MIN_ROWS
    }

    pub fn is_empty(&self) -> bool {
        self.lists.iter().all(TickStage::is_empty)
    }

    /// Stages a tick of `values` for `series` at `slot`. Rows it cannot
    /// join are written out first: those of its list if the slot is not
    /// after theirs, those of any list sharing a series with it, and, when
    /// all lists are in use, those of the one idle longest.
    pub fn stage(
        &mut self,
        series: &[SeriesId],
        slot: i64,
        values: &[f32],
        memory: SeriesMemory<'_>,
    ) {
        debug_assert!(Self::stages(series.len()));
        self.ticks += 1;
        let found = self
            .lists
            .iter()
            .position(|list| list.list() == Some(series));
        let index = match found {
            Some(index) if self.lists[index].joins(slot) => index,
            _ => {
                if let Some(index) = found {
                    self.write_out_list(index, memory);
                }
                let index = self.free_list(memory);
                self.claim(index, series, memory);
                index
            }
        };
        self.last_used[index] = self.ticks;
        self.lists[index].push(series, slot, values, memory);
    }

    /// Writes every staged tick into its series and empties the stage.
    pub fn write_out(&mut self, memory: SeriesMemory<'_>) {
        for index in 0..self.lists.len() {
            self.write_out_list(index, memory);
        }
    }

    fn write_out_list(&mut self, index: usize, memory: SeriesMemory<'_>) {
        let list = &mut self.lists[index];
        if let Some(series) = list.list() {
            for &id in series {
                self.owner[id as usize] = 0;
            }
            list.write_out(memory);
        }
    }

    /// An empty list's index: a new one, or one written out for room.
    fn free_list(&mut self, memory: SeriesMemory<'_>) -> usize {
        if let Some(index) = self.lists.iter().position(TickStage::is_empty) {
            return index;
        }
        if self.lists.len() < LISTS {
            self.lists.push(TickStage::default());
            self.last_used.push(0);
            return self.lists.len() - 1;
        }
        let idle = (0..self.lists.len())
            .min_by_key(|&i| self.last_used[i])
            .expect("LISTS > 0");
        self.write_out_list(idle, memory);
        idle
    }

    /// Marks `series` staged under the empty list `index`, first writing
    /// out any other list that has one of them.
    fn claim(&mut self, index: usize, series: &[SeriesId], memory: SeriesMemory<'_>) {
        let tag = index as u8 + 1;
        for &id in series {
            let id = id as usize;
            if id >= self.owner.len() {
                self.owner.resize(memory.entries.len().max(id + 1), 0);
            }
            let owner = self.owner[id];
            if owner != 0 && owner != tag {
                self.write_out_list(usize::from(owner) - 1, memory);
            }
            self.owner[id] = tag;
        }
    }
}

/// The staged ticks of one series list.
#[derive(Default)]
struct TickStage {
    filling: Rows,
    /// Full rows, written out a slice per staged tick.
    draining: Rows,
    /// Series of `draining` written out so far: its first `drained`.
    drained: usize,
}

/// Ticks over one series list at strictly increasing slots.
#[derive(Default)]
struct Rows {
    series: Vec<SeriesId>,
    slots: Vec<i64>,
    /// Row after row, `series.len()` values each.
    values: Vec<f32>,
}

impl TickStage {
    fn is_empty(&self) -> bool {
        self.filling.slots.is_empty() && self.draining.slots.is_empty()
    }

    /// The newer of the two sets of rows.
    fn newest(&self) -> &Rows {
        if self.filling.slots.is_empty() {
            &self.draining
        } else {
            &self.filling
        }
    }

    /// The series list of the rows, if there are any.
    fn list(&self) -> Option<&[SeriesId]> {
        (!self.is_empty()).then(|| self.newest().series.as_slice())
    }

    /// Whether a tick of this list at `slot` can join the rows.
    fn joins(&self, slot: i64) -> bool {
        self.newest().slots.last().is_some_and(|&last| slot > last)
    }

    /// Adds a tick of `values` for `series` at `slot` (the stage is empty,
    /// or the tick is of its list and joins it), then writes out the next
    /// slice of full rows.
    fn push(&mut self, series: &[SeriesId], slot: i64, values: &[f32], memory: SeriesMemory<'_>) {
        debug_assert!(self.is_empty() || (self.list() == Some(series) && self.joins(slot)));
        debug_assert_eq!(series.len(), values.len());
        let filling = &mut self.filling;
        if filling.slots.is_empty() {
            filling.series.clear();
            filling.series.extend_from_slice(series);
        }
        filling.slots.push(slot);
        filling.values.extend_from_slice(values);

        let rows = capacity(series.len());
        let n = self.draining.series.len();
        if self.drained < n {
            // `rows` slices write out all of `draining`: it is empty by the
            // time `filling` is full.
            let end = n.min(self.drained + n.div_ceil(rows));
            self.draining.write(self.drained..end, memory);
            self.drained = end;
        }
        if self.filling.slots.len() == rows {
            debug_assert_eq!(self.drained, self.draining.series.len());
            std::mem::swap(&mut self.filling, &mut self.draining);
            self.filling.clear();
            self.drained = 0;
        }
    }

    /// Writes every row into the series of `entries`, oldest first, and
    /// empties the stage.
    fn write_out(&mut self, memory: SeriesMemory<'_>) {
        let n = self.draining.series.len();
        self.draining.write(self.drained..n, memory);
        let n = self.filling.series.len();
        self.filling.write(0..n, memory);
        self.filling.clear();
        self.draining.clear();
        self.draining.series.clear();
        self.drained = 0;
    }
}

impl Rows {
    /// Forgets the rows (keeping the series list and the memory).
    fn clear(&mut self) {
        self.slots.clear();
        self.values.clear();
    }

    /// Writes every row's values for the series at positions `range` of
    /// the list into those series.
    fn write(&self, range: Range<usize>, memory: SeriesMemory<'_>) {
        let SeriesMemory { entries, pool } = memory;
        let rows = self.slots.len();
        if rows == 0 || range.is_empty() {
            return;
        }
        let n = self.series.len();
        let first = self.slots[0];
        // Usually the rows are consecutive slots: then a series takes them
        // as one block.
        let consecutive = self.slots[rows - 1] - first == rows as i64 - 1;
        let mut column = [0f32; ROWS];
        let column = &mut column[..rows];
        write_each(
            entries,
            &self.series,
            range,
            |_| first,
            |data, i| {
                for (r, value) in column.iter_mut().enumerate() {
                    *value = self.values[r * n + i];
                }
                if consecutive {
                    data.write(pool, first, column)
                } else {
                    let mut chunk = 0;
                    for (&slot, &value) in self.slots.iter().zip(column.iter()) {
                        chunk = data.write_one(pool, slot, value);
                    }
                    chunk
                }
            },
        );
    }
}
