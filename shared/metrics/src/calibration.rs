//! Calibration: torchmetrics' multiclass ECE (§8) and ValUES' ACE (§9).

/// torchmetrics' float32 bin boundaries `linspace(0, 1, 51)`: `start + i * step` for the lower
/// half, `end - (n - 1 - i) * step` for the upper half.
pub fn torch_boundaries() -> [f32; 51] {
    let step = 1.0f32 / 50.0;
    std::array::from_fn(|i| {
        if i < 25 {
            i as f32 * step
        } else {
            1.0 - (50 - i) as f32 * step
        }
    })
}

/// ECE accumulators: per bin, voxel count, confidence sum and one accuracy sum per annotator.
#[derive(Debug, Clone)]
pub struct EceBins {
    boundaries: [f32; 51],
    count: [u64; 52],
    conf: [f64; 52],
    correct: [[u64; 52]; 3],
}

impl Default for EceBins {
    fn default() -> Self {
        Self {
            boundaries: torch_boundaries(),
            count: [0; 52],
            conf: [0.0; 52],
            correct: [[0; 52]; 3],
        }
    }
}

impl EceBins {
    /// Adds one voxel: its 4 class probabilities (after any softmax) and the 3 annotators' labels.
    pub fn add(&mut self, probs: [f32; 4], labels: [u8; 3]) {
        let (mut best, mut conf) = (0usize, probs[0]);
        for (c, p) in probs.iter().enumerate().skip(1) {
            if *p > conf {
                best = c;
                conf = *p;
            }
        }
        // bucketize(right=True) - 1: number of boundaries <= conf, minus one
        let bin = count_at_most(&self.boundaries, conf).saturating_sub(1);
        self.count[bin] += 1;
        self.conf[bin] += f64::from(conf);
        for (a, l) in labels.iter().enumerate() {
            self.correct[a][bin] += u64::from(usize::from(*l) == best);
        }
    }

    pub fn merge(&mut self, o: &EceBins) {
        for b in 0..52 {
            self.count[b] += o.count[b];
            self.conf[b] += o.conf[b];
            for a in 0..3 {
                self.correct[a][b] += o.correct[a][b];
            }
        }
    }

    /// The bins as the report reads them (the 50 of torchmetrics, then its bin of exact ones).
    pub fn to_curve(&self) -> crate::curves::Calibration {
        const BINS: usize = 51;
        crate::curves::Calibration {
            lower_edges: self.boundaries.iter().map(|b| f64::from(*b)).collect(),
            count: self.count[..BINS].to_vec(),
            confidence_sum: self.conf[..BINS].to_vec(),
            correct: self.correct.iter().map(|c| c[..BINS].to_vec()).collect(),
        }
    }

    /// `sum_b |acc_b - conf_b| * n_b / N` for annotator `a`.
    pub fn ece(&self, a: usize) -> f64 {
        let n: u64 = self.count.iter().sum();
        if n == 0 {
            return f64::NAN;
        }
        (0..52)
            .filter(|b| self.count[*b] > 0)
            .map(|b| {
                let c = self.count[b] as f64;
                let acc = self.correct[a][b] as f64 / c;
                let conf = self.conf[b] / c;
                (acc - conf).abs() * c / n as f64
            })
            .sum()
    }
}

/// How many of the ascending, roughly evenly spaced `edges` are `<= v` (as `partition_point`):
/// a guess from the value, then exact steps, instead of a branchy binary search per voxel.
fn count_at_most<T: Copy + PartialOrd + Into<f64>>(edges: &[T], v: T) -> usize {
    let n = edges.len();
    let guess = v.into() * (n - 1) as f64;
    let mut i = (guess.max(0.0) as usize).min(n);
    while i < n && edges[i] <= v {
        i += 1;
    }
    // step back over edges that are not <= v (greater, or incomparable with a NaN)
    while i > 0
        && !matches!(
            edges[i - 1].partial_cmp(&v),
            Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
        )
    {
        i -= 1;
    }
    i
}

/// Softmax over the 4 columns, computed in f64 and rounded to f32 (torchmetrics' fallback).
pub fn softmax4(p: [f32; 4]) -> [f32; 4] {
    let m = p.iter().fold(f32::NEG_INFINITY, |a, b| a.max(*b));
    let e = p.map(|v| (f64::from(v) - f64::from(m)).exp());
    let s: f64 = e.iter().sum();
    e.map(|v| (v / s) as f32)
}

/// ACE accumulators over ValUES' 20 bins with edges `linspace(0, 1 + 1e-8, 21)`.
#[derive(Debug, Clone)]
pub struct AceBins {
    edges: Vec<f64>,
    count: [u64; 21],
    conf: [f64; 21],
    correct: [[u64; 21]; 3],
    out_of_range: bool,
}

impl Default for AceBins {
    fn default() -> Self {
        Self {
            edges: crate::crps::linspace(0.0, 1.0 + 1e-8, 21),
            count: [0; 21],
            conf: [0.0; 21],
            correct: [[0; 21]; 3],
            out_of_range: false,
        }
    }
}

impl AceBins {
    /// Adds one voxel: `conf = max(p0..p3)`, `correct[a] = (L == A_a)`.
    pub fn add(&mut self, conf: f32, correct: [bool; 3]) {
        let c = f64::from(conf);
        if !(0.0..=1.0).contains(&c) {
            self.out_of_range = true;
            return;
        }
        // np.digitize(c, edges) - 1: index of the last edge <= c
        let bin = count_at_most(&self.edges, c).saturating_sub(1).min(20);
        self.count[bin] += 1;
        self.conf[bin] += c;
        for a in 0..3 {
            self.correct[a][bin] += u64::from(correct[a]);
        }
    }

    pub fn merge(&mut self, o: &AceBins) {
        self.out_of_range |= o.out_of_range;
        for b in 0..21 {
            self.count[b] += o.count[b];
            self.conf[b] += o.conf[b];
            for a in 0..3 {
                self.correct[a][b] += o.correct[a][b];
            }
        }
    }

    /// Unweighted mean over non-empty bins of `|accuracy - confidence|`. With
    /// `label_binarize_bug`, a correctness vector of a single class reads as all zeros (§9).
    pub fn ace(&self, a: usize, label_binarize_bug: bool) -> f64 {
        if self.out_of_range {
            return f64::NAN; // ValUES raises a ValueError for confidences outside [0, 1]
        }
        let n: u64 = self.count.iter().sum();
        let right: u64 = self.correct[a].iter().sum();
        let single_class = right == 0 || right == n;
        let mut total = 0.0;
        let mut bins = 0;
        for b in 0..21 {
            if self.count[b] == 0 {
                continue;
            }
            let c = self.count[b] as f64;
            let acc = if label_binarize_bug && single_class {
                0.0
            } else {
                self.correct[a][b] as f64 / c
            };
            total += (acc - self.conf[b] / c).abs();
            bins += 1;
        }
        if bins == 0 {
            f64::NAN
        } else {
            total / f64::from(bins)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_lookup_matches_a_binary_search() {
        let b = torch_boundaries();
        let e = crate::crps::linspace(0.0, 1.0 + 1e-8, 21);
        let mut values: Vec<f32> = (0..=2000).map(|i| i as f32 / 2000.0).collect();
        values.extend(b.iter().flat_map(|x| [*x, x.next_up(), x.next_down()]));
        values.extend([-0.5, 1.5, f32::NAN, f32::INFINITY, f32::NEG_INFINITY]);
        for v in values {
            assert_eq!(count_at_most(&b, v), b.partition_point(|x| *x <= v), "{v}");
            let c = f64::from(v);
            assert_eq!(count_at_most(&e, c), e.partition_point(|x| *x <= c), "{v}");
        }
    }

    #[test]
    fn confidence_one_has_its_own_bin() {
        let b = torch_boundaries();
        assert_eq!(b[50], 1.0);
        assert_eq!(b[0], 0.0);
        let mut bins = EceBins::default();
        bins.add([0.0, 1.0, 0.0, 0.0], [1, 1, 0]);
        assert_eq!(bins.count[50], 1);
        assert_eq!(bins.ece(0), 0.0);
        assert_eq!(bins.ece(2), 1.0);
    }

    #[test]
    fn ace_bins_follow_the_stretched_edges() {
        let mut a = AceBins::default();
        a.add(0.5, [true, false, true]); // lands in bin 9, not 10 (edges stretched by 1e-8)
        assert_eq!(a.count[9], 1);
        a.add(1.0, [true, true, true]);
        assert_eq!(a.count[19], 1);
        // annotator 2 has one right, one wrong: |0 - 0.5| and |1 - 1| over two bins
        assert_eq!(a.ace(1, false), 0.25);
        // annotator 1 is always right: the binarize bug turns accuracy into zeros
        assert_eq!(a.ace(0, true), 0.75);
        assert_eq!(a.ace(0, false), 0.25);
    }
}
