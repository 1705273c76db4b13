//! NIfTI-1 volumes with their geometry.
//!
//! A [`Volume`] is an `ndarray` indexed `[z, y, x]` plus the [`Geometry`] of its grid (see the
//! `geometry` module for the axis convention). Files are read with [`read_nifti`], which returns the
//! stored type and scaling, and written atomically with [`write_nifti`].

mod error;
mod geometry;
mod header;
mod io;

pub use error::{Result, VolumeError};
pub use geometry::{Geometry, UNITS_MM_SEC};
pub use io::{
    Element, NiftiFileWriter, NiftiImage, NiftiRowReader, NiftiRowWriter, ReadOptions, Scaling,
    VoxelData, WriteOptions, encode_nifti, publish, read_nifti, read_nifti_bytes,
    read_nifti_geometry, read_nifti_geometry_bytes, write_atomic, write_nifti, write_nifti_image,
    write_nifti_with,
};

use ndarray::{Array3, s};
use std::path::Path;

/// A 3-D array indexed `[z, y, x]` on a known voxel grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume<T> {
    data: Array3<T>,
    geometry: Geometry,
}

impl<T> Volume<T> {
    /// Pairs data with a geometry; their shapes must agree.
    pub fn new(data: Array3<T>, geometry: Geometry) -> Result<Self> {
        let shape = [data.dim().0, data.dim().1, data.dim().2];
        if shape != geometry.shape_zyx() {
            return Err(VolumeError::ShapeMismatch {
                data: shape,
                geometry: geometry.shape_zyx(),
            });
        }
        Ok(Self { data, geometry })
    }

    /// Internal constructor for data known to match.
    pub(crate) fn from_parts(data: Array3<T>, geometry: Geometry) -> Self {
        debug_assert_eq!(
            [data.dim().0, data.dim().1, data.dim().2],
            geometry.shape_zyx()
        );
        Self { data, geometry }
    }

    pub fn data(&self) -> &Array3<T> {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut Array3<T> {
        &mut self.data
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    pub fn shape_zyx(&self) -> [usize; 3] {
        self.geometry.shape_zyx()
    }

    pub fn into_parts(self) -> (Array3<T>, Geometry) {
        (self.data, self.geometry)
    }

    /// A new volume on the same grid with `f` applied to every voxel.
    pub fn map<U>(&self, f: impl FnMut(&T) -> U) -> Volume<U> {
        Volume::from_parts(self.data.map(f), self.geometry.clone())
    }

    /// The sub-volume `[start, end)` (per axis, `[z, y, x]`), with its geometry moved so that
    /// every voxel keeps its world position.
    pub fn crop(&self, start_zyx: [usize; 3], end_zyx: [usize; 3]) -> Result<Volume<T>>
    where
        T: Clone,
    {
        let shape = self.shape_zyx();
        if (0..3).any(|a| start_zyx[a] > end_zyx[a] || end_zyx[a] > shape[a]) {
            return Err(VolumeError::InvalidRegion {
                start: start_zyx,
                end: end_zyx,
                shape,
            });
        }
        let view = self.data.slice(s![
            start_zyx[0]..end_zyx[0],
            start_zyx[1]..end_zyx[1],
            start_zyx[2]..end_zyx[2]
        ]);
        let new_shape = [0, 1, 2].map(|a| end_zyx[a] - start_zyx[a]);
        let start = start_zyx.map(|v| v as i64);
        Ok(Volume::from_parts(
            view.to_owned(),
            self.geometry.subgrid(start, new_shape),
        ))
    }

    /// Pads with `value`: `before` voxels ahead of and `after` voxels behind each axis `[z, y, x]`.
    pub fn pad(&self, before_zyx: [usize; 3], after_zyx: [usize; 3], value: T) -> Volume<T>
    where
        T: Clone,
    {
        let shape = self.shape_zyx();
        let new_shape = [0, 1, 2].map(|a| shape[a] + before_zyx[a] + after_zyx[a]);
        let mut data = Array3::from_elem((new_shape[0], new_shape[1], new_shape[2]), value);
        data.slice_mut(s![
            before_zyx[0]..before_zyx[0] + shape[0],
            before_zyx[1]..before_zyx[1] + shape[1],
            before_zyx[2]..before_zyx[2] + shape[2]
        ])
        .assign(&self.data);
        let start = before_zyx.map(|v| -(v as i64));
        Volume::from_parts(data, self.geometry.subgrid(start, new_shape))
    }

    /// Checks that `other` lies on this volume's grid (`a`, `b` name the files in the error).
    pub fn ensure_same_grid<U>(&self, a: &Path, other: &Volume<U>, b: &Path) -> Result<()> {
        self.geometry.ensure_same_grid(a, &other.geometry, b)
    }
}

/// The bounding box `[start, end)` (per axis `[z, y, x]`) of the voxels where `keep` is true;
/// `None` when there are none.
pub fn bounding_box<T>(
    data: &Array3<T>,
    keep: impl Fn(&T) -> bool,
) -> Option<([usize; 3], [usize; 3])> {
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    let mut any = false;
    for ((z, y, x), v) in data.indexed_iter() {
        if keep(v) {
            any = true;
            for (a, i) in [z, y, x].into_iter().enumerate() {
                lo[a] = lo[a].min(i);
                hi[a] = hi[a].max(i + 1);
            }
        }
    }
    any.then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> Volume<i16> {
        let g = Geometry::axis_aligned([4, 5, 6], [3.0, 0.8, 0.7], [10.0, -20.0, 30.0]);
        let data = Array3::from_shape_fn((4, 5, 6), |(z, y, x)| (100 * z + 10 * y + x) as i16);
        Volume::new(data, g).unwrap()
    }

    #[test]
    fn new_rejects_wrong_shape() {
        let g = Geometry::axis_aligned([4, 5, 6], [1.0; 3], [0.0; 3]);
        let err = Volume::new(Array3::<u8>::zeros((4, 6, 5)), g).unwrap_err();
        assert!(matches!(err, VolumeError::ShapeMismatch { .. }));
    }

    #[test]
    fn crop_then_pad_restores_grid() {
        let v = ramp();
        let c = v.crop([1, 2, 3], [3, 5, 6]).unwrap();
        assert_eq!(c.shape_zyx(), [2, 3, 3]);
        assert_eq!(c.data()[[0, 0, 0]], 123);
        let p = c.pad([1, 2, 3], [1, 0, 0], -1);
        assert_eq!(p.shape_zyx(), v.shape_zyx());
        assert_eq!(p.data()[[1, 2, 3]], 123);
        assert_eq!(p.data()[[0, 0, 0]], -1);
        v.ensure_same_grid(Path::new("a"), &p, Path::new("b"))
            .unwrap();
        assert!(v.crop([0, 0, 0], [5, 1, 1]).is_err());
    }

    #[test]
    fn bounding_box_of_nonzero() {
        let mut data = Array3::<u8>::zeros((5, 5, 5));
        assert_eq!(bounding_box(&data, |v| *v > 0), None);
        data[[1, 2, 3]] = 1;
        data[[3, 0, 4]] = 2;
        assert_eq!(
            bounding_box(&data, |v| *v > 0),
            Some(([1, 0, 3], [4, 3, 5]))
        );
    }
}
