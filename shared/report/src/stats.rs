//! Paired statistics as researchers compute them in Python: `scipy.stats.wilcoxon` with its
//! defaults (scipy 1.17: zeros dropped, no continuity correction, two-sided, `method="auto"`),
//! Holm's step-down correction as statsmodels' `multipletests(method="holm")`, and numpy's
//! mean, median and linear-interpolated quartiles. `tools/stats_reference.py` pins them.

use serde::Serialize;

/// How the p-value of a signed-rank test was obtained (scipy's `method="auto"` choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The exact null distribution: no ties, no zero differences, at most 50 pairs.
    Exact,
    /// Every sign flip enumerated: ties or zeros, at most 13 pairs.
    Permutation,
    /// The normal approximation with the tie correction of the variance.
    Asymptotic,
}

/// A Wilcoxon signed-rank test of `x - y`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Wilcoxon {
    /// Pairs tested (zero differences included, as scipy counts them).
    pub n: usize,
    /// Pairs with a non-zero difference (the ones ranked).
    pub n_nonzero: usize,
    /// `min(R+, R-)`, scipy's reported statistic.
    pub statistic: f64,
    pub r_plus: f64,
    pub r_minus: f64,
    /// NaN where scipy gives NaN (no pair, or every difference zero beyond 13 pairs).
    pub p_value: f64,
    pub method: Method,
    /// Matched-pairs rank-biserial correlation `(R+ - R-) / (R+ + R-)`, in [-1, 1]: positive
    /// when `x` tends to exceed `y`; NaN when every difference is zero.
    pub effect_size: f64,
}

/// Ranks of the non-zero `|d|`, doubled so that average ranks of ties stay integers, and
/// whether any tie occurred.
fn doubled_ranks(abs: &[f64]) -> (Vec<u64>, Vec<usize>, bool) {
    let mut order: Vec<usize> = (0..abs.len()).collect();
    order.sort_by(|a, b| abs[*a].total_cmp(&abs[*b]));
    let mut ranks = vec![0u64; abs.len()];
    let mut groups = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && abs[order[j + 1]] == abs[order[i]] {
            j += 1;
        }
        // ranks i+1 ..= j+1 share their mean (i + j + 2) / 2
        for &k in &order[i..=j] {
            ranks[k] = (i + j + 2) as u64;
        }
        groups.push(j + 1 - i);
        i = j + 1;
    }
    let ties = groups.iter().any(|g| *g > 1);
    (ranks, groups, ties)
}

/// Number of sign patterns of the doubled `ranks` whose positive part sums to each total.
fn sign_flip_counts(ranks: &[u64]) -> Vec<f64> {
    let total: u64 = ranks.iter().sum();
    let mut counts = vec![0.0f64; total as usize + 1];
    counts[0] = 1.0;
    let mut reach = 0usize;
    for &r in ranks {
        let r = r as usize;
        for s in (0..=reach).rev() {
            if counts[s] != 0.0 {
                counts[s + r] += counts[s];
            }
        }
        reach += r;
    }
    counts
}

/// Two-sided p-value `2 min(P(T <= t), P(T >= t))` of the observed doubled sum `t` under the
/// sign-flip distribution `counts` (the probabilities are exact ratios of powers of two).
fn two_sided_from_counts(counts: &[f64], t: usize) -> f64 {
    let all: f64 = counts.iter().sum();
    let le: f64 = counts[..=t.min(counts.len() - 1)].iter().sum();
    let ge: f64 = counts[t.min(counts.len())..].iter().sum();
    (2.0 * (le / all).min(ge / all)).min(1.0)
}

/// scipy's `wilcoxon(x, y)` (two-sided, `zero_method="wilcox"`, `correction=False`,
/// `method="auto"`). Pairs must be complete: drop pairs with a NaN before.
pub fn wilcoxon(x: &[f64], y: &[f64]) -> Wilcoxon {
    let d: Vec<f64> = x.iter().zip(y).map(|(a, b)| a - b).collect();
    let n = d.len();
    let nonzero: Vec<f64> = d.iter().copied().filter(|v| *v != 0.0).collect();
    let abs: Vec<f64> = nonzero.iter().map(|v| v.abs()).collect();
    let (ranks, groups, ties) = doubled_ranks(&abs);
    let plus2: u64 = ranks
        .iter()
        .zip(&nonzero)
        .filter(|(_, v)| **v > 0.0)
        .map(|(r, _)| *r)
        .sum();
    let total2: u64 = ranks.iter().sum();
    let (r_plus, r_minus) = (plus2 as f64 / 2.0, (total2 - plus2) as f64 / 2.0);
    let zeros = n - nonzero.len();
    let method = if n > 50 {
        Method::Asymptotic
    } else if !ties && zeros == 0 {
        Method::Exact
    } else if n <= 13 {
        Method::Permutation
    } else {
        Method::Asymptotic
    };
    let p_value = if n == 0 {
        f64::NAN
    } else {
        match method {
            // without ties the doubled ranks are 2, 4, ..: the same counts as the exact
            // distribution of T+ over 1..n
            Method::Exact | Method::Permutation => {
                two_sided_from_counts(&sign_flip_counts(&ranks), plus2 as usize)
            }
            Method::Asymptotic => {
                let c = nonzero.len() as f64;
                let mean = c * (c + 1.0) / 4.0;
                let ties: f64 = groups.iter().map(|t| (t * t * t - t) as f64).sum();
                let se = ((c * (c + 1.0) * (2.0 * c + 1.0) - ties / 2.0) / 24.0).sqrt();
                let z = (r_plus - mean) / se;
                libm::erfc(z.abs() / std::f64::consts::SQRT_2)
            }
        }
    };
    let effect_size = if total2 == 0 {
        f64::NAN
    } else {
        (r_plus - r_minus) / (r_plus + r_minus)
    };
    Wilcoxon {
        n,
        n_nonzero: nonzero.len(),
        statistic: r_plus.min(r_minus),
        r_plus,
        r_minus,
        p_value,
        method,
        effect_size,
    }
}

/// Holm's step-down adjustment of a family of p-values (statsmodels' `multipletests(p,
/// method="holm")[1]`). NaN p-values (tests that could not be run) are left out of the family
/// and stay NaN.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).filter(|i| !p[*i].is_nan()).collect();
    order.sort_by(|a, b| p[*a].total_cmp(&p[*b]));
    let m = order.len();
    let mut out = vec![f64::NAN; p.len()];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(p[i] * (m - rank) as f64);
        out[i] = running.min(1.0);
    }
    out
}

/// numpy's sum of f64 values (`np.sum`, hence `np.mean`): pairwise summation, eight running sums
/// per block of up to 128 values. Matching it bit for bit matters for paired tests: a per-patient
/// mean that rounds differently can make or break an exact tie of two differences.
pub fn numpy_sum(v: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = v.len();
    if n < 8 {
        v.iter().fold(0.0, |acc, x| acc + x)
    } else if n <= BLOCK {
        let mut r: [f64; 8] = std::array::from_fn(|j| v[j]);
        let whole = n - n % 8;
        for i in (8..whole).step_by(8) {
            for j in 0..8 {
                r[j] += v[i + j];
            }
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for x in &v[whole..] {
            res += x;
        }
        res
    } else {
        let mut half = n / 2;
        half -= half % 8;
        numpy_sum(&v[..half]) + numpy_sum(&v[half..])
    }
}

/// numpy's `mean`.
pub fn numpy_mean(v: &[f64]) -> f64 {
    numpy_sum(v) / v.len() as f64
}

/// Mean, median and quartiles (numpy's default linear interpolation between order statistics).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub median: f64,
    pub q1: f64,
    pub q3: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    /// Of the finite values (NaN, undefined metrics, are not counted); `None` when none is.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Self {
            n: v.len(),
            mean: numpy_mean(&v),
            median: median_sorted(&v),
            q1: quantile(&v, 0.25),
            q3: quantile(&v, 0.75),
            min: v[0],
            max: v[v.len() - 1],
        })
    }
}

/// numpy's `median` of sorted, non-empty `v`: the middle value, or the mean of the two.
pub fn median_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        numpy_mean(&sorted[n / 2 - 1..=n / 2])
    }
}

/// numpy's `percentile(v, 100 q)` (method "linear") of sorted, non-empty `v`.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let t = h - lo as f64;
    let (a, b) = (sorted[lo], sorted[hi]);
    // numpy's _lerp: from the nearer end, so the result stays within [a, b]
    if t >= 0.5 {
        b - (b - a) * (1.0 - t)
    } else {
        a + (b - a) * t
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn exact_distribution_of_small_samples() {
        // n = 3 without ties: T+ takes 0..=6 with counts 1,1,1,2,1,1,1
        let counts = sign_flip_counts(&[2, 4, 6]);
        let nonzero: Vec<f64> = counts.iter().copied().filter(|c| *c > 0.0).collect();
        assert_eq!(nonzero, vec![1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0]);
        let w = wilcoxon(&[2.0, 3.0, 4.0], &[1.0, 1.0, 1.0]);
        assert_eq!(
            (w.method, w.statistic, w.p_value),
            (Method::Exact, 0.0, 0.25)
        );
        assert_eq!(w.effect_size, 1.0);
    }

    #[test]
    fn holm_is_monotone_and_capped() {
        let adj = holm(&[0.01, 0.04, f64::NAN, 0.03, 0.5]);
        assert_eq!(adj[0], 0.04);
        assert!((adj[3] - 0.09).abs() < 1e-15 && (adj[1] - 0.09).abs() < 1e-15);
        assert!(adj[2].is_nan());
        assert_eq!(adj[4], 0.5);
        assert_eq!(holm(&[0.6, 0.7]), vec![1.0, 1.0]);
    }
}
