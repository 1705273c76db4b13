//! Ranking metrics over millions of voxels: AUROC (§10) and risk-coverage curves (§11).
//!
//! Voxels are sorted once per key on (f32 key, voxel index), so ties stay in voxel order, which
//! is what a stable argsort does and what the order-dependent ValUES/statapp loops need.

use rayon::prelude::*;

/// A voxel in sort order: the sortable f32 key in the high 32 bits, its index in the low bits.
pub type Item = u64;

/// Maps an f32 to a u32 whose unsigned order is the float order (-0.0 is folded onto +0.0).
pub fn sortable(v: f32) -> u32 {
    let bits = (v + 0.0).to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// Inverse of [`sortable`].
pub fn unsortable(k: u32) -> f32 {
    let bits = if k & 0x8000_0000 != 0 {
        k & 0x7FFF_FFFF
    } else {
        !k
    };
    f32::from_bits(bits)
}

pub fn item(key: f32, payload: u32) -> Item {
    (u64::from(sortable(key)) << 32) | u64::from(payload)
}

pub fn key_of(i: Item) -> u32 {
    (i >> 32) as u32
}

pub fn payload_of(i: Item) -> u32 {
    i as u32
}

/// Sorts by key, then payload, in place (no second buffer: an organ's items of a full-size CT
/// are most of a gigabyte). With the voxel index as payload this is the stable sort by key.
/// One in-place pass moves the items into buckets by their top 11 bits (an American flag
/// sort); the buckets are then sorted in parallel.
pub fn sort_items(items: &mut [Item]) {
    const SHIFT: u32 = 64 - 11;
    let digit = |v: Item| (v >> SHIFT) as usize;
    let mut end = [0usize; 1 << 11];
    for it in items.iter() {
        end[digit(*it)] += 1;
    }
    let mut start = end;
    let mut at = 0;
    for (s, e) in start.iter_mut().zip(end.iter_mut()) {
        (*s, *e) = (at, at + *e);
        at = *e;
    }
    let mut head = start;
    for b in 0..head.len() {
        while head[b] < end[b] {
            let mut v = items[head[b]];
            let mut d = digit(v);
            while d != b {
                std::mem::swap(&mut v, &mut items[head[d]]);
                head[d] += 1;
                d = digit(v);
            }
            items[head[b]] = v;
            head[b] += 1;
        }
    }
    let mut buckets = Vec::new();
    let mut rest = items;
    for (s, e) in start.iter().zip(end.iter()) {
        let (bucket, tail) = rest.split_at_mut(e - s);
        buckets.push(bucket);
        rest = tail;
    }
    buckets.into_par_iter().for_each(|b| b.sort_unstable());
}

/// Runs of equal keys in sorted items: `(key, start, end)`.
pub fn groups(items: &[Item]) -> impl Iterator<Item = (u32, usize, usize)> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= items.len() {
            return None;
        }
        let k = key_of(items[start]);
        let mut end = start + 1;
        while end < items.len() && key_of(items[end]) == k {
            end += 1;
        }
        let g = (k, start, end);
        start = end;
        Some(g)
    })
}

/// Flag bits of one voxel for organ `k`: bits 0..=2 say annotator 1..=3 drew `k`; the other two:
pub mod flag {
    /// Annotator `k` drew any organ (statapp's ground truth for organ `k`).
    pub const ANY_ORGAN: u8 = 1 << 3;
    /// The prediction `L` is `k`.
    pub const DECIDED: u8 = 1 << 4;
}

/// The voxels of one organ sorted once by `p_k` (stable, so ties stay in voxel order), with their
/// flags gathered into sort order. Every ranking of the organ streams over this one order: the
/// decision confidence (`p` where `L == k`, `1 - p` elsewhere) is a merge of its two halves.
#[derive(Debug)]
pub struct SortedOrgan {
    /// Sortable key of `p` in the high bits, voxel index in the low 32 bits.
    items: Vec<Item>,
    flags: Vec<u8>,
}

impl SortedOrgan {
    /// `prob` and `flags` are per voxel; at most `u32::MAX` voxels (the reader caps volumes far
    /// below that).
    pub fn new(prob: &[f32], flags: &[u8]) -> Self {
        let mut items: Vec<Item> = prob
            .par_iter()
            .enumerate()
            .map(|(i, p)| item(*p, i as u32))
            .collect();
        sort_items(&mut items);
        let flags = items
            .par_iter()
            .map(|it| flags[payload_of(*it) as usize])
            .collect();
        Self { items, flags }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// `p` of the i-th voxel in sort order.
    pub fn prob(&self, i: usize) -> f32 {
        unsortable(key_of(self.items[i]))
    }

    pub fn flags(&self, i: usize) -> u8 {
        self.flags[i]
    }

    /// Calls `f(p, flags of the group)` for each tie group of `p`, in ascending order.
    pub fn for_each_group(&self, mut f: impl FnMut(f32, &[u8])) {
        for (key, start, end) in groups(&self.items) {
            f(unsortable(key), &self.flags[start..end]);
        }
    }

    /// sklearn AUROC of `p` against flag bits `0..N`, from per-group positive counts; feed every group of [`Self::for_each_group`] in order.
    pub fn auroc_state<const N: usize>() -> AurocState<N> {
        AurocState {
            num: [0; N],
            neg_below: [0; N],
            pos_total: [0; N],
        }
    }

    /// Tie groups of the decision confidence in ascending order, with each annotator's errors
    /// (the decision `L == k` disagrees with the annotator). Decided voxels (`p`) ascend with the
    /// sort and the others (`1 - p`) descend, so the order is a merge from both ends; a tie may
    /// join several `p` groups, so the first voxel in voxel order is found by index.
    pub fn decision_groups(&self, mut group: impl FnMut(DecisionGroup)) {
        let decided = |f: u8| f & flag::DECIDED != 0;
        let conf_key = |i: usize| {
            if decided(self.flags[i]) {
                key_of(self.items[i])
            } else {
                sortable(1.0 - self.prob(i))
            }
        };
        let wrong = |f: u8| [0, 1, 2].map(|a| (f >> 4 & 1) != (f >> a & 1));
        let mut merged = self.merge_ends(decided, conf_key).peekable();
        while let Some((i, key)) = merged.next() {
            let mut g = DecisionGroup::default();
            let mut first = (u32::MAX, 0u8);
            let mut add = |i: usize| {
                let f = self.flags[i];
                g.count += 1;
                for (e, w) in g.errors.iter_mut().zip(wrong(f)) {
                    *e += usize::from(w);
                }
                first = first.min((payload_of(self.items[i]), f));
            };
            add(i);
            while let Some((j, _)) = merged.next_if(|(_, k)| *k == key) {
                add(j);
            }
            g.first_wrong = wrong(first.1);
            group(g);
        }
    }

    /// Positions in sort order with their keys, by ascending `key`, for a key that ascends with
    /// the sort on the voxels where `up(flags)` holds and descends on the others (`p` and `1 - p`):
    /// a merge of the two runs from both ends, no sort. On equal keys the ascending run goes first.
    pub fn merge_ends<K: PartialOrd + Copy>(
        &self,
        up: impl Fn(u8) -> bool + Copy,
        key: impl Fn(usize) -> K,
    ) -> impl Iterator<Item = (usize, K)> {
        let n = self.len();
        // cursors: the next `up` position upwards, the next other one downwards (exclusive)
        let next_up = move |mut i: usize| {
            while i < n && !up(self.flags[i]) {
                i += 1;
            }
            i
        };
        let next_down = move |mut i: usize| {
            while i > 0 && up(self.flags[i - 1]) {
                i -= 1;
            }
            i
        };
        let (mut lo, mut hi) = (next_up(0), next_down(n));
        // each cursor carries the key of the position it points at
        let (mut lo_key, mut hi_key) = ((lo < n).then(|| key(lo)), (hi > 0).then(|| key(hi - 1)));
        std::iter::from_fn(move || match (lo_key, hi_key) {
            (Some(a), b) if b.is_none_or(|b| a <= b) => {
                let i = lo;
                lo = next_up(lo + 1);
                lo_key = (lo < n).then(|| key(lo));
                Some((i, a))
            }
            (_, Some(b)) => {
                let i = hi - 1;
                hi = next_down(i);
                hi_key = (hi > 0).then(|| key(hi - 1));
                Some((i, b))
            }
            _ => None,
        })
    }
}

/// Streaming AUROC over tie groups, one per flag bit; counts are exact integers.
#[derive(Debug, Clone)]
pub struct AurocState<const N: usize> {
    num: [u128; N],
    neg_below: [u64; N],
    pos_total: [u64; N],
}

impl<const N: usize> AurocState<N> {
    /// One tie group, as its flags.
    pub fn push(&mut self, flags: &[u8]) {
        if let [f] = flags {
            // a group of one (continuous probabilities): no multiplication needed
            for b in 0..N {
                if f >> b & 1 == 1 {
                    self.num[b] += u128::from(2 * self.neg_below[b]);
                    self.pos_total[b] += 1;
                } else {
                    self.neg_below[b] += 1;
                }
            }
            return;
        }
        let mut pos = [0u64; N];
        for f in flags {
            for (b, c) in pos.iter_mut().enumerate() {
                *c += u64::from(f >> b & 1);
            }
        }
        for b in 0..N {
            let neg = flags.len() as u64 - pos[b];
            self.num[b] += u128::from(pos[b]) * u128::from(2 * self.neg_below[b] + neg);
            self.neg_below[b] += neg;
            self.pos_total[b] += pos[b];
        }
    }

    pub fn finish(&self) -> [f64; N] {
        std::array::from_fn(|b| {
            if self.pos_total[b] == 0 || self.neg_below[b] == 0 {
                f64::NAN
            } else {
                self.num[b] as f64 / (2.0 * self.pos_total[b] as f64 * self.neg_below[b] as f64)
            }
        })
    }
}

/// A tie group of the decision confidence (see [`SortedOrgan::decision_groups`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct DecisionGroup {
    pub count: usize,
    /// Voxels where annotator a disagrees with the decision.
    pub errors: [usize; 3],
    /// Whether annotator a disagrees at the group's first voxel in voxel order.
    pub first_wrong: [bool; 3],
}

/// A tie group of a risk-coverage curve in ascending confidence order.
#[derive(Debug, Clone, Copy)]
pub struct Group {
    pub count: usize,
    pub risk_sum: f64,
    /// Risk of the group's first member in stable order (for the order-dependent loops).
    pub first_risk: f64,
}

/// Tie-aware AURC (fd-shifts): a point after each whole tie group but the last, a final point at
/// coverage 0, trapezoid over coverage. Independent of the order inside tie groups. Groups are
/// streamed (continuous confidences make about one group per voxel); `n` and `total` are the
/// voxel count and the summed risk.
pub fn aurc_tie_aware(groups: impl IntoIterator<Item = Group>, n: usize, total: f64) -> f64 {
    let mut acc = TieAware::new(n, total);
    groups.into_iter().for_each(|g| acc.push(g));
    acc.finish()
}

/// Streaming state of [`aurc_tie_aware`].
#[derive(Debug, Clone)]
pub struct TieAware {
    n: usize,
    total: f64,
    cov: f64,
    risk: f64,
    removed: usize,
    removed_risk: f64,
    area: f64,
    /// The latest group: its point is added only once another group follows it.
    pending: Option<Group>,
    /// The curve's risk at coverages `j / COVERAGE_STEPS`, filled from coverage 1 down.
    grid: [f64; COVERAGE_STEPS + 1],
    /// Grid entries not filled yet (the lowest coverages).
    unfilled: usize,
}

/// Steps of the coverage grid on which [`TieAware::risk_grid`] samples the curve.
pub const COVERAGE_STEPS: usize = 100;

impl TieAware {
    pub fn new(n: usize, total: f64) -> Self {
        Self {
            n,
            total,
            cov: 1.0,
            risk: total / n as f64,
            removed: 0,
            removed_risk: 0.0,
            area: 0.0,
            pending: None,
            grid: std::array::from_fn(|j| {
                if j == COVERAGE_STEPS {
                    total / n as f64
                } else {
                    f64::NAN
                }
            }),
            unfilled: COVERAGE_STEPS,
        }
    }

    /// Fills the grid entries whose coverage lies in `[c1, c0]`, linearly between the points
    /// `(c0, r0)` and `(c1, r1)` of the curve (as the trapezoid rule reads it).
    fn sample(&mut self, (c0, r0): (f64, f64), (c1, r1): (f64, f64)) {
        while self.unfilled > 0 {
            let j = self.unfilled - 1;
            let c = j as f64 / COVERAGE_STEPS as f64;
            if c < c1 {
                break;
            }
            self.grid[j] = if c0 > c1 {
                r1 + (r0 - r1) * (c - c1) / (c0 - c1)
            } else {
                r1
            };
            self.unfilled = j;
        }
    }

    pub fn push(&mut self, g: Group) {
        if let Some(prev) = self.pending.replace(g) {
            self.removed += prev.count;
            self.removed_risk += prev.risk_sum;
            let left = self.n - self.removed;
            let nf = self.n as f64;
            let (c, r) = (
                left as f64 / nf,
                (self.total - self.removed_risk) / left as f64,
            );
            self.area += (self.cov - c) * (self.risk + r) / 2.0;
            self.sample((self.cov, self.risk), (c, r));
            (self.cov, self.risk) = (c, r);
        }
    }

    /// The selective risk at coverages `0, 1/100, .., 1`: the tie-aware curve's points joined
    /// linearly, flat from its last point down to coverage 0 (its final point). Its trapezoid
    /// area approaches [`TieAware::finish`] as the grid gets finer.
    pub fn risk_grid(&self) -> [f64; COVERAGE_STEPS + 1] {
        let mut done = self.clone();
        if self.n == 0 {
            return done.grid;
        }
        done.sample((self.cov, self.risk), (0.0, self.risk));
        done.grid
    }

    pub fn finish(&self) -> f64 {
        if self.n == 0 {
            return f64::NAN;
        }
        self.area + self.cov * self.risk // final point (0, last risk)
    }
}

/// The optimal tie-aware AURC for `errors` wrong out of `n`: errors removed first, no ties.
pub fn aurc_optimal(n: usize, errors: usize) -> f64 {
    if n == 0 {
        return f64::NAN;
    }
    let nf = n as f64;
    let (mut cov, mut risk) = (1.0, errors as f64 / nf);
    let mut area = 0.0;
    // points i = 0..=n-2 remove one sample each; after the errors are gone the risk stays 0
    for i in 0..n.saturating_sub(1) {
        let left = n - 1 - i;
        let remaining = errors.saturating_sub(i + 1);
        let (c, r) = (left as f64 / nf, remaining as f64 / left as f64);
        area += (cov - c) * (risk + r) / 2.0;
        (cov, risk) = (c, r);
        if r == 0.0 {
            return area; // every later segment has zero risk
        }
    }
    area + cov * risk
}

/// The ValUES/fd-shifts loop (§11 steps 1-5): a point at the first removal of each new confidence
/// level, weights = removals since the previous point; `final_point` adds the ValUES end point
/// (statapp's copy omits it). Streams the groups like [`aurc_tie_aware`].
pub fn aurc_values_loop(
    groups: impl IntoIterator<Item = Group>,
    n: usize,
    total: f64,
    final_point: bool,
) -> f64 {
    let mut acc = ValuesLoop::new(n, total);
    groups.into_iter().for_each(|g| acc.push(g));
    acc.finish(final_point)
}

/// Streaming state of [`aurc_values_loop`].
#[derive(Debug, Clone)]
pub struct ValuesLoop {
    n: usize,
    total: f64,
    prev_risk: f64,
    area: f64,
    start: usize,
    removed_risk: f64,
    last_point: Option<usize>,
}

impl ValuesLoop {
    pub fn new(n: usize, total: f64) -> Self {
        Self {
            n,
            total,
            prev_risk: total / n as f64,
            area: 0.0,
            start: 0,
            removed_risk: 0.0,
            last_point: None,
        }
    }

    pub fn push(&mut self, g: Group) {
        let (n, i) = (self.n, self.start); // first removal of this confidence level
        if i + 2 <= n {
            let r = (self.total - self.removed_risk - g.first_risk) / (n - 1 - i) as f64;
            let since = match self.last_point {
                Some(p) => i - p,
                None => i + 1,
            };
            self.area += (self.prev_risk + r) * 0.5 * (since as f64 / n as f64);
            self.prev_risk = r;
            self.last_point = Some(i);
        }
        self.removed_risk += g.risk_sum;
        self.start += g.count;
    }

    pub fn finish(&self, final_point: bool) -> f64 {
        let n = self.n;
        if n == 0 {
            return f64::NAN;
        }
        let mut area = self.area;
        if final_point {
            // removals after the last point: i runs to n - 2
            let tail = match self.last_point {
                Some(p) => n - 2 - p,
                None => n.saturating_sub(1),
            };
            if tail > 0 {
                area += self.prev_risk * (tail as f64 / n as f64);
            }
        }
        area
    }
}

/// Geifman's optimal AURC: `(1/n) sum_i (sum_{j<=i} r_(j)) / i` over risks sorted ascending.
pub fn aurc_geifman(sorted_risks: impl Iterator<Item = f64>, n: usize) -> f64 {
    let (mut cum, mut acc) = (0.0f64, 0.0f64);
    for (i, r) in sorted_risks.enumerate() {
        cum += r;
        acc += cum / (i + 1) as f64;
    }
    acc / n as f64
}

/// Geifman's optimum for 0/1 risks: zeros first, so only the last `errors` terms are non-zero.
pub fn aurc_geifman_binary(n: usize, errors: usize) -> f64 {
    let zeros = n - errors;
    let acc: f64 = (1..=errors).map(|e| e as f64 / (zeros + e) as f64).sum();
    acc / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tie(g: &[Group]) -> f64 {
        let n = g.iter().map(|x| x.count).sum();
        aurc_tie_aware(g.iter().copied(), n, g.iter().map(|x| x.risk_sum).sum())
    }

    fn values(g: &[Group], fin: bool) -> f64 {
        let n = g.iter().map(|x| x.count).sum();
        aurc_values_loop(
            g.iter().copied(),
            n,
            g.iter().map(|x| x.risk_sum).sum(),
            fin,
        )
    }

    fn groups_of(conf: &[f32], risk: &[f64]) -> Vec<Group> {
        let mut items: Vec<Item> = conf
            .iter()
            .enumerate()
            .map(|(i, c)| item(*c, i as u32))
            .collect();
        sort_items(&mut items);
        groups(&items)
            .map(|(_, s, e)| Group {
                count: e - s,
                risk_sum: items[s..e]
                    .iter()
                    .map(|i| risk[payload_of(*i) as usize])
                    .sum(),
                first_risk: risk[payload_of(items[s]) as usize],
            })
            .collect()
    }

    #[test]
    fn sort_is_stable_by_key() {
        let keys = [0.5f32, -1.0, 0.0, -0.0, 1e-30, 0.5, 3.0, f32::MIN_POSITIVE];
        let mut items: Vec<Item> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| item(*k, i as u32))
            .collect();
        sort_items(&mut items);
        let order: Vec<u32> = items.iter().map(|i| payload_of(*i)).collect();
        assert_eq!(order, vec![1, 2, 3, 7, 4, 0, 5, 6]);
        assert_eq!(unsortable(sortable(-2.5)), -2.5);
    }

    #[test]
    fn bucketed_sort_equals_a_stable_sort_by_key() {
        // many ties, keys across every exponent of [0, 1] and a few negatives and above 1
        let mut state = 11u64;
        let keys: Vec<f32> = (0..200_000)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = (state >> 40) as f32 / (1u64 << 24) as f32;
                match state % 5 {
                    0 => (u * 8.0).round() / 8.0,
                    1 => u.powi(40),
                    2 => u - 0.5,
                    _ => u * 1.5,
                }
            })
            .collect();
        let mut items: Vec<Item> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| item(*k, i as u32))
            .collect();
        sort_items(&mut items);
        let mut expected: Vec<u32> = (0..keys.len() as u32).collect();
        expected.sort_by_key(|i| sortable(keys[*i as usize]));
        let order: Vec<u32> = items.iter().map(|i| payload_of(*i)).collect();
        assert_eq!(order, expected);
    }

    fn auroc_of(probs: &[f32], labels: &[u8]) -> f64 {
        let sorted = SortedOrgan::new(probs, labels);
        let mut state = SortedOrgan::auroc_state::<1>();
        sorted.for_each_group(|_, flags| state.push(flags));
        state.finish()[0]
    }

    #[test]
    fn auroc_with_ties() {
        // scores 0.1 0.4 0.35 0.8, labels 0 0 1 1 -> 0.75 (sklearn's doc example)
        assert_eq!(auroc_of(&[0.1, 0.4, 0.35, 0.8], &[0, 0, 1, 1]), 0.75);
        assert_eq!(auroc_of(&[0.5, 0.5], &[0, 1]), 0.5);
        assert!(auroc_of(&[0.5], &[1]).is_nan());
    }

    #[test]
    fn decision_groups_match_a_stable_sort_of_the_confidence() {
        // tiny probabilities collapse onto 1 - p == 1.0, so one confidence tie spans several
        // p groups and decided and undecided voxels
        let grid = [0.0f32, 1e-9, 2e-9, 3e-8, 0.25, 0.5, 0.75, 1.0 - 1e-8, 1.0];
        let mut state = 7u64;
        let mut rand = |m: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % m
        };
        let n = 3000;
        let probs: Vec<f32> = (0..n)
            .map(|_| match rand(3) {
                0 => grid[rand(grid.len() as u64) as usize],
                _ => rand(1000) as f32 / 997.0,
            })
            .collect();
        let flags: Vec<u8> = (0..n).map(|_| rand(32) as u8).collect();
        let conf: Vec<f32> = (0..n)
            .map(|i| {
                if flags[i] & flag::DECIDED != 0 {
                    probs[i]
                } else {
                    1.0 - probs[i]
                }
            })
            .collect();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|i| sortable(conf[*i])); // stable
        let wrong = |f: u8, a: usize| (f >> 4 & 1) != (f >> a & 1);
        let mut want = Vec::new();
        let mut s = 0;
        while s < n {
            let mut e = s + 1;
            while e < n && sortable(conf[order[e]]) == sortable(conf[order[s]]) {
                e += 1;
            }
            let members = &order[s..e];
            want.push((
                e - s,
                [0, 1, 2].map(|a| members.iter().filter(|i| wrong(flags[**i], a)).count()),
                [0, 1, 2].map(|a| wrong(flags[members[0]], a)),
            ));
            s = e;
        }
        let mut got = Vec::new();
        SortedOrgan::new(&probs, &flags)
            .decision_groups(|g| got.push((g.count, g.errors, g.first_wrong)));
        assert!(
            want.iter().any(|g| g.0 > 50),
            "a large tie group is covered"
        );
        assert_eq!(got, want);
    }

    #[test]
    fn perfect_ranking_has_zero_excess_aurc() {
        // distinct confidences, the wrong ones lowest: eaurc = 0
        let conf = [0.9f32, 0.1, 0.8, 0.7, 0.2];
        let risk = [0.0, 1.0, 0.0, 0.0, 1.0];
        let g = groups_of(&conf, &risk);
        assert!((tie(&g) - aurc_optimal(5, 2)).abs() < 1e-15);
        // with ties the curve skips points and can dip below the tie-free optimum
        let tied = groups_of(&[1.0, 0.0, 1.0, 1.0, 0.0], &risk);
        assert!((tie(&tied) - 0.08).abs() < 1e-15);
        // brute-force optimal: no ties, errors first
        let opt_conf: Vec<f32> = (0..5).map(|i| i as f32).collect();
        let opt_risk = [1.0, 1.0, 0.0, 0.0, 0.0];
        assert!((tie(&groups_of(&opt_conf, &opt_risk)) - aurc_optimal(5, 2)).abs() < 1e-15);
    }

    #[test]
    fn values_loop_matches_hand_computation() {
        // conf 0.2 0.2 0.9, risk 1 0 0: points (1, 1/3), (2/3, 0/2 ... ) computed by hand
        let g = groups_of(&[0.2, 0.2, 0.9], &[1.0, 0.0, 0.0]);
        // i=0: remove risk 1 -> point risk 0/2, weight 1/3; i=1: same level, no point; loop ends
        // (i runs to n-2 = 1); final: tail = 1 - 0 = 1 -> point (0, 0) weight 1/3
        let expected = (1.0 / 3.0 + 0.0) * 0.5 / 3.0 + 0.0;
        assert!((values(&g, true) - expected).abs() < 1e-15);
        assert!((values(&g, false) - expected).abs() < 1e-15);
        assert!(
            (aurc_geifman_binary(3, 1) - aurc_geifman([0.0, 0.0, 1.0].into_iter(), 3)).abs()
                < 1e-15
        );
    }

    #[test]
    fn risk_grid_samples_the_tie_aware_curve() {
        let g = |count, risk_sum| Group {
            count,
            risk_sum,
            first_risk: 0.0,
        };
        // 4 samples, errors 2 in the least confident group of 2, then 2 correct singletons:
        // points (1, 0.5), (0.5, 0), then the final (0, 0)
        let mut t = TieAware::new(4, 2.0);
        for x in [g(2, 2.0), g(1, 0.0), g(1, 0.0)] {
            t.push(x);
        }
        let grid = t.risk_grid();
        assert_eq!(grid[100], 0.5);
        assert!((grid[75] - 0.25).abs() < 1e-15);
        assert_eq!(grid[50], 0.0);
        assert_eq!(grid[0], 0.0);
        // on many distinct confidences the grid's trapezoid area approaches the AURC
        let n = 10_000;
        let mut t = TieAware::new(n, 2_000.0);
        for i in 0..n {
            t.push(g(1, if i % 5 == 0 { 1.0 } else { 0.0 }));
        }
        let grid = t.risk_grid();
        let area: f64 = grid.windows(2).map(|w| (w[0] + w[1]) / 2.0 / 100.0).sum();
        assert!((area - t.finish()).abs() < 1e-3, "{area} vs {}", t.finish());
        assert!(TieAware::new(0, 0.0).risk_grid().iter().all(|r| r.is_nan()));
    }
}
