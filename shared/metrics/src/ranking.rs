//! Ranking metrics over millions of voxels: AUROC (§10) and risk-coverage curves (§11).
//!
//! Voxels are sorted once per key with a stable LSD radix sort on the f32 key, carrying a few
//! payload bits (labels) with each voxel. Stability keeps ties in voxel order, which is what a
//! stable argsort does and what the order-dependent ValUES/statapp loops need.

/// A voxel in sort order: the sortable f32 key in the high 32 bits, payload flags in the low bits.
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

/// Stable sort by the key (high 32 bits) only: 3 passes of 11 bits.
pub fn radix_sort(items: &mut Vec<Item>) {
    let mut buf = vec![0u64; items.len()];
    for pass in 0..3 {
        let shift = 32 + pass * 11;
        let mut count = vec![0usize; 2049];
        for it in items.iter() {
            count[((it >> shift) & 0x7FF) as usize + 1] += 1;
        }
        if count[1..].contains(&items.len()) {
            continue; // every key has the same digit: nothing moves
        }
        for d in 1..2049 {
            count[d] += count[d - 1];
        }
        for it in items.iter() {
            let d = ((it >> shift) & 0x7FF) as usize;
            buf[count[d]] = *it;
            count[d] += 1;
        }
        std::mem::swap(items, &mut buf);
    }
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

/// AUROC of the key (ascending sort) against the payload bit `bit`, ties by the trapezoid rule
/// (sklearn `roc_auc_score`); NaN with a single class.
pub fn auroc(sorted: &[Item], bit: u32) -> f64 {
    // pairs (pos, neg) with pos ranked above neg, ties counting one half: kept doubled, exact
    let (mut num, mut neg_below, mut pos_total) = (0u128, 0u128, 0u128);
    for (_, s, e) in groups(sorted) {
        let pos = sorted[s..e]
            .iter()
            .filter(|i| payload_of(**i) >> bit & 1 == 1)
            .count() as u128;
        let neg = (e - s) as u128 - pos;
        num += pos * (2 * neg_below + neg);
        neg_below += neg;
        pos_total += pos;
    }
    if pos_total == 0 || neg_below == 0 {
        return f64::NAN;
    }
    num as f64 / (2.0 * pos_total as f64 * neg_below as f64)
}

/// [`auroc`] for payload bits `0..bits` in one pass over the sorted items.
pub fn aurocs(sorted: &[Item], bits: usize) -> Vec<f64> {
    let mut num = vec![0u128; bits];
    let mut neg_below = vec![0u128; bits];
    let mut pos_total = vec![0u128; bits];
    let mut pos = vec![0u128; bits];
    for (_, s, e) in groups(sorted) {
        pos.iter_mut().for_each(|p| *p = 0);
        for it in &sorted[s..e] {
            let p = payload_of(*it);
            for (b, c) in pos.iter_mut().enumerate() {
                *c += u128::from(p >> b & 1);
            }
        }
        for b in 0..bits {
            let neg = (e - s) as u128 - pos[b];
            num[b] += pos[b] * (2 * neg_below[b] + neg);
            neg_below[b] += neg;
            pos_total[b] += pos[b];
        }
    }
    (0..bits)
        .map(|b| {
            if pos_total[b] == 0 || neg_below[b] == 0 {
                f64::NAN
            } else {
                num[b] as f64 / (2.0 * pos_total[b] as f64 * neg_below[b] as f64)
            }
        })
        .collect()
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
}

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
            (self.cov, self.risk) = (c, r);
        }
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
        radix_sort(&mut items);
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
    fn radix_sort_is_stable_and_ordered() {
        let keys = [0.5f32, -1.0, 0.0, -0.0, 1e-30, 0.5, 3.0, f32::MIN_POSITIVE];
        let mut items: Vec<Item> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| item(*k, i as u32))
            .collect();
        radix_sort(&mut items);
        let order: Vec<u32> = items.iter().map(|i| payload_of(*i)).collect();
        assert_eq!(order, vec![1, 2, 3, 7, 4, 0, 5, 6]);
        assert_eq!(unsortable(sortable(-2.5)), -2.5);
    }

    #[test]
    fn auroc_with_ties() {
        // scores 0.1 0.4 0.35 0.8, labels 0 0 1 1 -> 0.75 (sklearn's doc example)
        let mut items = vec![item(0.1, 0), item(0.4, 0), item(0.35, 1), item(0.8, 1)];
        radix_sort(&mut items);
        assert_eq!(auroc(&items, 0), 0.75);
        let mut tie = vec![item(0.5, 0), item(0.5, 1)];
        radix_sort(&mut tie);
        assert_eq!(auroc(&tie, 0), 0.5);
        assert!(auroc(&[item(0.5, 1)], 0).is_nan());
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
}
