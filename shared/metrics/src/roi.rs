//! The region of interest (METRICS.md §0.2): an in-plane box, all slices kept.

use ndarray::Array3;
use serde::Serialize;

/// How the ROI is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoiMode {
    /// In-plane box of the union of the annotations (the original statapp rule, default).
    Annotations,
    /// In-plane box of CT > 0 (the CURVAS 2024 rule).
    Ct,
    /// The whole volume.
    None,
}

impl std::str::FromStr for RoiMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "annotations" => Ok(RoiMode::Annotations),
            "ct" => Ok(RoiMode::Ct),
            "none" => Ok(RoiMode::None),
            other => Err(format!(
                "unknown ROI mode {other:?} (annotations, ct or none)"
            )),
        }
    }
}

/// The ROI as reported in `inputs.roi`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Roi {
    pub mode: String,
    pub z: [usize; 2],
    pub y: [usize; 2],
    pub x: [usize; 2],
    pub shape_zyx: [usize; 3],
    pub n_voxels: usize,
}

impl Roi {
    /// The in-plane bounding box over all slices of `mask`, or the whole volume (mode noted) if
    /// the mask is empty.
    pub fn from_mask<T>(mode: RoiMode, data: &Array3<T>, keep: impl Fn(&T) -> bool) -> Self {
        let (nz, ny, nx) = data.dim();
        let name = match mode {
            RoiMode::Annotations => "annotations",
            RoiMode::Ct => "ct",
            RoiMode::None => return Self::whole("none", [nz, ny, nx]),
        };
        let (mut y0, mut y1, mut x0, mut x1) = (usize::MAX, 0, usize::MAX, 0);
        for ((_, y, x), v) in data.indexed_iter() {
            if keep(v) {
                y0 = y0.min(y);
                y1 = y1.max(y + 1);
                x0 = x0.min(x);
                x1 = x1.max(x + 1);
            }
        }
        if y0 == usize::MAX {
            return Self::whole(&format!("{name} (empty mask: no crop)"), [nz, ny, nx]);
        }
        Self {
            mode: name.into(),
            z: [0, nz],
            y: [y0, y1],
            x: [x0, x1],
            shape_zyx: [nz, y1 - y0, x1 - x0],
            n_voxels: nz * (y1 - y0) * (x1 - x0),
        }
    }

    /// The annotation-union ROI of three label maps.
    pub fn from_annotations(annotations: [&Array3<u8>; 3]) -> Self {
        // the union of `A > 0` over annotators is what statapp crops to
        let mut union = annotations[0].clone();
        for a in &annotations[1..] {
            union.zip_mut_with(a, |u, v| *u |= *v);
        }
        Self::from_mask(RoiMode::Annotations, &union, |v| *v > 0)
    }

    pub fn whole(mode: &str, shape: [usize; 3]) -> Self {
        Self {
            mode: mode.into(),
            z: [0, shape[0]],
            y: [0, shape[1]],
            x: [0, shape[2]],
            shape_zyx: shape,
            n_voxels: shape.iter().product(),
        }
    }

    /// The ROI voxels of `data`, flattened in `[z, y, x]` order.
    pub fn crop<T: Copy>(&self, data: &Array3<T>) -> Vec<T> {
        data.slice(ndarray::s![.., self.y[0]..self.y[1], self.x[0]..self.x[1]])
            .iter()
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_is_in_plane_and_keeps_all_slices() {
        let mut a = Array3::<u8>::zeros((3, 5, 6));
        a[[0, 1, 2]] = 1;
        a[[2, 3, 4]] = 3;
        let r = Roi::from_mask(RoiMode::Annotations, &a, |v| *v > 0);
        assert_eq!((r.z, r.y, r.x), ([0, 3], [1, 4], [2, 5]));
        assert_eq!(r.n_voxels, 27);
        assert_eq!(r.crop(&a).len(), 27);
        let empty = Roi::from_mask(RoiMode::Ct, &Array3::<u8>::zeros((2, 2, 2)), |v| *v > 0);
        assert_eq!(empty.mode, "ct (empty mask: no crop)");
        assert_eq!(empty.n_voxels, 8);
    }
}
