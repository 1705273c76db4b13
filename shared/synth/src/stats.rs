//! Summary statistics of a phantom: what a radiologist would check first (organ HU and volume)
//! and how much the annotators agree (pairwise Dice per organ).

use crate::Phantom;
use serde::Serialize;

/// Per-organ statistics of one case.
#[derive(Debug, Clone, Serialize)]
pub struct OrganStats {
    pub label: u8,
    pub name: &'static str,
    /// Mean CT value (HU) over the voxels all three annotators label as this organ.
    pub hu_mean: f64,
    /// Volume in mL per annotator (header spacing).
    pub volume_ml: [f64; 3],
    /// Dice between annotators (1,2), (1,3), (2,3).
    pub dice_pairs: [f64; 3],
}

/// Statistics of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseStats {
    pub case_id: String,
    pub shape_zyx: [usize; 3],
    pub spacing_zyx_mm: [f64; 3],
    /// Mean HU of air outside the body and of the whole image.
    pub hu_mean_image: f64,
    pub organs: Vec<OrganStats>,
}

/// Dice of two boolean masks given as label maps and a label; NaN when both are empty.
pub fn dice(a: &[u8], b: &[u8], label: u8) -> f64 {
    let (mut inter, mut na, mut nb) = (0u64, 0u64, 0u64);
    for (x, y) in a.iter().zip(b) {
        let (p, q) = (*x == label, *y == label);
        inter += u64::from(p && q);
        na += u64::from(p);
        nb += u64::from(q);
    }
    if na + nb == 0 {
        f64::NAN
    } else {
        2.0 * inter as f64 / (na + nb) as f64
    }
}

impl CaseStats {
    pub fn of(p: &Phantom) -> Self {
        let g = p.ct.geometry();
        let voxel_ml = g.voxel_volume() / 1000.0;
        let ct: Vec<i16> = p.ct.data().iter().copied().collect();
        let ann: Vec<Vec<u8>> = p
            .annotations
            .iter()
            .map(|a| a.data().iter().copied().collect())
            .collect();
        let organs = crate::LABELS[1..]
            .iter()
            .map(|&(label, name)| {
                let (mut sum, mut n) = (0f64, 0u64);
                for (i, v) in ct.iter().enumerate() {
                    if ann.iter().all(|a| a[i] == label) {
                        sum += f64::from(*v);
                        n += 1;
                    }
                }
                let count = |a: &Vec<u8>| a.iter().filter(|v| **v == label).count() as f64;
                OrganStats {
                    label,
                    name,
                    hu_mean: if n > 0 { sum / n as f64 } else { f64::NAN },
                    volume_ml: [0, 1, 2].map(|k| count(&ann[k]) * voxel_ml),
                    dice_pairs: [(0, 1), (0, 2), (1, 2)]
                        .map(|(x, y)| dice(&ann[x], &ann[y], label)),
                }
            })
            .collect();
        CaseStats {
            case_id: p.case_id.clone(),
            shape_zyx: p.ct.shape_zyx(),
            spacing_zyx_mm: g.spacing_zyx(),
            hu_mean_image: ct.iter().map(|v| f64::from(*v)).sum::<f64>() / ct.len().max(1) as f64,
            organs,
        }
    }
}
