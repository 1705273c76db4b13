//! Rasterises an [`Anatomy`] onto a voxel grid: CT intensities with partial-volume edges and noise,
//! and the three annotators' label maps. Slices are rendered in parallel; every random value is a
//! pure function of (seed, position), so the output is identical whatever the thread count.

use crate::anatomy::{Anatomy, FOV_INPLANE_MM, FOV_Z_MM, Structure};
use crate::noise::{Rng, hash, unit};
use rayon::prelude::*;

/// Rendered voxels in `[z, y, x]` order.
#[derive(Debug)]
pub struct Rendered {
    pub ct: Vec<i16>,
    pub labels: [Vec<u8>; 3],
}

/// Canonical-frame position (mm) of voxel centres along each axis.
struct Grid {
    shape: [usize; 3],
    step: [f32; 3],
}

impl Grid {
    fn new(shape: [usize; 3]) -> Self {
        let step = [
            FOV_Z_MM / shape[0] as f32,
            FOV_INPLANE_MM / shape[1] as f32,
            FOV_INPLANE_MM / shape[2] as f32,
        ];
        Self { shape, step }
    }

    /// Voxel index → canonical (X, Y, Z) in mm.
    fn point(&self, z: usize, y: usize, x: usize) -> [f32; 3] {
        [
            (x as f32 + 0.5) * self.step[2] - FOV_INPLANE_MM / 2.0,
            (y as f32 + 0.5) * self.step[1] - FOV_INPLANE_MM / 2.0,
            (z as f32 + 0.5) * self.step[0] - FOV_Z_MM / 2.0,
        ]
    }

    /// Voxel index range along `axis` (0 z, 1 y, 2 x) covering canonical `[lo, hi]` mm.
    fn range(&self, axis: usize, lo: f32, hi: f32) -> std::ops::Range<usize> {
        let half = if axis == 0 {
            FOV_Z_MM / 2.0
        } else {
            FOV_INPLANE_MM / 2.0
        };
        let to_index = |v: f32| (v + half) / self.step[axis] - 0.5;
        let a = to_index(lo).floor().max(0.0) as usize;
        let b = (to_index(hi).ceil() + 1.0).clamp(0.0, self.shape[axis] as f32) as usize;
        a.min(b)..b
    }
}

/// Linear interpolation through `(t, value)` knots sorted by t.
fn piecewise(t: f32, knots: &[(f32, f32)]) -> f32 {
    let mut prev = knots[0];
    if t <= prev.0 {
        return prev.1;
    }
    for &k in &knots[1..] {
        if t <= k.0 {
            let w = (t - prev.0) / (k.0 - prev.0);
            return prev.1 + w * (k.1 - prev.1);
        }
        prev = k;
    }
    prev.1
}

fn smoothstep(edge: f32, width: f32, v: f32) -> f32 {
    let t = ((v - edge) / width + 0.5).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Background intensity: air, subcutaneous fat, abdominal wall muscle, then the viscera texture
/// (bowel loops, mesenteric fat and a little gas).
fn body_hu(a: &Anatomy, p: [f32; 3], h: f32) -> f32 {
    let b = &a.body;
    let swell = 1.0 + 0.04 * (p[2] / 70.0).sin();
    let (rx, ry) = (b.radii[0] * swell, b.radii[1] * swell);
    let (dx, dy) = (p[0] - b.center[0], p[1] - b.center[1]);
    let q = ((dx / rx).powi(2) + (dy / ry).powi(2)).sqrt().max(1e-6);
    let grad = ((dx / (rx * rx)).powi(2) + (dy / (ry * ry)).powi(2)).sqrt() / q;
    let base = (q - 1.0) / grad.max(1e-6);
    // the surface noise moves the skin by at most 6 mm: skip it far outside
    if base > 6.0 + h {
        return -1000.0;
    }
    let outside = base + 6.0 * b.surface.at(p);
    if outside > h {
        return -1000.0;
    }
    let depth = -outside;
    let (muscle, fat) = (50.0, -105.0);
    if depth < b.fat_mm + b.muscle_mm - 2.0 {
        // subcutaneous fat and the abdominal wall: no viscera texture needed
        let tissue = fat + (muscle - fat) * smoothstep(b.fat_mm, 2.0, depth);
        let w = (0.5 - outside / h).clamp(0.0, 1.0);
        return -1000.0 * (1.0 - w) + tissue * w;
    }
    // two octaves, the second on rotated axes, so bowel loops do not line up with the lattice
    let r = [
        0.8 * p[0] - 0.6 * p[1],
        0.6 * p[0] + 0.8 * p[1],
        p[2] + 31.0,
    ];
    let t = 0.7 * b.viscera.at(p) + 0.45 * b.viscera.at(r.map(|v| v * 1.9));
    let viscera = piecewise(
        t,
        &[
            (-1.0, -850.0),
            (-0.78, -800.0),
            (-0.66, 30.0),
            (0.12, 38.0),
            (0.32, -95.0),
            (1.0, -105.0),
        ],
    );
    let inner = muscle + (viscera - muscle) * smoothstep(b.fat_mm + b.muscle_mm, 2.0, depth);
    let tissue = fat + (inner - fat) * smoothstep(b.fat_mm, 2.0, depth);
    let w = (0.5 - outside / h).clamp(0.0, 1.0);
    -1000.0 * (1.0 - w) + tissue * w
}

/// Per-structure voxel ranges, computed once.
struct Placed<'a> {
    s: &'a Structure,
    z: std::ops::Range<usize>,
    y: std::ops::Range<usize>,
    x: std::ops::Range<usize>,
}

/// Renders the CT (HU, i16) and the three label maps for a grid of `shape` voxels.
pub fn render(anatomy: &Anatomy, shape: [usize; 3], noise_seed: u64, noise_hu: f32) -> Rendered {
    let grid = Grid::new(shape);
    let h = grid.step[1].max(grid.step[2]);
    let reach = anatomy.max_rater_reach();
    let placed: Vec<Placed> = anatomy
        .structures
        .iter()
        .map(|s| {
            let (lo, hi) = s.bounds(reach + h);
            Placed {
                s,
                z: grid.range(0, lo[2], hi[2]),
                y: grid.range(1, lo[1], hi[1]),
                x: grid.range(2, lo[0], hi[0]),
            }
        })
        .collect();
    let plane = shape[1] * shape[2];
    let n = shape[0] * plane;
    let mut ct = vec![0i16; n];
    let mut l = [vec![0u8; n], vec![0u8; n], vec![0u8; n]];
    let [l1, l2, l3] = &mut l;
    ct.par_chunks_mut(plane)
        .zip(l1.par_chunks_mut(plane))
        .zip(l2.par_chunks_mut(plane))
        .zip(l3.par_chunks_mut(plane))
        .enumerate()
        .for_each(|(z, (((ct, a1), a2), a3))| {
            let labels = [a1, a2, a3];
            let mut hu = vec![0f32; plane];
            for y in 0..shape[1] {
                for x in 0..shape[2] {
                    hu[y * shape[2] + x] = body_hu(anatomy, grid.point(z, y, x), h);
                }
            }
            for pl in placed.iter().filter(|pl| pl.z.contains(&z)) {
                let s = pl.s;
                for y in pl.y.clone() {
                    for x in pl.x.clone() {
                        let p = grid.point(z, y, x);
                        let f = s.field(p);
                        let i = y * shape[2] + x;
                        if f < h / 2.0 {
                            let w = (0.5 - f / h).clamp(0.0, 1.0);
                            hu[i] = hu[i] * (1.0 - w) + s.hu(p, -f) * w;
                        }
                        if s.label > 0 && f < reach {
                            for (r, style) in anatomy.raters.iter().enumerate() {
                                let k = usize::from(s.label);
                                let base = if style.smooth { s.smooth_field(p) } else { f };
                                let wobble = unit(hash(style.slice_seed, &[z as i64, k as i64]))
                                    as f32
                                    * 2.0
                                    - 1.0;
                                let fa = base
                                    + style.offset_mm[k]
                                    + style.jitter_mm[k] * style.jitter.at(p)
                                    + style.slice_jitter_mm[k] * wobble;
                                if fa < 0.0 {
                                    labels[r][i] = s.label;
                                }
                            }
                        }
                    }
                }
            }
            let mut rng = Rng::new(hash(noise_seed, &[z as i64]));
            for (out, v) in ct.iter_mut().zip(&hu) {
                let noisy = v + noise_hu * rng.normal() as f32;
                *out = noisy.round().clamp(-1024.0, 3071.0) as i16;
            }
        });
    Rendered { ct, labels: l }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piecewise_interpolates_and_clamps() {
        let k = [(0.0, 0.0), (1.0, 10.0), (2.0, 0.0)];
        assert_eq!(piecewise(-1.0, &k), 0.0);
        assert_eq!(piecewise(0.5, &k), 5.0);
        assert_eq!(piecewise(1.5, &k), 5.0);
        assert_eq!(piecewise(3.0, &k), 0.0);
    }

    #[test]
    fn grid_range_covers_interval() {
        let g = Grid::new([64, 96, 96]);
        let r = g.range(2, -10.0, 10.0);
        for x in [r.start, r.end - 1] {
            let px = g.point(0, 0, x)[0];
            assert!((-10.0 - g.step[2]..=10.0 + g.step[2]).contains(&px), "{px}");
        }
        assert_eq!(g.range(2, -1000.0, 1000.0), 0..96);
        assert!(g.range(2, 500.0, 600.0).is_empty());
    }
}
