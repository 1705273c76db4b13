//! Exact Euclidean distance transform in linear time (Felzenszwalb & Huttenlocher, "Distance
//! transforms of sampled functions", 2012): separable 1-D lower envelopes of parabolas, one axis
//! at a time, with anisotropic spacing. Lines are independent, so each pass runs in parallel.

use rayon::prelude::*;

/// Squared distance (in spacing units) from every voxel to the nearest voxel where `site` is true;
/// `f64::INFINITY` everywhere if there is none. `dims` is `[z, y, x]`, data in C order.
pub fn squared_edt(site: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
    let [nz, ny, nx] = dims;
    let mut d: Vec<f64> = site
        .iter()
        .map(|s| if *s { 0.0 } else { f64::INFINITY })
        .collect();
    if d.is_empty() {
        return d;
    }
    // x: the input is binary, so the first pass is just the distance to the nearest site on
    // the line (two sweeps), squared
    let sx = spacing[2];
    d.par_chunks_mut(nx).for_each(|line| {
        let mut last: Option<usize> = None;
        for x in 0..line.len() {
            if line[x] == 0.0 {
                last = Some(x);
            } else if let Some(p) = last {
                let dx = (x - p) as f64 * sx;
                line[x] = dx * dx;
            }
        }
        let mut next: Option<usize> = None;
        for x in (0..line.len()).rev() {
            if line[x] == 0.0 {
                next = Some(x);
            } else if let Some(p) = next {
                let dx = (p - x) as f64 * sx;
                line[x] = line[x].min(dx * dx);
            }
        }
    });
    // y: lines inside each z plane
    d.par_chunks_mut(ny * nx)
        .for_each_init(Scratch::default, |s, plane| {
            for x in 0..nx {
                s.line.clear();
                s.line.extend((0..ny).map(|y| plane[y * nx + x]));
                s.transform_buffer(spacing[1]);
                for y in 0..ny {
                    plane[y * nx + x] = s.out[y];
                }
            }
        });
    // z: one task per y row gathers the (z, x) slab (x stays contiguous), transforms its
    // columns and hands the slab back; the write-back is a strided copy of contiguous runs
    if nz > 1 {
        let plane = ny * nx;
        let slabs: Vec<Vec<f64>> = (0..ny)
            .into_par_iter()
            .map_init(Scratch::default, |s, y| {
                let mut slab = vec![0.0; nz * nx];
                for z in 0..nz {
                    slab[z * nx..(z + 1) * nx]
                        .copy_from_slice(&d[z * plane + y * nx..z * plane + (y + 1) * nx]);
                }
                for x in 0..nx {
                    s.line.clear();
                    s.line.extend((0..nz).map(|z| slab[z * nx + x]));
                    s.transform_buffer(spacing[0]);
                    for z in 0..nz {
                        slab[z * nx + x] = s.out[z];
                    }
                }
                slab
            })
            .collect();
        for (y, slab) in slabs.into_iter().enumerate() {
            for z in 0..nz {
                d[z * plane + y * nx..z * plane + (y + 1) * nx]
                    .copy_from_slice(&slab[z * nx..(z + 1) * nx]);
            }
        }
    }
    d
}

/// Reusable buffers for the 1-D transform.
#[derive(Default)]
struct Scratch {
    line: Vec<f64>,
    out: Vec<f64>,
    v: Vec<usize>,
    z: Vec<f64>,
}

impl Scratch {
    /// `out[q] = min_p ((q - p) * step)^2 + line[p]` over the finite `line[p]`.
    fn transform_buffer(&mut self, step: f64) {
        let f = &self.line;
        let n = f.len();
        self.out.clear();
        self.out.resize(n, f64::INFINITY);
        self.v.clear();
        self.z.clear();
        let pos = |q: usize| q as f64 * step;
        for q in 0..n {
            if !f[q].is_finite() {
                continue;
            }
            // pop parabolas hidden by the new one
            let mut s = f64::NEG_INFINITY;
            while let Some(&p) = self.v.last() {
                let (xq, xp) = (pos(q), pos(p));
                s = ((f[q] + xq * xq) - (f[p] + xp * xp)) / (2.0 * (xq - xp));
                let zk = self.z[self.z.len() - 1];
                if s <= zk {
                    self.v.pop();
                    self.z.pop();
                    s = f64::NEG_INFINITY;
                } else {
                    break;
                }
            }
            if self.v.is_empty() {
                s = f64::NEG_INFINITY;
            }
            self.v.push(q);
            self.z.push(s);
        }
        if self.v.is_empty() {
            return;
        }
        let mut k = 0;
        for q in 0..n {
            let x = pos(q);
            while k + 1 < self.v.len() && self.z[k + 1] < x {
                k += 1;
            }
            let p = self.v[k];
            let dx = (q as f64 - p as f64) * step;
            self.out[q] = dx * dx + f[p];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(site: &[bool], dims: [usize; 3], sp: [f64; 3]) -> Vec<f64> {
        let idx = |i: usize| {
            [
                i / (dims[1] * dims[2]),
                (i / dims[2]) % dims[1],
                i % dims[2],
            ]
        };
        (0..site.len())
            .map(|i| {
                let a = idx(i);
                (0..site.len())
                    .filter(|j| site[*j])
                    .map(|j| {
                        let b = idx(j);
                        (0..3)
                            .map(|k| ((a[k] as f64 - b[k] as f64) * sp[k]).powi(2))
                            .sum::<f64>()
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }

    #[test]
    fn matches_brute_force_anisotropic() {
        let dims = [4, 7, 9];
        let sp = [2.5, 0.8, 0.6];
        let mut state = 12345u64;
        for density in [1, 5, 30] {
            let site: Vec<bool> = (0..dims.iter().product::<usize>())
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 33) % 100 < density
                })
                .collect();
            let fast = squared_edt(&site, dims, sp);
            let slow = brute(&site, dims, sp);
            for (a, b) in fast.iter().zip(&slow) {
                assert!((a - b).abs() <= 1e-9 * b.max(1.0), "{a} vs {b}");
            }
        }
        let none = squared_edt(&[false; 10], [1, 2, 5], sp);
        assert!(none.iter().all(|v| v.is_infinite()));
    }
}
