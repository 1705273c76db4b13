//! The phantom's anatomy: smooth implicit shapes in a canonical body frame (mm), drawn per case.
//!
//! Frame: `X` from the patient's right to left, `Y` from anterior to posterior, `Z` from inferior to
//! superior; the in-plane field of view is 360 mm and the scan covers 300 mm of the abdomen
//! (liver dome to below the kidneys). Every shape is a signed distance (negative inside, in mm,
//! first-order accurate near the surface) plus smooth value noise, so organs are lumpy, vary per
//! case and have no box or sphere edges.

use crate::noise::{Rng, ValueNoise};

pub const FOV_INPLANE_MM: f32 = 360.0;
pub const FOV_Z_MM: f32 = 300.0;

/// Base shape of a structure.
#[derive(Debug, Clone)]
pub enum Shape {
    /// An ellipsoid: centre, semi-axes, and a rotation (rows map the world into the local frame).
    Ellipsoid {
        center: [f32; 3],
        radii: [f32; 3],
        rot: [[f32; 3]; 3],
    },
    /// A tube around a polyline with a radius per point (pancreas).
    Tube {
        points: Vec<[f32; 3]>,
        radii: Vec<f32>,
    },
    /// Smooth union of two shapes with blend radius `k` mm (liver lobes).
    Union(Box<Shape>, Box<Shape>, f32),
}

impl Shape {
    /// Approximate signed distance in mm.
    pub fn distance(&self, p: [f32; 3]) -> f32 {
        match self {
            Shape::Ellipsoid { center, radii, rot } => {
                let d = [0, 1, 2].map(|a| p[a] - center[a]);
                let l = [0, 1, 2].map(|r| rot[r][0] * d[0] + rot[r][1] * d[1] + rot[r][2] * d[2]);
                let u = [0, 1, 2].map(|a| l[a] / radii[a]);
                let q = (u[0] * u[0] + u[1] * u[1] + u[2] * u[2]).sqrt().max(1e-6);
                // |grad q| = |u / r| / q: dividing by it turns the level value into a distance.
                let g = [0, 1, 2].map(|a| u[a] / radii[a]);
                let grad = (g[0] * g[0] + g[1] * g[1] + g[2] * g[2]).sqrt() / q;
                (q - 1.0) / grad.max(1e-6)
            }
            Shape::Tube { points, radii } => {
                let mut best = f32::INFINITY;
                for i in 0..points.len().saturating_sub(1) {
                    let (a, b) = (points[i], points[i + 1]);
                    let ab = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
                    let ap = [p[0] - a[0], p[1] - a[1], p[2] - a[2]];
                    let len2 = ab[0] * ab[0] + ab[1] * ab[1] + ab[2] * ab[2];
                    let t = ((ap[0] * ab[0] + ap[1] * ab[1] + ap[2] * ab[2]) / len2.max(1e-9))
                        .clamp(0.0, 1.0);
                    let c = [0, 1, 2].map(|k| ap[k] - t * ab[k]);
                    let dist = (c[0] * c[0] + c[1] * c[1] + c[2] * c[2]).sqrt();
                    best = best.min(dist - (radii[i] + t * (radii[i + 1] - radii[i])));
                }
                best
            }
            Shape::Union(a, b, k) => smooth_min(a.distance(p), b.distance(p), *k),
        }
    }

    /// Axis-aligned bounds (min, max) of the solid, in mm.
    pub fn bounds(&self) -> ([f32; 3], [f32; 3]) {
        match self {
            Shape::Ellipsoid { center, radii, rot } => {
                // world axis i spans sqrt(sum_j (rot[j][i] * r_j)^2) around the centre
                let half = [0, 1, 2].map(|i| {
                    (0..3)
                        .map(|j| (rot[j][i] * radii[j]).powi(2))
                        .sum::<f32>()
                        .sqrt()
                });
                (
                    [0, 1, 2].map(|i| center[i] - half[i]),
                    [0, 1, 2].map(|i| center[i] + half[i]),
                )
            }
            Shape::Tube { points, radii } => {
                let r = radii.iter().fold(0.0f32, |m, v| m.max(*v));
                let mut lo = [f32::INFINITY; 3];
                let mut hi = [f32::NEG_INFINITY; 3];
                for p in points {
                    for a in 0..3 {
                        lo[a] = lo[a].min(p[a] - r);
                        hi[a] = hi[a].max(p[a] + r);
                    }
                }
                (lo, hi)
            }
            Shape::Union(a, b, k) => {
                let ((la, ha), (lb, hb)) = (a.bounds(), b.bounds());
                (
                    [0, 1, 2].map(|i| la[i].min(lb[i]) - k),
                    [0, 1, 2].map(|i| ha[i].max(hb[i]) + k),
                )
            }
        }
    }
}

fn smooth_min(a: f32, b: f32, k: f32) -> f32 {
    let h = (0.5 + 0.5 * (b - a) / k).clamp(0.0, 1.0);
    b + (a - b) * h - k * h * (1.0 - h)
}

/// How a structure looks in CT.
#[derive(Debug, Clone)]
pub struct Tissue {
    pub hu: f32,
    /// A different value deeper than `depth` mm inside (cortex vs medulla, cortical vs cancellous bone).
    pub core: Option<(f32, f32)>,
    /// Intensity texture: noise and its amplitude in HU.
    pub texture: Option<(ValueNoise, f32)>,
}

/// One anatomical structure.
#[derive(Debug, Clone)]
pub struct Structure {
    pub name: &'static str,
    /// Label 1-3 for annotated organs, 0 for context only.
    pub label: u8,
    pub shape: Shape,
    /// Low-frequency deformation: (noise, amplitude mm). Every annotator sees it.
    pub deform: Vec<(ValueNoise, f32)>,
    /// Fine boundary detail (lobulation): the smoothing annotator leaves it out.
    pub detail: Option<(ValueNoise, f32)>,
    pub tissue: Tissue,
}

impl Structure {
    /// Signed distance of the smooth shape (without fine detail).
    pub fn smooth_field(&self, p: [f32; 3]) -> f32 {
        self.deform
            .iter()
            .fold(self.shape.distance(p), |f, (n, amp)| f + amp * n.at(p))
    }

    /// Signed distance of the true boundary, detail included.
    pub fn field(&self, p: [f32; 3]) -> f32 {
        let f = self.smooth_field(p);
        match &self.detail {
            Some((n, amp)) => f + amp * n.at(p),
            None => f,
        }
    }

    /// Bounds grown by the deformation amplitudes and `margin`.
    pub fn bounds(&self, margin: f32) -> ([f32; 3], [f32; 3]) {
        let grow = margin
            + self.deform.iter().map(|d| d.1.abs()).sum::<f32>()
            + self.detail.map_or(0.0, |d| d.1.abs());
        let (lo, hi) = self.shape.bounds();
        (lo.map(|v| v - grow), hi.map(|v| v + grow))
    }

    /// HU at a point `depth` mm inside the boundary.
    pub fn hu(&self, p: [f32; 3], depth: f32) -> f32 {
        let t = &self.tissue;
        let mut hu = match t.core {
            // blend over 2 mm so the core edge is not a step
            Some((d, core)) => {
                let w = ((depth - d) / 2.0).clamp(0.0, 1.0);
                t.hu * (1.0 - w) + core * w
            }
            None => t.hu,
        };
        if let Some((n, amp)) = &t.texture {
            hu += amp * n.at(p);
        }
        hu
    }
}

/// An annotator's systematic style and random disagreement, per organ label (index 1..=3).
#[derive(Debug, Clone)]
pub struct RaterStyle {
    pub name: &'static str,
    /// Systematic boundary offset in mm per label (negative grows the mask).
    pub offset_mm: [f32; 4],
    /// Ignores fine boundary detail (draws smooth outlines).
    pub smooth: bool,
    /// Random boundary disagreement: smooth noise per label, amplitude mm.
    pub jitter_mm: [f32; 4],
    pub jitter: ValueNoise,
    /// Slice-to-slice wobble (raters contour slice by slice), amplitude mm per label.
    pub slice_jitter_mm: [f32; 4],
    pub slice_seed: u64,
}

/// Body outline parameters (an elliptic cylinder with a lumpy surface).
#[derive(Debug, Clone)]
pub struct Body {
    pub center: [f32; 2],
    pub radii: [f32; 2],
    pub surface: ValueNoise,
    pub fat_mm: f32,
    pub muscle_mm: f32,
    pub viscera: ValueNoise,
}

/// Everything needed to render one case.
#[derive(Debug, Clone)]
pub struct Anatomy {
    pub body: Body,
    /// Painted in order: later structures cover earlier ones (pancreas last).
    pub structures: Vec<Structure>,
    pub raters: [RaterStyle; 3],
}

fn rotation(rng: &mut Rng, max_deg: f64) -> [[f32; 3]; 3] {
    let a = [0; 3].map(|_| rng.uniform(-max_deg, max_deg).to_radians());
    let (sx, cx) = a[0].sin_cos();
    let (sy, cy) = a[1].sin_cos();
    let (sz, cz) = a[2].sin_cos();
    let rx = [[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]];
    let ry = [[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]];
    let rz = [[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]];
    let mul = |a: [[f64; 3]; 3], b: [[f64; 3]; 3]| {
        [0, 1, 2].map(|r| [0, 1, 2].map(|c| (0..3).map(|k| a[r][k] * b[k][c]).sum::<f64>()))
    };
    mul(mul(rz, ry), rx).map(|row| row.map(|v| v as f32))
}

impl Anatomy {
    /// Draws a case: positions, sizes, orientations, deformations and HU vary with the seed.
    pub fn sample(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let noise = |rng: &mut Rng, wavelength: f32| ValueNoise::new(rng.next_u64(), wavelength);
        let jitter =
            |rng: &mut Rng, c: [f32; 3], mm: f64| c.map(|v| v + rng.uniform(-mm, mm) as f32);
        let scale = |rng: &mut Rng, r: [f32; 3], rel: f64| {
            let s = rng.uniform(1.0 - rel, 1.0 + rel) as f32;
            r.map(|v| v * s * rng.uniform(0.95, 1.05) as f32)
        };
        let body = Body {
            center: [
                rng.uniform(-6.0, 6.0) as f32,
                rng.uniform(-18.0, -8.0) as f32,
            ],
            radii: [
                rng.uniform(148.0, 170.0) as f32,
                rng.uniform(106.0, 128.0) as f32,
            ],
            surface: noise(&mut rng, 60.0),
            fat_mm: rng.uniform(8.0, 22.0) as f32,
            muscle_mm: rng.uniform(8.0, 13.0) as f32,
            viscera: noise(&mut rng, 16.0),
        };
        let uniform = |hu: f32| Tissue {
            hu,
            core: None,
            texture: None,
        };
        let ident = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let cylinder = |x: f32, y: f32, r: [f32; 2]| Shape::Ellipsoid {
            center: [x, y, 0.0],
            radii: [r[0], r[1], 5000.0],
            rot: ident,
        };
        let mut s = Vec::new();

        // Context structures (not annotated).
        let vert_r = rng.uniform(17.0, 22.0) as f32;
        s.push(Structure {
            name: "paraspinal muscles",
            label: 0,
            shape: Shape::Union(
                Box::new(cylinder(-38.0, 92.0, [30.0, 24.0])),
                Box::new(cylinder(38.0, 92.0, [30.0, 24.0])),
                10.0,
            ),
            deform: vec![(noise(&mut rng, 50.0), 4.0)],
            detail: None,
            tissue: uniform(52.0),
        });
        s.push(Structure {
            name: "posterior vertebral arch",
            label: 0,
            shape: cylinder(0.0, 50.0 + vert_r + 12.0, [16.0, 14.0]),
            deform: vec![],
            detail: None,
            tissue: uniform(650.0),
        });
        s.push(Structure {
            name: "spinal canal",
            label: 0,
            shape: cylinder(0.0, 50.0 + vert_r + 10.0, [9.0, 8.0]),
            deform: vec![],
            detail: None,
            tissue: uniform(15.0),
        });
        s.push(Structure {
            name: "vertebral body",
            label: 0,
            shape: cylinder(0.0, 50.0, [vert_r * 1.1, vert_r]),
            deform: vec![(noise(&mut rng, 30.0), 1.5)],
            detail: None,
            tissue: Tissue {
                hu: 750.0,
                core: Some((2.5, 230.0)),
                texture: Some((noise(&mut rng, 3.0), 40.0)),
            },
        });
        s.push(Structure {
            name: "aorta",
            label: 0,
            shape: cylinder(
                rng.uniform(12.0, 20.0) as f32,
                50.0 - vert_r - 12.0,
                [11.0, 11.0],
            ),
            deform: vec![(noise(&mut rng, 40.0), 1.0)],
            detail: None,
            tissue: uniform(rng.uniform(160.0, 220.0) as f32),
        });
        s.push(Structure {
            name: "inferior vena cava",
            label: 0,
            shape: cylinder(
                rng.uniform(-30.0, -22.0) as f32,
                50.0 - vert_r - 10.0,
                [13.0, 10.0],
            ),
            deform: vec![(noise(&mut rng, 40.0), 1.5)],
            detail: None,
            tissue: uniform(rng.uniform(110.0, 150.0) as f32),
        });
        s.push(Structure {
            name: "spleen",
            label: 0,
            shape: Shape::Ellipsoid {
                center: jitter(&mut rng, [100.0, 40.0, 70.0], 8.0),
                radii: scale(&mut rng, [30.0, 48.0, 55.0], 0.15),
                rot: rotation(&mut rng, 15.0),
            },
            deform: vec![(noise(&mut rng, 35.0), 5.0)],
            detail: None,
            tissue: uniform(rng.uniform(100.0, 125.0) as f32),
        });
        s.push(Structure {
            name: "stomach",
            label: 0,
            shape: Shape::Ellipsoid {
                center: jitter(&mut rng, [50.0, -45.0, 80.0], 8.0),
                radii: scale(&mut rng, [48.0, 35.0, 45.0], 0.2),
                rot: rotation(&mut rng, 20.0),
            },
            deform: vec![(noise(&mut rng, 30.0), 6.0)],
            detail: None,
            tissue: Tissue {
                hu: 45.0,
                core: Some((4.0, 12.0)),
                texture: None,
            },
        });

        // Annotated organs, painted last so that they cover context structures.
        let kidney_hu = rng.uniform(160.0, 210.0) as f32;
        for (name, side, z) in [("right kidney", -1.0, -45.0), ("left kidney", 1.0, -30.0)] {
            let c = jitter(&mut rng, [side * 72.0, 48.0, z], 7.0);
            s.push(Structure {
                name,
                label: 2,
                shape: Shape::Ellipsoid {
                    center: c,
                    radii: scale(&mut rng, [26.0, 27.0, 52.0], 0.12),
                    rot: rotation(&mut rng, 18.0),
                },
                deform: vec![(noise(&mut rng, 30.0), 3.0)],
                detail: Some((noise(&mut rng, 9.0), 1.0)),
                tissue: Tissue {
                    hu: kidney_hu,
                    core: Some((9.0, kidney_hu - 80.0)),
                    texture: Some((noise(&mut rng, 4.0), 10.0)),
                },
            });
        }
        let right_lobe = Shape::Ellipsoid {
            center: jitter(&mut rng, [-72.0, 5.0, 65.0], 8.0),
            radii: scale(&mut rng, [78.0, 88.0, 82.0], 0.12),
            rot: rotation(&mut rng, 12.0),
        };
        let left_lobe = Shape::Ellipsoid {
            center: jitter(&mut rng, [5.0, -50.0, 85.0], 8.0),
            radii: scale(&mut rng, [55.0, 32.0, 42.0], 0.15),
            rot: rotation(&mut rng, 15.0),
        };
        s.push(Structure {
            name: "liver",
            label: 3,
            shape: Shape::Union(Box::new(right_lobe), Box::new(left_lobe), 18.0),
            deform: vec![(noise(&mut rng, 60.0), 9.0), (noise(&mut rng, 25.0), 3.0)],
            detail: Some((noise(&mut rng, 10.0), 1.2)),
            tissue: Tissue {
                hu: rng.uniform(95.0, 120.0) as f32,
                core: None,
                texture: Some((noise(&mut rng, 5.0), 8.0)),
            },
        });
        // Pancreas: head by the duodenum (patient right), body over the aorta, tail to the spleen.
        let head = jitter(&mut rng, [-28.0, -2.0, -10.0], 5.0);
        let mid = jitter(&mut rng, [12.0, -22.0, 2.0], 5.0);
        let tail = jitter(&mut rng, [82.0, 18.0, 18.0], 6.0);
        let n = 16;
        let points: Vec<[f32; 3]> = (0..=n)
            .map(|i| {
                let t = i as f32 / n as f32;
                let (a, b, c) = ((1.0 - t) * (1.0 - t), 2.0 * t * (1.0 - t), t * t);
                [0, 1, 2].map(|k| a * head[k] + b * mid[k] + c * tail[k])
            })
            .collect();
        let (r_head, r_tail) = (rng.uniform(12.0, 16.0) as f32, rng.uniform(7.0, 9.5) as f32);
        let radii = (0..=n)
            .map(|i| r_head + (r_tail - r_head) * (i as f32 / n as f32).powf(0.7))
            .collect();
        s.push(Structure {
            name: "pancreas",
            label: 1,
            shape: Shape::Tube { points, radii },
            deform: vec![(noise(&mut rng, 25.0), 2.5)],
            detail: Some((noise(&mut rng, 6.0), 1.8)),
            tissue: Tissue {
                hu: rng.uniform(85.0, 115.0) as f32,
                core: None,
                texture: Some((noise(&mut rng, 3.0), 18.0)),
            },
        });

        // Annotator styles: 1 over-segments slightly, 2 under-segments the pancreas,
        // 3 draws smooth outlines; all disagree randomly, most on the pancreas.
        let mut rater = |name, offset_mm, smooth, wavelength| RaterStyle {
            name,
            offset_mm,
            smooth,
            jitter_mm: [0.0, 2.2, 1.0, 1.3],
            jitter: ValueNoise::new(rng.next_u64(), wavelength),
            slice_jitter_mm: [0.0, 1.0, 0.5, 0.5],
            slice_seed: rng.next_u64(),
        };
        let raters = [
            rater("over-segmenting", [0.0, -1.2, -1.2, -1.5], false, 14.0),
            rater("pancreas-conservative", [0.0, 1.6, 0.2, 0.0], false, 14.0),
            rater("smooth", [0.0, 0.0, 0.0, -0.3], true, 28.0),
        ];
        Anatomy {
            body,
            structures: s,
            raters,
        }
    }

    /// Largest distance outside an organ's true boundary at which any rater may still label it.
    pub fn max_rater_reach(&self) -> f32 {
        let reach = |r: &RaterStyle| {
            (1..4)
                .map(|l| -r.offset_mm[l] + r.jitter_mm[l] + r.slice_jitter_mm[l])
                .fold(0.0f32, f32::max)
        };
        // the smoothing rater omits detail, which can move its boundary by the detail amplitude
        self.raters.iter().map(reach).fold(0.0f32, f32::max) + 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_ellipsoid_bounds_contain_the_surface() {
        let mut rng = Rng::new(3);
        let shape = Shape::Ellipsoid {
            center: [1.0, 2.0, 3.0],
            radii: [30.0, 10.0, 50.0],
            rot: rotation(&mut rng, 40.0),
        };
        let (lo, hi) = shape.bounds();
        let mut inside = 0;
        for i in 0..40 {
            for j in 0..40 {
                for k in 0..40 {
                    let p = [i, j, k].map(|v| v as f32 * 3.0 - 60.0);
                    if shape.distance(p) < 0.0 {
                        inside += 1;
                        assert!((0..3).all(|a| p[a] >= lo[a] && p[a] <= hi[a]), "{p:?}");
                    }
                }
            }
        }
        assert!(inside > 100);
        assert!(hi[0] - lo[0] < 2.0 * 50.0 + 1e-3);
    }

    #[test]
    fn tube_distance_is_signed() {
        let tube = Shape::Tube {
            points: vec![[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]],
            radii: vec![2.0, 4.0],
        };
        assert!((tube.distance([5.0, 0.0, 0.0]) + 3.0).abs() < 1e-5);
        assert!((tube.distance([5.0, 5.0, 0.0]) - 2.0).abs() < 1e-5);
    }
}
