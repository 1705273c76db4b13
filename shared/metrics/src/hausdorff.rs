//! Hausdorff distances (METRICS.md §5) from exact distance transforms, never from point pairs.

use crate::edt::squared_edt;

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

/// Largest squared distance from the voxels of `from` outside `other` to `other`, given the
/// transform of `other`'s edge voxels. For a voxel outside a mask the nearest mask voxel is always
/// an edge voxel (a step from an interior voxel towards the query would be closer and still
/// inside), so edge transforms give full-set distances and full-mask transforms are never needed.
pub fn directed_sq(from: &[bool], other: &[bool], other_to_edge: &[f64]) -> f64 {
    (0..from.len())
        .filter(|i| from[*i] && !other[*i])
        .map(|i| other_to_edge[i])
        .fold(0.0f64, f64::max)
}

/// A mask with the distance transforms of its edge voxels, in the spacing's units and in voxels.
#[derive(Debug)]
pub struct Surface {
    mask: Vec<bool>,
    edge: Vec<bool>,
    to_edge: Vec<f64>,
    to_edge_vox: Vec<f64>,
}

impl Surface {
    pub fn new(mask: Vec<bool>, dims: [usize; 3], spacing: [f64; 3]) -> Self {
        let edge = edges(&mask, dims);
        Self {
            to_edge: squared_edt(&edge, dims, spacing),
            to_edge_vox: squared_edt(&edge, dims, [1.0; 3]),
            mask,
            edge,
        }
    }

    pub fn any(&self) -> bool {
        self.mask.iter().any(|v| *v)
    }

    /// All distances to another non-empty mask of the same box.
    pub fn distances(&self, other: &Surface) -> HausdorffResult {
        let full = |mine: &[f64], theirs: &[f64]| {
            directed_sq(&self.mask, &other.mask, theirs)
                .max(directed_sq(&other.mask, &self.mask, mine))
                .sqrt()
        };
        let at_edges = |s: &Surface, d: &[f64]| -> Vec<f64> {
            (0..s.edge.len())
                .filter(|i| s.edge[*i])
                .map(|i| d[i].sqrt())
                .collect()
        };
        let mut ab = at_edges(self, &other.to_edge);
        let mut ba = at_edges(other, &self.to_edge);
        let max = |v: &[f64]| v.iter().copied().fold(0.0f64, f64::max);
        HausdorffResult {
            hd: full(&self.to_edge, &other.to_edge),
            hd_vox: full(&self.to_edge_vox, &other.to_edge_vox),
            hd_surface: max(&ab).max(max(&ba)),
            hd95: percentile(&mut ab, 95.0).max(percentile(&mut ba, 95.0)),
        }
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
    let a = Surface::new(bx.a.clone(), bx.dims, spacing);
    let b = Surface::new(bx.b.clone(), bx.dims, spacing);
    match (a.any(), b.any()) {
        (false, false) => HausdorffResult::NAN,
        (true, true) => a.distances(&b),
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
