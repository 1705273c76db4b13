//! Exact Euclidean distance transform in linear time (Felzenszwalb & Huttenlocher, "Distance
//! transforms of sampled functions", 2012): separable 1-D lower envelopes of parabolas, one axis
//! at a time, with anisotropic spacing.
//!
//! Axis order is chosen for memory access and for sparse reads: the binary first pass runs along
//! z as two sweeps over whole planes (streaming); then each plane is one task (cache resident):
//! x along its contiguous rows, y along its columns. When only a few voxels are read (Hausdorff
//! distances need the transform at disagreeing and edge voxels), the x pass evaluates only the
//! columns that hold one and the y pass only those voxels. Envelope tests compare cross products
//! instead of dividing, which keeps voxel-unit transforms exact.

use rayon::prelude::*;

/// Squared distance (in spacing units) from every voxel to the nearest voxel where `site` is true;
/// `f64::INFINITY` everywhere if there is none. `dims` is `[z, y, x]`, data in C order.
pub fn squared_edt(site: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
    let mut d = Vec::new();
    squared_edt_into(site, dims, spacing, None, &mut d);
    d
}

/// [`squared_edt`] into a reused buffer, exact only where `needed` is true (everywhere if `None`):
/// planes without a needed voxel skip the in-plane passes, which is most of the work; the others
/// evaluate only the needed columns and voxels, or the voxels directly when they are few.
pub fn squared_edt_into(
    site: &[bool],
    dims: [usize; 3],
    spacing: [f64; 3],
    needed: Option<&[bool]>,
    d: &mut Vec<f64>,
) {
    let [nz, ny, nx] = dims;
    let plane = ny * nx;
    d.clear();
    d.resize(site.len(), f64::INFINITY);
    if d.is_empty() {
        return;
    }
    // z: the input is binary, so the first pass is the distance to the nearest site on each
    // z line; `near` holds the z of the last (then next) site seen at each (y, x)
    let sz = spacing[0];
    let mut near = vec![usize::MAX; plane];
    for z in 0..nz {
        let (s, out) = (&site[z * plane..][..plane], &mut d[z * plane..][..plane]);
        for j in 0..plane {
            if s[j] {
                near[j] = z;
                out[j] = 0.0;
            } else if near[j] != usize::MAX {
                let dz = (z - near[j]) as f64 * sz;
                out[j] = dz * dz;
            }
        }
    }
    near.fill(usize::MAX);
    for z in (0..nz).rev() {
        let (s, out) = (&site[z * plane..][..plane], &mut d[z * plane..][..plane]);
        for j in 0..plane {
            if s[j] {
                near[j] = z;
            } else if near[j] != usize::MAX {
                let dz = (near[j] - z) as f64 * sz;
                out[j] = out[j].min(dz * dz);
            }
        }
    }
    // then each plane on its own: x along the contiguous rows, y along the columns, evaluated
    // only at the columns (x pass) and voxels (y pass) that are read afterwards
    d.par_chunks_mut(plane)
        .enumerate()
        .for_each_init(Scratch::default, |s, (z, values)| {
            let mask = needed.map(|m| &m[z * plane..][..plane]);
            let mut cols = vec![mask.is_none(); nx];
            if let Some(m) = mask {
                for row in m.chunks(nx) {
                    for (c, v) in cols.iter_mut().zip(row) {
                        *c |= *v;
                    }
                }
                if !cols.contains(&true) {
                    return;
                }
                // few voxels read: evaluate them directly, unless that costs more than the passes
                let wanted: Vec<usize> = (0..plane).filter(|j| m[*j]).collect();
                if let Some(found) = sparse(values, [ny, nx], spacing, &wanted, 2 * plane) {
                    for (j, v) in wanted.into_iter().zip(found) {
                        values[j] = v;
                    }
                    return;
                }
            }
            for row in values.chunks_mut(nx) {
                s.line.clear();
                s.line.extend_from_slice(row);
                s.transform(spacing[2], &cols);
                for x in (0..nx).filter(|x| cols[*x]) {
                    row[x] = s.out[x];
                }
            }
            for x in (0..nx).filter(|x| cols[*x]) {
                s.line.clear();
                s.line.extend((0..ny).map(|y| values[y * nx + x]));
                s.wanted.clear();
                s.wanted
                    .extend((0..ny).map(|y| mask.is_none_or(|m| m[y * nx + x])));
                let wanted = std::mem::take(&mut s.wanted);
                s.transform(spacing[1], &wanted);
                for y in (0..ny).filter(|y| wanted[*y]) {
                    values[y * nx + x] = s.out[y];
                }
                s.wanted = wanted;
            }
        });
}

/// The transform at a few voxels `wanted` (indices into one plane of z-pass values `g`, `dims`
/// `[y, x]`), straight from its definition `min over (y', x') of dy^2 + dx^2 + g(y', x')`: rows
/// are visited by growing `|dy|` and each row outwards from the voxel, stopping as soon as the
/// in-plane offset alone reaches the best value, so the work is about the squared distance in
/// voxels. The sums are grouped as in the passes, so the values are the same. `None` when more
/// than `budget` candidates would be visited: the passes are cheaper then.
fn sparse(
    g: &[f64],
    [ny, nx]: [usize; 2],
    spacing: [f64; 3],
    wanted: &[usize],
    budget: usize,
) -> Option<Vec<f64>> {
    let (sy, sx) = (spacing[1], spacing[2]);
    let mut work = 0usize;
    let mut found = Vec::with_capacity(wanted.len());
    for &j in wanted {
        let (y0, x0) = (j / nx, j % nx);
        let mut best = f64::INFINITY;
        for dy in 0..ny.max(1) {
            let ty = (dy as f64 * sy) * (dy as f64 * sy);
            if ty >= best || (dy > y0 && y0 + dy >= ny) {
                break;
            }
            let rows = [y0.checked_sub(dy), (dy > 0).then_some(y0 + dy)];
            for y in rows.into_iter().flatten().filter(|y| *y < ny) {
                let row = &g[y * nx..][..nx];
                for dx in 0..nx {
                    let tx = (dx as f64 * sx) * (dx as f64 * sx);
                    if ty + tx >= best || (dx > x0 && x0 + dx >= nx) {
                        break;
                    }
                    work += 1;
                    if x0 + dx < nx {
                        best = best.min(ty + (tx + row[x0 + dx]));
                    }
                    if dx > 0 && dx <= x0 {
                        best = best.min(ty + (tx + row[x0 - dx]));
                    }
                }
            }
            if work > budget {
                return None;
            }
        }
        found.push(best);
    }
    Some(found)
}

/// Reusable buffers for the 1-D transform.
#[derive(Default)]
struct Scratch {
    line: Vec<f64>,
    out: Vec<f64>,
    /// Where the output of the current line is read.
    wanted: Vec<bool>,
    /// Envelope, `len` entries used: index, position and `f + position^2` of each parabola.
    v: Vec<usize>,
    x: Vec<f64>,
    g: Vec<f64>,
}

impl Scratch {
    /// `out[q] = min_p ((q - p) * step)^2 + line[p]` over the finite `line[p]`, for the `q`
    /// where `needed` is true (the others are left unspecified).
    fn transform(&mut self, step: f64, needed: &[bool]) {
        let n = self.line.len();
        let f = &self.line[..];
        self.out.clear();
        self.out.resize(n, f64::INFINITY);
        self.v.resize(n, 0);
        self.x.resize(n, 0.0);
        self.g.resize(n, 0.0);
        let (v, xs, gs) = (&mut self.v[..n], &mut self.x[..n], &mut self.g[..n]);
        let mut len = 0usize;
        for (q, fq) in f.iter().enumerate() {
            if !fq.is_finite() {
                continue;
            }
            let xq = q as f64 * step;
            let gq = fq + xq * xq;
            // pop the top parabola while the new one overtakes it no later than the top overtook
            // the one below: (gq - gp) / 2(xq - xp) <= (gp - gr) / 2(xp - xr), denominators > 0
            while len >= 2 {
                let (xr, xp, gr, gp) = (xs[len - 2], xs[len - 1], gs[len - 2], gs[len - 1]);
                if (gq - gp) * (xp - xr) <= (gp - gr) * (xq - xp) {
                    len -= 1;
                } else {
                    break;
                }
            }
            v[len] = q;
            xs[len] = xq;
            gs[len] = gq;
            len += 1;
        }
        if len == 0 {
            return;
        }
        let mut k = 0;
        for q in 0..n {
            if !needed[q] {
                continue;
            }
            let xq = q as f64 * step;
            // the next parabola is lower from its intersection with the current one onwards
            while k + 1 < len && gs[k + 1] - gs[k] < 2.0 * xq * (xs[k + 1] - xs[k]) {
                k += 1;
            }
            let p = v[k];
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

    /// Sites with `density` percent probability, from a small LCG.
    fn random_sites(dims: [usize; 3], density: u64, state: &mut u64) -> Vec<bool> {
        (0..dims.iter().product::<usize>())
            .map(|_| {
                *state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (*state >> 33) % 100 < density
            })
            .collect()
    }

    #[test]
    fn matches_brute_force_anisotropic() {
        let dims = [4, 7, 9];
        let sp = [2.5, 0.8, 0.6];
        let mut state = 12345u64;
        for density in [1, 5, 30] {
            let site = random_sites(dims, density, &mut state);
            let fast = squared_edt(&site, dims, sp);
            let slow = brute(&site, dims, sp);
            for (a, b) in fast.iter().zip(&slow) {
                assert!((a - b).abs() <= 1e-9 * b.max(1.0), "{a} vs {b}");
            }
        }
        // voxel units: squared distances are integers and the transform is exact
        let dims = [6, 11, 13];
        for density in [1, 3, 20] {
            let site = random_sites(dims, density, &mut state);
            assert_eq!(
                squared_edt(&site, dims, [1.0; 3]),
                brute(&site, dims, [1.0; 3])
            );
        }
        // a sparse `needed` mask gives the same values where it is true
        let needed: Vec<bool> = (0..dims.iter().product::<usize>())
            .map(|i| i % 7 == 0 && i % 3 != 0)
            .collect();
        let site: Vec<bool> = (0..needed.len()).map(|i| i % 11 == 5).collect();
        let full = squared_edt(&site, dims, sp);
        let mut part = Vec::new();
        squared_edt_into(&site, dims, sp, Some(&needed), &mut part);
        for i in (0..needed.len()).filter(|i| needed[*i]) {
            assert_eq!(part[i], full[i]);
        }
        // a handful of read voxels takes the direct evaluation: same values as the passes
        let dims = [5, 40, 50];
        let site: Vec<bool> = (0..dims.iter().product::<usize>())
            .map(|i| i % 997 == 3)
            .collect();
        let mut needed = vec![false; site.len()];
        for i in [0, 777, 4321, 9999] {
            needed[i] = true;
        }
        let mut part = Vec::new();
        squared_edt_into(&site, dims, sp, Some(&needed), &mut part);
        let slow = brute(&site, dims, sp);
        for i in [0, 777, 4321, 9999] {
            assert!((part[i] - slow[i]).abs() <= 1e-9 * slow[i].max(1.0));
        }
        let none = squared_edt(&[false; 10], [1, 2, 5], sp);
        assert!(none.iter().all(|v| v.is_infinite()));
    }
}
