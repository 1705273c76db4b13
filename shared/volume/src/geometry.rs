//! Voxel grid geometry, kept exactly as the NIfTI header stores it (f32 fields) so that a file
//! written back has the same pixdim, qform and sform bit for bit.
//!
//! **Axis convention.** Arrays are indexed `[z, y, x]`, which is NIfTI voxel `(i, j, k) = (x, y, z)`
//! read backwards: the same memory as the file (NIfTI stores `i` fastest), and the order SimpleITK,
//! nnU-Net and the original project use. Every `_zyx` value follows it; `_ijk` values follow the header.

use crate::error::{Result, VolumeError};
use std::path::Path;

/// Default NIfTI `xyzt_units`: millimetres, seconds.
pub const UNITS_MM_SEC: u8 = 2 | 8;

/// The geometry of a 3-D NIfTI volume.
#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    /// Number of voxels along i, j, k.
    pub dims_ijk: [usize; 3],
    /// `pixdim[1..=3]`: voxel size along i, j, k (mm when `xyzt_units` says so).
    pub pixdim_ijk: [f32; 3],
    /// `pixdim[0]`: the qform handedness factor, -1 or 1.
    pub qfac: f32,
    pub qform_code: i16,
    pub sform_code: i16,
    /// Quaternion parameters b, c, d of the qform rotation.
    pub quatern_bcd: [f32; 3],
    /// qform offset (x, y, z).
    pub qoffset_xyz: [f32; 3],
    /// Rows of the sform affine.
    pub srow: [[f32; 4]; 3],
    pub xyzt_units: u8,
}

impl Geometry {
    /// An axis-aligned grid: `shape_zyx` voxels of `spacing_zyx` mm, first voxel at `origin_xyz`.
    /// Both qform and sform are set (code 1, scanner anatomical), as nibabel and ITK write them.
    pub fn axis_aligned(
        shape_zyx: [usize; 3],
        spacing_zyx: [f32; 3],
        origin_xyz: [f32; 3],
    ) -> Self {
        let [sz, sy, sx] = spacing_zyx;
        Self {
            dims_ijk: [shape_zyx[2], shape_zyx[1], shape_zyx[0]],
            pixdim_ijk: [sx, sy, sz],
            qfac: 1.0,
            qform_code: 1,
            sform_code: 1,
            quatern_bcd: [0.0; 3],
            qoffset_xyz: origin_xyz,
            srow: [
                [sx, 0.0, 0.0, origin_xyz[0]],
                [0.0, sy, 0.0, origin_xyz[1]],
                [0.0, 0.0, sz, origin_xyz[2]],
            ],
            xyzt_units: UNITS_MM_SEC,
        }
    }

    /// Array shape `[Z, Y, X]`.
    pub fn shape_zyx(&self) -> [usize; 3] {
        [self.dims_ijk[2], self.dims_ijk[1], self.dims_ijk[0]]
    }

    /// Voxel spacing `[z, y, x]`: the header's f32 pixdim widened exactly to f64.
    pub fn spacing_zyx(&self) -> [f64; 3] {
        let [i, j, k] = self.pixdim_ijk;
        [f64::from(k), f64::from(j), f64::from(i)]
    }

    /// Volume of one voxel in cubic units of the spacing.
    pub fn voxel_volume(&self) -> f64 {
        self.spacing_zyx().iter().product()
    }

    /// Number of voxels.
    pub fn n_voxels(&self) -> usize {
        self.dims_ijk.iter().product()
    }

    /// The voxel-to-world affine (rows x, y, z), chosen the way nibabel does: the sform when its
    /// code is set, else the qform when its code is set, else the bare pixdim scaling.
    pub fn affine(&self) -> [[f64; 4]; 4] {
        if self.sform_code > 0 {
            self.sform_affine()
        } else if self.qform_code > 0 {
            self.qform_affine()
        } else {
            let p = self.pixdim_ijk.map(f64::from);
            [
                [p[0], 0.0, 0.0, 0.0],
                [0.0, p[1], 0.0, 0.0],
                [0.0, 0.0, p[2], 0.0],
                [0.0, 0.0, 0.0, 1.0],
            ]
        }
    }

    /// The sform affine from `srow_*`.
    pub fn sform_affine(&self) -> [[f64; 4]; 4] {
        let r = |row: [f32; 4]| row.map(f64::from);
        [
            r(self.srow[0]),
            r(self.srow[1]),
            r(self.srow[2]),
            [0.0, 0.0, 0.0, 1.0],
        ]
    }

    /// The qform affine (NIfTI method 2): rotation from the quaternion, scaled by pixdim and qfac.
    pub fn qform_affine(&self) -> [[f64; 4]; 4] {
        let [b, c, d] = self.quatern_bcd.map(f64::from);
        let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        let rot = [
            [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c),
            ],
            [
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b),
            ],
            [
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                a * a + d * d - c * c - b * b,
            ],
        ];
        let qfac = if self.qfac < 0.0 { -1.0 } else { 1.0 };
        let p = self.pixdim_ijk.map(f64::from);
        let scale = [p[0], p[1], p[2] * qfac];
        let off = self.qoffset_xyz.map(f64::from);
        let mut m = [[0.0; 4]; 4];
        for (r, row) in rot.iter().enumerate() {
            for (col, value) in row.iter().enumerate() {
                m[r][col] = value * scale[col];
            }
            m[r][3] = off[r];
        }
        m[3][3] = 1.0;
        m
    }

    /// The geometry of the sub-grid starting at voxel `start_zyx` with `shape_zyx` voxels. The
    /// origins move so that every voxel keeps its world position; `start` may be negative (padding).
    pub fn subgrid(&self, start_zyx: [i64; 3], shape_zyx: [usize; 3]) -> Self {
        let ijk = [
            start_zyx[2] as f64,
            start_zyx[1] as f64,
            start_zyx[0] as f64,
        ];
        let shift = |m: [[f64; 4]; 4], r: usize| {
            m[r][0] * ijk[0] + m[r][1] * ijk[1] + m[r][2] * ijk[2] + m[r][3]
        };
        let q = self.qform_affine();
        let s = self.sform_affine();
        let mut out = self.clone();
        out.dims_ijk = [shape_zyx[2], shape_zyx[1], shape_zyx[0]];
        for r in 0..3 {
            out.qoffset_xyz[r] = shift(q, r) as f32;
            out.srow[r][3] = shift(s, r) as f32;
        }
        out
    }

    /// Checks that `other` (from file `b`) lies on the same voxel grid as `self` (from file `a`):
    /// identical shape, and spacing and affine equal within `1e-4` (relative to the value, at
    /// least absolute), which absorbs f32 round-off from other writers but not a real shift.
    pub fn ensure_same_grid(&self, a: &Path, other: &Geometry, b: &Path) -> Result<()> {
        let mismatch = |detail: String| VolumeError::GeometryMismatch {
            a: a.to_path_buf(),
            b: b.to_path_buf(),
            detail,
        };
        if self.dims_ijk != other.dims_ijk {
            return Err(mismatch(format!(
                "shape (z, y, x) {:?} vs {:?}",
                self.shape_zyx(),
                other.shape_zyx()
            )));
        }
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-4 * x.abs().max(y.abs()).max(1.0);
        let (sa, sb) = (self.spacing_zyx(), other.spacing_zyx());
        if !sa.iter().zip(&sb).all(|(x, y)| close(*x, *y)) {
            return Err(mismatch(format!("spacing (z, y, x) {sa:?} vs {sb:?}")));
        }
        let (ma, mb) = (self.affine(), other.affine());
        for r in 0..3 {
            for c in 0..4 {
                if !close(ma[r][c], mb[r][c]) {
                    return Err(mismatch(format!(
                        "affine row {r} {:?} vs {:?}",
                        ma[r], mb[r]
                    )));
                }
            }
        }
        Ok(())
    }

    /// Geometry from a parsed header; `dims_ijk` must already be validated as 3-D.
    pub(crate) fn from_header(h: &nifti::NiftiHeader, dims_ijk: [usize; 3]) -> Self {
        let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        Self {
            dims_ijk,
            pixdim_ijk: [h.pixdim[1], h.pixdim[2], h.pixdim[3]],
            qfac,
            qform_code: h.qform_code,
            sform_code: h.sform_code,
            quatern_bcd: [h.quatern_b, h.quatern_c, h.quatern_d],
            qoffset_xyz: [h.quatern_x, h.quatern_y, h.quatern_z],
            srow: [h.srow_x, h.srow_y, h.srow_z],
            xyzt_units: h.xyzt_units,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_aligned_affines_agree() {
        let g = Geometry::axis_aligned([10, 20, 30], [2.5, 0.8, 0.7], [-10.0, 5.0, 3.0]);
        assert_eq!(g.shape_zyx(), [10, 20, 30]);
        assert_eq!(g.spacing_zyx(), [2.5, f64::from(0.8f32), f64::from(0.7f32)]);
        let (q, s) = (g.qform_affine(), g.sform_affine());
        for r in 0..4 {
            for c in 0..4 {
                assert!((q[r][c] - s[r][c]).abs() < 1e-12, "{r} {c}");
            }
        }
    }

    #[test]
    fn subgrid_keeps_world_positions() {
        let mut g = Geometry::axis_aligned([10, 20, 30], [2.0, 1.0, 0.5], [1.0, 2.0, 3.0]);
        g.quatern_bcd = [0.1, 0.2, 0.3];
        let sub = g.subgrid([2, -3, 4], [4, 5, 6]);
        // voxel (i, j, k) of the sub-grid is voxel (i + 4, j - 3, k + 2) of the parent
        for m in [
            (g.qform_affine(), sub.qform_affine()),
            (g.sform_affine(), sub.sform_affine()),
        ] {
            let p = |a: [[f64; 4]; 4], v: [f64; 3]| {
                [0, 1, 2].map(|r| a[r][0] * v[0] + a[r][1] * v[1] + a[r][2] * v[2] + a[r][3])
            };
            let parent = p(m.0, [5.0, -2.0, 3.0]);
            let child = p(m.1, [1.0, 1.0, 1.0]);
            for r in 0..3 {
                assert!((parent[r] - child[r]).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn grid_mismatch_is_reported() {
        let g = Geometry::axis_aligned([4, 4, 4], [1.0, 1.0, 1.0], [0.0; 3]);
        let mut other = g.clone();
        assert!(
            g.ensure_same_grid(Path::new("a"), &other, Path::new("b"))
                .is_ok()
        );
        other.srow[0][3] += 0.5;
        let err = g
            .ensure_same_grid(Path::new("a.nii"), &other, Path::new("b.nii"))
            .unwrap_err();
        assert!(err.to_string().contains("b.nii"), "{err}");
        let shifted = g.subgrid([0, 0, 0], [4, 4, 5]);
        assert!(
            g.ensure_same_grid(Path::new("a"), &shifted, Path::new("b"))
                .is_err()
        );
    }
}
