//! Volume CRPS (METRICS.md §4): the exact Gaussian CRPS, the empirical-ensemble CRPS, and the two
//! truncated numeric recipes of the originals, reproduced exactly.

use std::f64::consts::{FRAC_1_SQRT_2, PI, SQRT_2};

/// Standard normal CDF as scipy's `ndtr` (cephes) computes it, via libm's erf/erfc.
pub fn ndtr(a: f64) -> f64 {
    let x = a * FRAC_1_SQRT_2;
    let z = x.abs();
    if z < FRAC_1_SQRT_2 {
        0.5 + 0.5 * libm::erf(x)
    } else {
        let y = 0.5 * libm::erfc(z);
        if x > 0.0 { 1.0 - y } else { y }
    }
}

/// `properscoring.crps_gaussian(x, mu, sig)`; `sig = 0` gives the point-mass limit `|x - mu|`.
pub fn crps_gaussian(x: f64, mu: f64, sig: f64) -> f64 {
    if sig == 0.0 {
        return (x - mu).abs();
    }
    let sx = (x - mu) / sig;
    let pdf = (-sx * sx / 2.0).exp() / (2.0 * PI).sqrt();
    let cdf = ndtr(sx);
    sig * (sx * (2.0 * cdf - 1.0) + 2.0 * pdf - 1.0 / PI.sqrt())
}

/// `properscoring.crps_ensemble(x, members)`: `E|X - x| - E|X - X'| / 2` with equal weights.
pub fn crps_ensemble(x: f64, members: &[f64]) -> f64 {
    let m = members.len() as f64;
    let spread: f64 = members
        .iter()
        .flat_map(|a| members.iter().map(move |b| (a - b).abs()))
        .sum();
    members.iter().map(|a| (a - x).abs()).sum::<f64>() / m - 0.5 * spread / (m * m)
}

/// `np.linspace(start, stop, num)` bit for bit: `i * step + start`, the last value set to `stop`.
pub fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    if let Some(last) = v.last_mut() {
        *last = stop;
    }
    v
}

/// `scipy.stats.norm.ppf(0.01)` and `ppf(0.99)` (`ndtri`), as scipy returns them.
const NDTRI_001: f64 = -2.3263478740408408;
const NDTRI_099: f64 = 2.3263478740408408;

/// The CURVAS 2024 recipe: the Gaussian CDF sampled at 100 points on `[ppf(0.01), ppf(0.99)]`,
/// linearly interpolated, 0 below and 1 above; `(F - H(x - v))^2` integrated over `mu ± 3 sigma`.
/// The integrand is quadratic between breakpoints, so Simpson's rule per piece is exact.
pub fn crps_curvas_numeric(v: f64, mu: f64, sigma: f64) -> f64 {
    if sigma == 0.0 {
        return 0.0;
    }
    let nodes = linspace(NDTRI_001 * sigma + mu, NDTRI_099 * sigma + mu, 100);
    let cdf: Vec<f64> = nodes.iter().map(|x| ndtr((x - mu) / sigma)).collect();
    let f = |x: f64| -> f64 {
        if x < nodes[0] {
            return 0.0;
        }
        if x > nodes[99] {
            return 1.0;
        }
        let i = nodes.partition_point(|n| *n <= x).clamp(1, 99);
        let (x0, x1) = (nodes[i - 1], nodes[i]);
        if x1 == x0 {
            return cdf[i];
        }
        cdf[i - 1] + (x - x0) * (cdf[i] - cdf[i - 1]) / (x1 - x0)
    };
    let (lo, hi) = (mu - 3.0 * sigma, mu + 3.0 * sigma);
    let mut cuts: Vec<f64> = nodes
        .iter()
        .copied()
        .filter(|x| *x > lo && *x < hi)
        .collect();
    cuts.extend([lo, hi]);
    if v > lo && v < hi {
        cuts.push(v);
    }
    cuts.sort_by(f64::total_cmp);
    let mut total = 0.0;
    for w in cuts.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b <= a {
            continue;
        }
        // evaluate just inside the piece so that jumps at its ends do not leak in
        let m = 0.5 * (a + b);
        let h = if m > v { 1.0 } else { 0.0 };
        let eps = (b - a) * 1e-12;
        let (fa, fm, fb) = (f(a + eps) - h, f(m) - h, f(b - eps) - h);
        total += (b - a) / 6.0 * (fa * fa + 4.0 * fm * fm + fb * fb);
    }
    total
}

/// Abramowitz & Stegun 7.1.26, as the original statapp code writes it.
fn erf_as(x: f64) -> f64 {
    let (a1, a2, a3, a4, a5) = (
        0.254829592,
        -0.284496736,
        1.421413741,
        -1.453152027,
        1.061405429,
    );
    let p = 0.3275911;
    let sign = if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    };
    let x = x.abs();
    let t = 1.0 / (1.0 + p * x);
    let y = 1.0 - (((((a5 * t + a4) * t + a3) * t + a2) * t + a1) * t) * (-x * x).exp();
    sign * y
}

/// The statapp recipe: A&S erf CDF at 500 points on `mu ± 4 sigma`, `np.trapz` of
/// `(F - H(x - v))^2` on the same points, `H(0) = 0.5`; 0 when the raters agree.
pub fn crps_statapp_numeric(v: f64, mu: f64, sigma: f64) -> f64 {
    if sigma == 0.0 {
        return 0.0;
    }
    let x = linspace(mu - 4.0 * sigma, mu + 4.0 * sigma, 500);
    let y: Vec<f64> = x
        .iter()
        .map(|xi| {
            let cdf = 0.5 * (1.0 + erf_as((xi - mu) / (sigma * SQRT_2)));
            let d = xi - v;
            let h = 0.5
                * (if d > 0.0 {
                    1.0
                } else if d < 0.0 {
                    -1.0
                } else {
                    0.0
                } + 1.0);
            (cdf - h) * (cdf - h)
        })
        .collect();
    x.windows(2)
        .zip(y.windows(2))
        .map(|(xs, ys)| (xs[1] - xs[0]) * (ys[0] + ys[1]) / 2.0)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_crps_known_values() {
        // properscoring.crps_gaussian(0, 0, 1) = 2 phi(0) - 1/sqrt(pi) = 0.23369497725510913
        assert!((crps_gaussian(0.0, 0.0, 1.0) - 0.233_694_977_255_109_13).abs() < 1e-15);
        // far from the mean the CRPS grows like |v - mu|
        assert!((crps_gaussian(100.0, 0.0, 1.0) - (100.0 - 1.0 / PI.sqrt())).abs() < 1e-9);
        assert_eq!(crps_gaussian(3.0, 1.0, 0.0), 2.0);
    }

    #[test]
    fn truncated_recipes_saturate() {
        let exact = crps_gaussian(1000.0, 0.0, 10.0);
        assert!(crps_curvas_numeric(1000.0, 0.0, 10.0) < exact / 10.0);
        assert!(crps_statapp_numeric(1000.0, 0.0, 10.0) < exact / 10.0);
        // near the mean they approximate the exact value
        let e = crps_gaussian(3.0, 0.0, 10.0);
        assert!((crps_statapp_numeric(3.0, 0.0, 10.0) - e).abs() / e < 0.01);
        assert_eq!(crps_curvas_numeric(5.0, 2.0, 0.0), 0.0);
    }

    #[test]
    fn ensemble_crps() {
        // one member: |x - m|
        assert_eq!(crps_ensemble(2.0, &[5.0]), 3.0);
        let v = crps_ensemble(1.0, &[0.0, 2.0]);
        assert!((v - (1.0 - 0.5)).abs() < 1e-15);
    }
}
