//! Hausdorff distances (METRICS.md §5) from exact distance transforms, never from point pairs.

use crate::edt::squared_edt_into;

/// Distances between two masks on one grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HausdorffResult {
    /// Symmetric HD of the full voxel sets (as scipy `directed_hausdorff`, symmetrised), in the
    /// spacing's units.
    pub hd: f64,
    /// The same in voxel units.
    pub hd_vox: f64,
    /// MONAI HD95: 95th percentile per direction of edge-to-edge distances, max of the two.
    pub hd95: f64,
    /// Max of the same edge distances (surface HD).
    pub hd_surface: f64,
}

impl HausdorffResult {
    /// Both masks empty.
    pub const NAN: Self = Self {
        hd: f64::NAN,
        hd_vox: f64::NAN,
        hd95: f64::NAN,
        hd_surface: f64::NAN,
    };
    /// Exactly one mask empty.
    pub const INF: Self = Self {
        hd: f64::INFINITY,
        hd_vox: f64::INFINITY,
        hd95: f64::INFINITY,
        hd_surface: f64::INFINITY,
    };
}

/// A sub-box of the ROI holding both masks, so that transforms cost the organ's size, not the
/// volume's; distances are exact because every site lies inside the box.
#[derive(Debug)]
pub struct Boxed {
    pub dims: [usize; 3],
    /// First voxel of the box in the full volume.
    pub lo: [usize; 3],
    pub a: Vec<bool>,
    pub b: Vec<bool>,
}

impl Boxed {
    /// Crops two masks given by predicates over a flat `[z, y, x]` volume to their joint bbox.
    /// `None` when both are empty.
    pub fn new(
        dims: [usize; 3],
        a: impl Fn(usize) -> bool,
        b: impl Fn(usize) -> bool,
    ) -> Option<Self> {
        let [nz, ny, nx] = dims;
        let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    let i = (z * ny + y) * nx + x;
                    if a(i) || b(i) {
                        for (k, c) in [z, y, x].into_iter().enumerate() {
                            lo[k] = lo[k].min(c);
                            hi[k] = hi[k].max(c + 1);
                        }
                    }
                }
            }
        }
        if lo[0] == usize::MAX {
            return None;
        }
        let bd = [0, 1, 2].map(|k| hi[k] - lo[k]);
        let n = bd.iter().product();
        let (mut ma, mut mb) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for z in lo[0]..hi[0] {
            for y in lo[1]..hi[1] {
                for x in lo[2]..hi[2] {
                    let i = (z * ny + y) * nx + x;
                    ma.push(a(i));
                    mb.push(b(i));
                }
            }
        }
        Some(Self {
            dims: bd,
            lo,
            a: ma,
            b: mb,
        })
    }

    /// Another mask of the full volume (`full_dims`), restricted to this box.
    pub fn extract(&self, full_dims: [usize; 3], mask: impl Fn(usize) -> bool) -> Vec<bool> {
        let [_, ny, nx] = full_dims;
        let mut out = Vec::with_capacity(self.a.len());
        for z in self.lo[0]..self.lo[0] + self.dims[0] {
            for y in self.lo[1]..self.lo[1] + self.dims[1] {
                for x in self.lo[2]..self.lo[2] + self.dims[2] {
                    out.push(mask((z * ny + y) * nx + x));
                }
            }
        }
        out
    }
}

/// A mask of a box with its edge voxels.
#[derive(Debug)]
pub struct Mask {
    pub mask: Vec<bool>,
    pub edge: Vec<bool>,
}

impl Mask {
    pub fn new(mask: Vec<bool>, dims: [usize; 3]) -> Self {
        let edge = edges(&mask, dims);
        Self { mask, edge }
    }

    pub fn any(&self) -> bool {
        self.mask.contains(&true)
    }
}

/// Distances from one mask's voxels to another mask (see [`toward`]).
#[derive(Debug, Clone, Default)]
pub struct Toward {
    /// Largest squared distance of a voxel outside the target, in the spacing's units.
    pub full_sq: f64,
    /// The same in voxel units.
    pub full_sq_vox: f64,
    /// Distance of each edge voxel to the target's edge, in the spacing's units.
    pub edge: Vec<f64>,
}

/// Which distances [`toward`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Units {
    /// Full-set distances in voxel units only (statapp's Hausdorff).
    Voxels,
    /// Everything in [`Toward`].
    All,
}

/// Distances from the voxels of each mask of `from` to the non-empty mask `to`, all from one
/// transform per unit of `to`'s edge voxels, evaluated only where they are read. For a voxel
/// outside a mask the nearest mask voxel is always an edge voxel (a step from an interior voxel
/// towards the query would be closer and still inside), so edge transforms give full-set
/// distances. `buf` is reused between calls.
pub fn toward(
    to: &Mask,
    from: &[&Mask],
    dims: [usize; 3],
    spacing: [f64; 3],
    units: Units,
    buf: &mut Vec<f64>,
) -> Vec<Toward> {
    let outside = |f: &Mask, i: usize| f.mask[i] && !to.mask[i];
    let max_outside = |f: &Mask, d: &[f64]| {
        (0..d.len())
            .filter(|i| outside(f, *i))
            .map(|i| d[i])
            .fold(0.0f64, f64::max)
    };
    let mut out = vec![Toward::default(); from.len()];
    let n = to.mask.len();
    let needed: Vec<bool> = (0..n).map(|i| from.iter().any(|f| outside(f, i))).collect();
    squared_edt_into(&to.edge, dims, [1.0; 3], Some(&needed), buf);
    for (o, f) in out.iter_mut().zip(from) {
        o.full_sq_vox = max_outside(f, buf);
    }
    if units == Units::All {
        let needed: Vec<bool> = (0..n)
            .map(|i| needed[i] || from.iter().any(|f| f.edge[i]))
            .collect();
        squared_edt_into(&to.edge, dims, spacing, Some(&needed), buf);
        for (o, f) in out.iter_mut().zip(from) {
            o.full_sq = max_outside(f, buf);
            o.edge = (0..n)
                .filter(|i| f.edge[*i])
                .map(|i| buf[i].sqrt())
                .collect();
        }
    }
    out
}

/// The non-empty prediction `pred` against each annotator's mask, both ways: per annotator,
/// `None` if its mask is empty, else `f(prediction -> annotator, annotator -> prediction)`. The
/// transforms of the prediction are computed once for all annotators; each pair is handed to
/// `f` as soon as it exists and dropped after (a poor prediction's edge distances are as many
/// as its voxels).
pub fn both_ways<R>(
    pred: &Mask,
    masks: &[Mask; 3],
    dims: [usize; 3],
    spacing: [f64; 3],
    units: Units,
    f: impl Fn(Toward, Toward) -> R,
) -> [Option<R>; 3] {
    let drawn: Vec<usize> = (0..3).filter(|a| masks[*a].any()).collect();
    let from: Vec<&Mask> = drawn.iter().map(|a| &masks[*a]).collect();
    let mut buf = Vec::new();
    let to_pred = toward(pred, &from, dims, spacing, units, &mut buf);
    let mut out = [None, None, None];
    for (a, to_pred) in drawn.into_iter().zip(to_pred) {
        let from_pred = toward(&masks[a], &[pred], dims, spacing, units, &mut buf);
        out[a] = from_pred.into_iter().next().map(|from| f(from, to_pred));
    }
    out
}

/// All distances between two non-empty masks from their [`toward`] results (consumed: the
/// 95th percentile reorders the edge distances in place).
pub fn combine(mut a_to_b: Toward, mut b_to_a: Toward) -> HausdorffResult {
    let max = |v: &[f64]| v.iter().copied().fold(0.0f64, f64::max);
    HausdorffResult {
        hd: a_to_b.full_sq.max(b_to_a.full_sq).sqrt(),
        hd_vox: a_to_b.full_sq_vox.max(b_to_a.full_sq_vox).sqrt(),
        hd_surface: max(&a_to_b.edge).max(max(&b_to_a.edge)),
        hd95: percentile(&mut a_to_b.edge, 95.0).max(percentile(&mut b_to_a.edge, 95.0)),
    }
}

/// Edge voxels: in the mask with at least one 6-neighbour outside it (the box border counts as
/// outside, like scipy's `binary_erosion` with border value 0).
pub fn edges(mask: &[bool], dims: [usize; 3]) -> Vec<bool> {
    let [nz, ny, nx] = dims;
    let at = |z: isize, y: isize, x: isize| {
        z >= 0
            && y >= 0
            && x >= 0
            && (z as usize) < nz
            && (y as usize) < ny
            && (x as usize) < nx
            && mask[((z as usize) * ny + y as usize) * nx + x as usize]
    };
    let mut out = vec![false; mask.len()];
    for z in 0..nz as isize {
        for y in 0..ny as isize {
            for x in 0..nx as isize {
                if !at(z, y, x) {
                    continue;
                }
                let interior = at(z - 1, y, x)
                    && at(z + 1, y, x)
                    && at(z, y - 1, x)
                    && at(z, y + 1, x)
                    && at(z, y, x - 1)
                    && at(z, y, x + 1);
                out[((z as usize) * ny + y as usize) * nx + x as usize] = !interior;
            }
        }
    }
    out
}

/// `np.percentile(values, q)` with linear interpolation; `values` is reordered.
pub fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let pos = q / 100.0 * (values.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = pos - lo as f64;
    let (_, a, rest) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let a = *a;
    if frac == 0.0 || rest.is_empty() {
        return a;
    }
    let b = rest.iter().copied().fold(f64::INFINITY, f64::min);
    // numpy's _lerp, which is exact at both ends
    let diff = b - a;
    if frac >= 0.5 {
        b - diff * (1.0 - frac)
    } else {
        a + diff * frac
    }
}

/// All distances between the two masks of a box; NaN if both are empty, inf if one is.
pub fn hausdorff(bx: &Boxed, spacing: [f64; 3]) -> HausdorffResult {
    let a = Mask::new(bx.a.clone(), bx.dims);
    let b = Mask::new(bx.b.clone(), bx.dims);
    match (a.any(), b.any()) {
        (false, false) => HausdorffResult::NAN,
        (true, true) => {
            let mut buf = Vec::new();
            let ab = toward(&b, &[&a], bx.dims, spacing, Units::All, &mut buf);
            let ba = toward(&a, &[&b], bx.dims, spacing, Units::All, &mut buf);
            match (ab.into_iter().next(), ba.into_iter().next()) {
                (Some(ab), Some(ba)) => combine(ab, ba),
                _ => HausdorffResult::INF,
            }
        }
        _ => HausdorffResult::INF,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ball_against_its_shell() {
        // full-set HD = radius-ish, surface HD = 0 (METRICS.md §5)
        let n = 15;
        let dims = [n, n, n];
        let c = 7.0;
        let ball: Vec<bool> = (0..n * n * n)
            .map(|i| {
                let (z, y, x) = ((i / (n * n)) as f64, ((i / n) % n) as f64, (i % n) as f64);
                ((z - c).powi(2) + (y - c).powi(2) + (x - c).powi(2)).sqrt() <= 5.0
            })
            .collect();
        let shell = edges(&ball, dims);
        let bx = Boxed::new(dims, |i| ball[i], |i| shell[i]).unwrap();
        let r = hausdorff(&bx, [1.0; 3]);
        assert_eq!(r.hd_surface, 0.0);
        assert_eq!(r.hd95, 0.0);
        assert!(r.hd >= 4.0 && r.hd <= 5.0, "{}", r.hd);
    }

    #[test]
    fn empty_masks() {
        let bx = Boxed::new([1, 1, 3], |i| i == 0, |_| false).unwrap();
        assert!(hausdorff(&bx, [1.0; 3]).hd.is_infinite());
        assert!(Boxed::new([1, 1, 3], |_| false, |_| false).is_none());
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        // np.percentile([4, 1, 3, 2], 95) == 3.8499999999999996
        assert_eq!(percentile(&mut v, 95.0), 3.8499999999999996);
        assert_eq!(percentile(&mut [5.0], 95.0), 5.0);
    }
}
