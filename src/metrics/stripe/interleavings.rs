//! The stripe protocol over every interleaving of its steps.
//!
//! See the declaration in `stripe.rs`.

use super::extreme;
use crate::metrics::histogram::{LatencyHistogram, index_of};

// Cells of one arm of one stripe, and the accumulator's epoch.
const EPOCH: usize = 0;
const OUTCOME: usize = 1;
const SUM: usize = 2;
const MIN: usize = 3;
const MAX: usize = 4;
const BUCKET0: usize = 5; // + the bucket's slot (0 or 1)
const CELLS: usize = 7;
const READ_ORDER: [usize; 6] = [OUTCOME, SUM, MIN, MAX, BUCKET0, BUCKET0 + 1];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Owner,
    Shared,
}

/// A recording thread: `records` latencies, each in bucket slot 0 or 1.
#[derive(Clone)]
struct Recorder {
    kind: Kind,
    records: Vec<(u64, usize)>,
    /// (record, step)
    pc: (usize, usize),
    epoch: u64,
    loaded: u64,
    /// The epoch each record saw, once it has loaded it.
    saw: Vec<u64>,
}

impl Recorder {
    fn done(&self) -> bool {
        self.pc.0 == self.records.len()
    }

    /// One atomic access.
    fn step(&mut self, cells: &mut [u64; CELLS]) {
        let (ns, slot) = self.records[self.pc.0];
        let owner = self.kind == Kind::Owner;
        // The accesses of one record, in the order of `ArmCells::record`.
        let offer = |cells: &mut [u64; CELLS], cell: usize, key: u64, old: u64| {
            // Owner: store if later than the value it loaded. Shared: a
            // compare-exchange loop, one atomic step when it succeeds;
            // a failed one re-reads, so it is modelled as one step on
            // the current value.
            let old = if owner { old } else { cells[cell] };
            if extreme::is_later(key, old) {
                cells[cell] = key;
            }
        };
        let add = |cells: &mut [u64; CELLS], cell: usize, n: u64, old: u64| {
            cells[cell] = if owner { old } else { cells[cell] }.wrapping_add(n);
        };
        match self.pc.1 {
            0 => {
                self.epoch = cells[EPOCH];
                self.saw.push(self.epoch);
            }
            1 | 3 | 5 | 7 | 9 => {
                let cell = [MIN, MAX, SUM, BUCKET0 + slot, OUTCOME][(self.pc.1 - 1) / 2];
                self.loaded = cells[cell];
            }
            2 => offer(cells, MIN, extreme::min_key(self.epoch, ns), self.loaded),
            4 => offer(cells, MAX, extreme::max_key(self.epoch, ns), self.loaded),
            6 => add(cells, SUM, ns, self.loaded),
            8 => add(cells, BUCKET0 + slot, 1, self.loaded),
            10 => add(cells, OUTCOME, 1, self.loaded),
            _ => unreachable!("a record has 11 steps"),
        }
        self.pc.1 += 1;
        if self.pc.1 == 11 {
            self.pc = (self.pc.0 + 1, 0);
        }
    }
}

/// `reset`: reads the cells as `read_raw` does, then moves the epoch on.
#[derive(Clone)]
struct Resetter {
    pc: usize,
    read: [u64; CELLS],
    generation: u64,
}

impl Resetter {
    fn done(&self) -> bool {
        self.pc > READ_ORDER.len()
    }

    fn step(&mut self, cells: &mut [u64; CELLS]) {
        if let Some(&cell) = READ_ORDER.get(self.pc) {
            self.read[cell] = cells[cell];
        } else {
            self.generation += 1;
            cells[EPOCH] = extreme::epoch(self.generation);
        }
        self.pc += 1;
    }
}

#[derive(Clone)]
struct World {
    cells: [u64; CELLS],
    recorders: Vec<Recorder>,
    resetter: Option<Resetter>,
}

/// The histogram a snapshot builds from `now` over the baseline `base`
/// in `generation`, as `RawArm::since` does (sparse instead of dense).
fn histogram(
    now: &[u64; CELLS],
    base: &[u64; CELLS],
    generation: u64,
    slots: [u64; 2],
) -> (u64, LatencyHistogram) {
    let epoch = extreme::epoch(generation);
    // Two slots of one bucket are one dense cell: add them.
    let mut buckets: Vec<(u32, u64)> = Vec::new();
    for s in 0..2 {
        let (index, n) = (
            index_of(slots[s]) as u32,
            now[BUCKET0 + s] - base[BUCKET0 + s],
        );
        match buckets.iter_mut().find(|(i, _)| *i == index) {
            Some((_, total)) => *total += n,
            None => buckets.push((index, n)),
        }
    }
    buckets.retain(|&(_, n)| n > 0);
    buckets.sort_unstable();
    let min = extreme::min_of(now[MIN], epoch).unwrap_or(u64::MAX);
    let max = extreme::max_of(now[MAX], epoch).unwrap_or(0);
    let h = LatencyHistogram::from_sparse(buckets, now[SUM] - base[SUM], min, max);
    (now[OUTCOME] - base[OUTCOME], h)
}

fn check(h: &LatencyHistogram, context: &str) {
    if let Err(e) = h.check() {
        panic!("{context}: a reader would refuse {h:?}: {e}");
    }
    for q in [0.0, 0.5, 1.0] {
        assert!(h.quantile(q).is_some() || h.is_empty(), "{context}");
    }
}

/// Runs every interleaving; returns how many.
fn explore(world: &World, slots: [u64; 2], total: &(u64, u64)) -> u64 {
    // A snapshot now, of the generation in force.
    let (base, generation) = match &world.resetter {
        Some(r) if r.done() => (r.read, r.generation),
        _ => ([0; CELLS], 0),
    };
    check(
        &histogram(&world.cells, &base, generation, slots).1,
        "snapshot",
    );

    let mut runs = 0;
    for i in 0..world.recorders.len() {
        if !world.recorders[i].done() {
            let mut next = world.clone();
            next.recorders[i].step(&mut next.cells);
            runs += explore(&next, slots, total);
        }
    }
    if let Some(r) = world.resetter.as_ref().filter(|r| !r.done()) {
        let mut next = world.clone();
        if let Some(r) = next.resetter.as_mut() {
            r.step(&mut next.cells);
        }
        let _ = r;
        runs += explore(&next, slots, total);
    }
    if runs == 0 {
        finish(world, slots, total);
        return 1;
    }
    runs
}

/// Every thread is done: the generations add up to every record, and
/// a generation whose records all saw its epoch has exact extremes.
fn finish(world: &World, slots: [u64; 2], &(count, sum): &(u64, u64)) {
    let (ended, current) = match &world.resetter {
        Some(r) => {
            let ended = histogram(&r.read, &[0; CELLS], 0, slots);
            (
                Some(ended),
                histogram(&world.cells, &r.read, r.generation, slots),
            )
        }
        None => (None, histogram(&world.cells, &[0; CELLS], 0, slots)),
    };
    let ended_count = ended.as_ref().map_or(0, |e| e.0);
    assert_eq!(ended_count + current.0, count, "uploads lost or doubled");
    // The sum is exact unless a generation's buckets are empty: an empty
    // histogram has a sum of 0, so a straddling record's latency read
    // into the sum of a generation that got none of its buckets is
    // dropped there (the count and buckets are never).
    let ended_sum = ended.as_ref().map_or(0, |e| e.1.sum_ns());
    let got = ended_sum + current.1.sum_ns();
    if ended.as_ref().is_none_or(|e| !e.1.is_empty()) && !current.1.is_empty() {
        assert_eq!(got, sum, "latency sum");
    } else {
        assert!(got <= sum, "latency sum {got} > {sum}");
    }
    let ended_buckets = ended.as_ref().map_or(0, |e| e.1.count());
    assert_eq!(ended_buckets + current.1.count(), count, "latency count");
    let generation = world.resetter.as_ref().map_or(0, |r| r.generation);
    let all_saw_it = world
        .recorders
        .iter()
        .flat_map(|r| &r.saw)
        .all(|&e| e == extreme::epoch(generation));
    if world.resetter.is_some() && all_saw_it {
        // Reset reads the baseline before it publishes the epoch.
        assert_eq!(
            ended_count, 0,
            "a record that saw the new epoch is in the baseline"
        );
    }
    if all_saw_it && ended_count == 0 {
        let values: Vec<u64> = world
            .recorders
            .iter()
            .flat_map(|r| r.records.iter().map(|&(ns, _)| ns))
            .collect();
        let (lo, hi) = (values.iter().min(), values.iter().max());
        let h = &current.1;
        assert_eq!(h.min().map(|d| d.as_nanos() as u64).as_ref(), lo);
        assert_eq!(h.max().map(|d| d.as_nanos() as u64).as_ref(), hi);
    }
}

fn recorder(kind: Kind, records: &[(u64, usize)]) -> Recorder {
    Recorder {
        kind,
        records: records.to_vec(),
        pc: (0, 0),
        epoch: 0,
        loaded: 0,
        saw: Vec::new(),
    }
}

fn run(recorders: Vec<Recorder>, reset: bool, slots: [u64; 2]) -> u64 {
    let mut cells = [0; CELLS];
    cells[EPOCH] = extreme::epoch(0);
    cells[MIN] = extreme::EMPTY;
    cells[MAX] = extreme::EMPTY;
    let total = recorders
        .iter()
        .flat_map(|r| &r.records)
        .fold((0, 0), |(n, s), &(ns, _)| (n + 1, s + ns));
    let world = World {
        cells,
        recorders,
        resetter: reset.then_some(Resetter {
            pc: 0,
            read: [0; CELLS],
            generation: 0,
        }),
    };
    explore(&world, slots, &total)
}

/// Issue 11's race: an owner records while `reset` runs. Latencies 256
/// and 257 share one two-value bucket, where crossed extremes used to
/// make `quantile` panic; 5 and 9 have buckets of their own.
#[test]
fn reset_against_an_owner_in_every_interleaving() {
    for (a, b) in [(256, 257), (257, 256), (9, 5)] {
        let slots = [a, b];
        let owner = recorder(Kind::Owner, &[(a, 0), (b, 1)]);
        let runs = run(vec![owner], true, slots);
        // 22 record steps and 7 reset steps: C(29, 7) orders.
        assert_eq!(runs, 1_560_780, "{a} {b}");
    }
}

#[test]
fn two_shared_writers_in_every_interleaving() {
    let slots = [256, 900];
    let writers = vec![
        recorder(Kind::Shared, &[(256, 0)]),
        recorder(Kind::Shared, &[(900, 1)]),
    ];
    assert_eq!(run(writers, false, slots), 705_432);
}

#[test]
fn reset_against_a_shared_writer_in_every_interleaving() {
    let slots = [257, 256];
    let writer = recorder(Kind::Shared, &[(257, 0), (256, 1)]);
    assert_eq!(run(vec![writer], true, slots), 1_560_780);
}
