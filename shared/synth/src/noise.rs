//! Deterministic randomness: a counter-based hash, a small seeded generator and smooth value noise.
//! Everything is a pure function of integers, so results never depend on thread scheduling.

/// SplitMix64 finaliser: a strong 64-bit mix of one word.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Hash of a seed and a list of integers.
pub fn hash(seed: u64, parts: &[i64]) -> u64 {
    parts.iter().fold(mix(seed), |h, p| {
        mix(h ^ (*p as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93))
    })
}

/// Uniform in [0, 1) from a hash.
pub fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A small sequential generator (SplitMix64) for drawing per-case parameters.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(mix(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * unit(self.next_u64())
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = unit(self.next_u64()).max(1e-300);
        let u2 = unit(self.next_u64());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next_u64() % items.len() as u64) as usize]
    }
}

/// Smooth value noise in [-1, 1]: random values on an integer lattice blended with a quintic
/// fade, so the field and its gradient are continuous. Feature size is one lattice cell.
#[derive(Debug, Clone, Copy)]
pub struct ValueNoise {
    seed: u64,
    inv_wavelength: f32,
}

impl ValueNoise {
    pub fn new(seed: u64, wavelength_mm: f32) -> Self {
        Self {
            seed,
            inv_wavelength: 1.0 / wavelength_mm,
        }
    }

    fn lattice(&self, x: i64, y: i64, z: i64) -> f32 {
        // one mix per lattice point: this is the innermost loop of phantom generation
        let h = mix(self.seed
            ^ (x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (y as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
            ^ (z as u64).wrapping_mul(0x1656_67B1_9E37_79F9));
        ((h >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Noise at a point in mm.
    pub fn at(&self, p: [f32; 3]) -> f32 {
        let q = p.map(|v| v * self.inv_wavelength);
        let cell = q.map(|v| v.floor());
        let t = [0, 1, 2].map(|a| fade(q[a] - cell[a]));
        let [cx, cy, cz] = cell.map(|v| v as i64);
        let mut acc = 0.0;
        for (dz, wz) in [(0, 1.0 - t[2]), (1, t[2])] {
            for (dy, wy) in [(0, 1.0 - t[1]), (1, t[1])] {
                for (dx, wx) in [(0, 1.0 - t[0]), (1, t[0])] {
                    acc += wx * wy * wz * self.lattice(cx + dx, cy + dy, cz + dz);
                }
            }
        }
        acc
    }
}

fn fade(t: f32) -> f32 {
    t * t * t * (t * (t * 6.0 - 15.0) + 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_noise_is_bounded_continuous_and_deterministic() {
        let n = ValueNoise::new(7, 10.0);
        let mut prev = n.at([0.0, 3.0, 4.0]);
        for i in 1..2000 {
            let v = n.at([i as f32 * 0.05, 3.0, 4.0]);
            assert!((-1.0..=1.0).contains(&v));
            assert!((v - prev).abs() < 0.05, "jump at {i}");
            prev = v;
        }
        assert_eq!(
            n.at([1.5, 2.5, 3.5]),
            ValueNoise::new(7, 10.0).at([1.5, 2.5, 3.5])
        );
        assert_ne!(
            n.at([1.5, 2.5, 3.5]),
            ValueNoise::new(8, 10.0).at([1.5, 2.5, 3.5])
        );
    }

    #[test]
    fn rng_normal_has_unit_variance() {
        let mut r = Rng::new(1);
        let xs: Vec<f64> = (0..20000).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
