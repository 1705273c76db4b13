//! Patch sampling and nnU-Net's default training augmentation, on the CPU before a batch goes to
//! the device: rotation and scaling (one resampling pass, linear for the image and for each
//! label's indicator), Gaussian noise and blur, multiplicative brightness, contrast, low-resolution
//! simulation, gamma (plain and inverted), and mirroring. Probabilities and ranges are nnU-Net
//! v2's `get_training_transforms` defaults; every draw comes from the caller's seeded stream.

use super::data::{DataError, Region, TrainCase};
use crate::rng::Rng;

/// One sampled patch, `[z, y, x]` in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct Patch {
    pub image: Vec<f32>,
    pub labels: Vec<u8>,
}

/// nnU-Net's default probabilities and ranges.
const P_ROTATION: f64 = 0.2;
const MAX_ANGLE: f64 = std::f64::consts::PI / 6.0;
const P_SCALE: f64 = 0.2;
const SCALE: (f64, f64) = (0.7, 1.4);
const P_NOISE: f64 = 0.1;
const P_BLUR: f64 = 0.2;
const P_BLUR_PER_CHANNEL: f64 = 0.5;
const P_BRIGHTNESS: f64 = 0.15;
const P_CONTRAST: f64 = 0.15;
const P_LOW_RES: f64 = 0.25 * 0.5;
const P_GAMMA_INVERTED: f64 = 0.1;
const P_GAMMA: f64 = 0.3;
const P_MIRROR: f64 = 0.5;

/// Samples a patch around a random position, or centred on a random voxel of a random foreground
/// class present in the case (`force_foreground`), then augments it when `augment` is set.
pub fn sample_patch(
    case: &TrainCase,
    patch: [usize; 3],
    force_foreground: bool,
    augment: bool,
    rng: &mut Rng,
) -> Result<Patch, DataError> {
    let shape = case.shape();
    // foreground classes present (1-based) with their kept positions
    let present: Vec<(usize, usize)> = (1..)
        .zip(case.counts().iter().copied())
        .filter(|(_, n)| *n > 0)
        .collect();
    let center: [f64; 3] = if force_foreground && !present.is_empty() {
        let (c, n) = present[rng.below(present.len())];
        case.location(c, rng.below(n))?.map(|v| v as f64)
    } else {
        std::array::from_fn(|a| {
            let (s, p) = (shape[a] as f64, patch[a] as f64);
            if s <= p {
                (s - 1.0) / 2.0
            } else {
                rng.uniform((p - 1.0) / 2.0, s - (p + 1.0) / 2.0).round()
            }
        })
    };
    let mut matrix = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    if augment {
        if rng.chance(P_ROTATION) {
            let angles: [f64; 3] = std::array::from_fn(|_| rng.uniform(-MAX_ANGLE, MAX_ANGLE));
            matrix = rotation(angles);
        }
        if rng.chance(P_SCALE) {
            let s = rng.uniform(SCALE.0, SCALE.1);
            for row in &mut matrix {
                for v in row.iter_mut() {
                    *v *= s;
                }
            }
        }
    }
    let (origin, size) = source_box(shape, patch, center, &matrix);
    let region = case.region(origin, size)?;
    let mut out = resample(&region, shape, patch, center, &matrix);
    if augment {
        intensity(&mut out.image, patch, rng);
        for axis in 0..3 {
            if rng.chance(P_MIRROR) {
                mirror(&mut out.image, patch, axis);
                mirror(&mut out.labels, patch, axis);
            }
        }
    }
    Ok(out)
}

/// The box of the case that the patch reads: the crop, or the bounding box of the transformed
/// patch's corners with the interpolation's next voxel, within the case.
fn source_box(
    shape: [usize; 3],
    patch: [usize; 3],
    center: [f64; 3],
    m: &[[f64; 3]; 3],
) -> ([usize; 3], [usize; 3]) {
    let (mut lo, mut hi) = ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]);
    if is_identity(m) {
        for a in 0..3 {
            lo[a] = center[a].round() - (patch[a] / 2) as f64;
            hi[a] = lo[a] + patch[a] as f64 - 1.0;
        }
    } else {
        let half: [f64; 3] = std::array::from_fn(|a| (patch[a] as f64 - 1.0) / 2.0);
        for corner in 0..8usize {
            let o: [f64; 3] = std::array::from_fn(|a| {
                if (corner >> a) & 1 == 1 {
                    half[a]
                } else {
                    -half[a]
                }
            });
            for a in 0..3 {
                let v = center[a] + (0..3).map(|k| m[a][k] * o[k]).sum::<f64>();
                lo[a] = lo[a].min(v.floor());
                hi[a] = hi[a].max(v.floor() + 1.0);
            }
        }
    }
    let clip = |v: f64, a: usize| v.clamp(0.0, shape[a] as f64) as usize;
    let origin: [usize; 3] = std::array::from_fn(|a| clip(lo[a], a));
    let end: [usize; 3] = std::array::from_fn(|a| clip(hi[a] + 1.0, a).max(origin[a]));
    (origin, std::array::from_fn(|a| end[a] - origin[a]))
}

fn is_identity(m: &[[f64; 3]; 3]) -> bool {
    *m == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
}

/// Rotation about the z, y and x axes (voxel space, as nnU-Net).
fn rotation([a, b, c]: [f64; 3]) -> [[f64; 3]; 3] {
    let rz = [
        [1.0, 0.0, 0.0],
        [0.0, a.cos(), -a.sin()],
        [0.0, a.sin(), a.cos()],
    ];
    let ry = [
        [b.cos(), 0.0, b.sin()],
        [0.0, 1.0, 0.0],
        [-b.sin(), 0.0, b.cos()],
    ];
    let rx = [
        [c.cos(), -c.sin(), 0.0],
        [c.sin(), c.cos(), 0.0],
        [0.0, 0.0, 1.0],
    ];
    matmul(matmul(rz, ry), rx)
}

fn matmul(a: [[f64; 3]; 3], b: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|k| a[i][k] * b[k][j]).sum()))
}

/// Output voxel `o` reads the case at `center + M (o - (patch - 1) / 2)`, as batchgeneratorsv2's
/// SpatialTransform: linear for the image (zero outside); for the labels each label's indicator
/// is interpolated linearly and the largest wins, ties to the lower label (nnU-Net's
/// `mode_seg='bilinear'` without background-style sampling), background outside. Without a
/// rotation or scaling the patch is a plain crop starting at `center - patch / 2`, as there.
fn resample(
    case: &Region,
    shape: [usize; 3],
    patch: [usize; 3],
    center: [f64; 3],
    m: &[[f64; 3]; 3],
) -> Patch {
    let n = patch.iter().product();
    let mut image = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    let half: [f64; 3] = std::array::from_fn(|a| (patch[a] as f64 - 1.0) / 2.0);
    let identity = is_identity(m);
    let start: [f64; 3] = std::array::from_fn(|a| center[a].round() - (patch[a] / 2) as f64);
    for z in 0..patch[0] {
        for y in 0..patch[1] {
            for x in 0..patch[2] {
                let i = [z as f64, y as f64, x as f64];
                if identity {
                    let src: [isize; 3] = std::array::from_fn(|a| (start[a] + i[a]) as isize);
                    let inside = (0..3).all(|a| src[a] >= 0 && (src[a] as usize) < shape[a]);
                    let at = src.map(|v| v.max(0) as usize);
                    image.push(if inside { case.image_at(at) } else { 0.0 });
                    labels.push(if inside { case.label_at(at) } else { 0 });
                    continue;
                }
                let o: [f64; 3] = std::array::from_fn(|a| i[a] - half[a]);
                let src: [f64; 3] = std::array::from_fn(|a| {
                    center[a] + (0..3).map(|k| m[a][k] * o[k]).sum::<f64>()
                });
                image.push(linear(|i| case.image_at(i), shape, src));
                labels.push(label_linear(|i| case.label_at(i), shape, src));
            }
        }
    }
    Patch { image, labels }
}

/// The eight neighbours of `p` inside the volume with their trilinear weights.
fn corners(shape: [usize; 3], p: [f64; 3]) -> impl Iterator<Item = ([usize; 3], f64)> {
    let base: [f64; 3] = p.map(f64::floor);
    let frac: [f64; 3] = std::array::from_fn(|a| p[a] - base[a]);
    (0..8usize).filter_map(move |corner| {
        let mut w = 1.0;
        let mut idx = [0usize; 3];
        for a in 0..3 {
            let up = (corner >> (2 - a)) & 1 == 1;
            let i = base[a] as isize + isize::from(up);
            w *= if up { frac[a] } else { 1.0 - frac[a] };
            if i < 0 || i as usize >= shape[a] {
                return None;
            }
            idx[a] = i as usize;
        }
        (w > 0.0).then_some((idx, w))
    })
}

/// The label whose linearly interpolated indicator is largest at `p` (ties: the lower label;
/// nothing inside: background).
fn label_linear(at: impl Fn([usize; 3]) -> u8, shape: [usize; 3], p: [f64; 3]) -> u8 {
    // at most eight labels meet at a point: sum their weights in a small list
    let mut acc: Vec<(u8, f64)> = Vec::with_capacity(8);
    for (idx, w) in corners(shape, p) {
        let l = at(idx);
        match acc.iter_mut().find(|(k, _)| *k == l) {
            Some((_, s)) => *s += w,
            None => acc.push((l, w)),
        }
    }
    acc.sort_by_key(|(l, _)| *l);
    let mut best = (0u8, 0.0f64);
    for (l, w) in acc {
        if w > best.1 {
            best = (l, w);
        }
    }
    best.0
}

/// Trilinear interpolation of the volume that `at` reads, zero outside `shape`.
fn linear(at: impl Fn([usize; 3]) -> f32, shape: [usize; 3], p: [f64; 3]) -> f32 {
    corners(shape, p)
        .map(|(idx, w)| w * f64::from(at(idx)))
        .sum::<f64>() as f32
}

fn intensity(img: &mut [f32], patch: [usize; 3], rng: &mut Rng) {
    if rng.chance(P_NOISE) {
        let sd = rng.uniform(0.0, 0.1).sqrt();
        for v in img.iter_mut() {
            *v += (rng.normal() * sd) as f32;
        }
    }
    // applied with p 0.2, then to each channel with p 0.5 (`p_per_channel`): CT has one
    if rng.chance(P_BLUR) && rng.chance(P_BLUR_PER_CHANNEL) {
        for axis in 0..3 {
            let sigma = rng.uniform(0.5, 1.0);
            blur(img, patch, axis, sigma);
        }
    }
    if rng.chance(P_BRIGHTNESS) {
        let f = bg_contrast(rng, 0.75, 1.25) as f32;
        img.iter_mut().for_each(|v| *v *= f);
    }
    if rng.chance(P_CONTRAST) {
        let f = bg_contrast(rng, 0.75, 1.25) as f32;
        let (lo, hi) = min_max(img);
        let mean = mean(img);
        img.iter_mut()
            .for_each(|v| *v = ((*v - mean) * f + mean).clamp(lo, hi));
    }
    if rng.chance(P_LOW_RES) {
        let zoom = rng.uniform(0.5, 1.0);
        low_resolution(img, patch, zoom);
    }
    if rng.chance(P_GAMMA_INVERTED) {
        let g = draw_gamma(rng);
        img.iter_mut().for_each(|v| *v = -*v);
        gamma(img, g);
        img.iter_mut().for_each(|v| *v = -*v);
    }
    if rng.chance(P_GAMMA) {
        let g = draw_gamma(rng);
        gamma(img, g);
    }
}

fn min_max(img: &[f32]) -> (f32, f32) {
    img.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

fn mean(img: &[f32]) -> f32 {
    (img.iter().map(|&v| f64::from(v)).sum::<f64>() / img.len().max(1) as f64) as f32
}

fn std_dev(img: &[f32], m: f32) -> f32 {
    let var = img.iter().map(|&v| f64::from(v - m).powi(2)).sum::<f64>() / img.len().max(1) as f64;
    var.sqrt() as f32
}

/// nnU-Net's gamma range (0.7, 1.5), half the draws below 1.
/// batchgeneratorsv2's `BGContrast((lo, hi))`: half the draws below 1, half above.
fn bg_contrast(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    if rng.chance(0.5) && lo < 1.0 {
        rng.uniform(lo, 1.0)
    } else {
        rng.uniform(lo.max(1.0), hi)
    }
}

fn draw_gamma(rng: &mut Rng) -> f64 {
    bg_contrast(rng, 0.7, 1.5)
}

/// Gamma on the patch rescaled to [0, 1], then mean and standard deviation restored.
fn gamma(img: &mut [f32], g: f64) {
    let (m, sd) = {
        let m = mean(img);
        (m, std_dev(img, m))
    };
    let (lo, hi) = min_max(img);
    let range = (hi - lo).max(1e-7);
    img.iter_mut()
        .for_each(|v| *v = (f64::from((*v - lo) / range).powf(g) as f32) * range + lo);
    let (m2, sd2) = {
        let m2 = mean(img);
        (m2, std_dev(img, m2))
    };
    img.iter_mut()
        .for_each(|v| *v = (*v - m2) / sd2.max(1e-7) * sd + m);
}

fn strides(patch: [usize; 3]) -> [usize; 3] {
    [patch[1] * patch[2], patch[2], 1]
}

/// Separable Gaussian along one axis, truncated at 3 sigma, edges reflected.
fn blur(img: &mut [f32], patch: [usize; 3], axis: usize, sigma: f64) {
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f64> = (-radius..=radius)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = kernel.iter().sum();
    let len = patch[axis] as isize;
    let stride = strides(patch)[axis];
    let mut line = vec![0f32; patch[axis]];
    for start in line_starts(patch, axis) {
        for (i, l) in line.iter_mut().enumerate() {
            *l = img[start + i * stride];
        }
        for i in 0..len {
            let mut acc = 0.0;
            for (k, w) in kernel.iter().enumerate() {
                let mut j = i + k as isize - radius;
                if j < 0 {
                    j = -j - 1;
                }
                if j >= len {
                    j = 2 * len - j - 1;
                }
                acc += w * f64::from(line[j.clamp(0, len - 1) as usize]);
            }
            img[start + i as usize * stride] = (acc / total) as f32;
        }
    }
}

/// Offsets of the first voxel of every line along `axis`.
fn line_starts(patch: [usize; 3], axis: usize) -> Vec<usize> {
    let s = strides(patch);
    let others: Vec<usize> = (0..3).filter(|&a| a != axis).collect();
    let mut out = Vec::new();
    for i in 0..patch[others[0]] {
        for j in 0..patch[others[1]] {
            out.push(i * s[others[0]] + j * s[others[1]]);
        }
    }
    out
}

/// Nearest-neighbour downsampling by `zoom`, then linear upsampling back.
fn low_resolution(img: &mut [f32], patch: [usize; 3], zoom: f64) {
    let small: [usize; 3] = patch.map(|p| ((p as f64 * zoom).round() as usize).max(1));
    let s = strides(patch);
    let coarse = ndarray::Array3::from_shape_fn((small[0], small[1], small[2]), |(z, y, x)| {
        let src = [z, y, x];
        let idx: [usize; 3] = std::array::from_fn(|a| {
            (((src[a] as f64 + 0.5) * patch[a] as f64 / small[a] as f64) as usize).min(patch[a] - 1)
        });
        img[idx[0] * s[0] + idx[1] * s[1] + idx[2]]
    });
    for z in 0..patch[0] {
        for y in 0..patch[1] {
            for x in 0..patch[2] {
                let p = [z, y, x];
                let c: [f64; 3] = std::array::from_fn(|a| {
                    ((p[a] as f64 + 0.5) * small[a] as f64 / patch[a] as f64 - 0.5)
                        .clamp(0.0, small[a] as f64 - 1.0)
                });
                img[z * s[0] + y * s[1] + x] = linear(|i| coarse[i], small, c);
            }
        }
    }
}

fn mirror<T: Copy>(v: &mut [T], patch: [usize; 3], axis: usize) {
    let stride = strides(patch)[axis];
    let len = patch[axis];
    for start in line_starts(patch, axis) {
        for i in 0..len / 2 {
            v.swap(start + i * stride, start + (len - 1 - i) * stride);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    fn case() -> TrainCase {
        let image = Array3::from_shape_fn((12, 20, 16), |(z, y, x)| (z * 400 + y * 20 + x) as f32);
        let labels = Array3::from_shape_fn((12, 20, 16), |(z, y, x)| {
            u8::from((4..8).contains(&z) && (5..9).contains(&y) && (6..10).contains(&x))
        });
        TrainCase::new("c".into(), image, labels, 3)
    }

    #[test]
    fn plain_patch_is_a_crop_and_foreground_is_forced() {
        let c = case();
        let mut rng = Rng::new(1);
        for _ in 0..20 {
            let p = sample_patch(&c, [4, 6, 6], false, false, &mut rng).unwrap();
            // a crop of a linear ramp: consecutive x differ by 1, y by 20, z by 400
            assert_eq!(p.image[1] - p.image[0], 1.0);
            assert_eq!(p.image[6] - p.image[0], 20.0);
            assert_eq!(p.image[36] - p.image[0], 400.0);
            let f = sample_patch(&c, [4, 6, 6], true, false, &mut rng).unwrap();
            assert!(f.labels.contains(&1));
        }
    }

    #[test]
    fn augmentation_is_seeded_and_keeps_labels_valid() {
        let c = case();
        let a: Vec<Patch> = {
            let mut rng = Rng::new(9);
            (0..30)
                .map(|_| sample_patch(&c, [8, 8, 8], true, true, &mut rng).unwrap())
                .collect()
        };
        let b: Vec<Patch> = {
            let mut rng = Rng::new(9);
            (0..30)
                .map(|_| sample_patch(&c, [8, 8, 8], true, true, &mut rng).unwrap())
                .collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().all(|p| p.labels.iter().all(|&l| l <= 3)));
        assert!(a.iter().all(|p| p.image.iter().all(|v| v.is_finite())));
    }

    #[test]
    fn mirror_twice_is_identity_and_blur_keeps_constants() {
        let patch = [3, 4, 5];
        let v: Vec<f32> = (0..60).map(|i| i as f32).collect();
        for axis in 0..3 {
            let mut w = v.clone();
            mirror(&mut w, patch, axis);
            assert_ne!(w, v);
            mirror(&mut w, patch, axis);
            assert_eq!(w, v);
        }
        let mut flat = vec![2.5f32; 60];
        blur(&mut flat, patch, 1, 0.8);
        assert!(flat.iter().all(|x| (x - 2.5).abs() < 1e-5));
        let mut r = vec![0.0f32; 60];
        r[0] = 1.0;
        low_resolution(&mut r, patch, 0.5);
        assert!(r.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn labels_are_warped_by_interpolated_indicators() {
        let mut l = ndarray::Array3::<u8>::zeros((1, 1, 4));
        l[[0, 0, 1]] = 1;
        l[[0, 0, 2]] = 2;
        let shape = [1, 1, 4];
        // halfway between labels 1 and 2: a tie, the lower label wins
        assert_eq!(label_linear(|i| l[i], shape, [0.0, 0.0, 1.5]), 1);
        assert_eq!(label_linear(|i| l[i], shape, [0.0, 0.0, 1.6]), 2);
        assert_eq!(label_linear(|i| l[i], shape, [0.0, 0.0, 0.4]), 0);
        // outside the volume: background
        assert_eq!(label_linear(|i| l[i], shape, [0.0, 0.0, 7.0]), 0);
    }
}
