//! Ensembling (METRICS.md §16, nnU-Net `ensemble_folders`): the unweighted mean of the members'
//! probabilities, the segmentation as the argmax of the mean (ties to the lower label).
//!
//! Members are streamed a block of rows at a time and summed in f64, so memory holds one block
//! of each member whatever the volume, and the mean does not depend on member order (the f64 sum
//! of at most a few dozen f32 values is exact in practice, and rounded once to f32).

use ndarray::Array3;
use statapp_volume::{
    NiftiFileWriter, NiftiRowReader, ReadOptions, Volume, VolumeError, WriteOptions, write_nifti,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File names of a prediction directory.
pub const PROB_FILES: [&str; 3] = ["prob_panc.nii.gz", "prob_kidn.nii.gz", "prob_livr.nii.gz"];
pub const SEGMENTATION_FILE: &str = "segmentation.nii.gz";

#[derive(Debug, thiserror::Error)]
pub enum EnsembleError {
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(
        "{0}: member probabilities are streamed and must be unscaled float32 (as statapp writes them)"
    )]
    NotFloat32(PathBuf),
    #[error("an ensemble needs at least one member")]
    NoMembers,
    #[error("a block of rows is not one contiguous array")]
    NotContiguous,
    #[error("{path}: I/O error: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `argmax(1 - (p1 + p2 + p3), p1, p2, p3)` with f32 arithmetic, ties to the lower label.
pub fn argmax_labels(p: [&Array3<f32>; 3]) -> Array3<u8> {
    let mut out = Array3::zeros(p[0].dim());
    ndarray::Zip::from(&mut out)
        .and(p[0])
        .and(p[1])
        .and(p[2])
        .for_each(|l, a, b, c| {
            let q = [1.0 - ((a + b) + c), *a, *b, *c];
            let mut best = 0;
            for k in 1..4 {
                if q[k] > q[best] {
                    best = k;
                }
            }
            *l = best as u8;
        });
    out
}

/// Rows read, averaged and written at a time by `ensemble_to_dir` (every member's block is held
/// at once: 9 members of a 512 x 512 CT take 9 x 3 x 8 MiB).
const ENSEMBLE_ROWS: usize = 8;

/// The uncertainty maps of an ensemble, beside its probabilities (natural log, nats):
/// predictive entropy `H[mean p]` (total), the members' expected entropy `E[H[p_m]]`
/// (aleatoric) and their mutual information `H[mean p] - E[H[p_m]]` (epistemic).
pub const UNCERTAINTY_FILES: [&str; 3] = [
    "entropy.nii.gz",
    "expected_entropy.nii.gz",
    "mutual_information.nii.gz",
];

/// The four class probabilities of one member at one voxel, background `1 - (p1 + p2 + p3)`,
/// in f64 (a negative rounding residue of the background counts as 0 in the entropies).
fn classes(p: [f32; 3]) -> [f64; 4] {
    let [a, b, c] = p.map(f64::from);
    [1.0 - ((a + b) + c), a, b, c]
}

fn plogp(p: f64) -> f64 {
    if p > 0.0 { p * p.ln() } else { 0.0 }
}

/// Entropy, expected entropy and mutual information at one voxel from its members'
/// probabilities. The mutual information is the members' mean KL divergence from the mean
/// (`mean_m sum_c p_mc ln(p_mc / pbar_c)`), which is exactly 0 for identical members; rounding
/// residues are clamped so that `0 <= MI <= H` holds everywhere (Jensen: it does exactly).
pub fn voxel_uncertainty(members: &[[f32; 3]], mean: [f64; 3]) -> [f32; 3] {
    let pbar = {
        let [a, b, c] = mean;
        [1.0 - ((a + b) + c), a, b, c]
    };
    let h = -pbar.iter().map(|p| plogp(*p)).sum::<f64>();
    let mut kl = 0.0;
    for m in members {
        for (p, q) in classes(*m).iter().zip(&pbar) {
            if *p > 0.0 && *q > 0.0 {
                kl += p * (p / q).ln();
            }
        }
    }
    let h = h.max(0.0);
    let mi = (kl / members.len() as f64).clamp(0.0, h);
    [h as f32, (h - mi) as f32, mi as f32]
}

/// `ensemble` + `write_prediction` (the same bytes) a block of rows at a time, and the
/// uncertainty maps ([`UNCERTAINTY_FILES`]) from the same pass: every member's maps are read as
/// streams, so memory holds one block of each, not the volumes.
pub fn ensemble_to_dir(members: &[PathBuf], dir: &Path) -> Result<(), EnsembleError> {
    let first = members.first().ok_or(EnsembleError::NoMembers)?;
    let opts = ReadOptions::default();
    // readers[member][file]
    let mut readers = Vec::with_capacity(members.len());
    for m in members {
        let mut per_member = Vec::with_capacity(3);
        for file in PROB_FILES {
            let path = m.join(file);
            match NiftiRowReader::open(&path, &opts)? {
                Some(r) => per_member.push(r),
                None => return Err(EnsembleError::NotFloat32(path)),
            }
        }
        readers.push(per_member);
    }
    let reference = first.join(PROB_FILES[0]);
    let geometry = readers[0][0].geometry.clone();
    for (m, per_member) in members.iter().zip(&readers) {
        for (file, r) in PROB_FILES.iter().zip(per_member) {
            geometry.ensure_same_grid(&reference, &r.geometry, &m.join(file))?;
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| EnsembleError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    // straight to files beside their destinations: not even the compressed maps stay in memory
    let w = WriteOptions::default();
    let create = |file: &str| NiftiFileWriter::<f32>::create(dir.join(file), &geometry, &w);
    let mut maps = [
        create(PROB_FILES[0])?,
        create(PROB_FILES[1])?,
        create(PROB_FILES[2])?,
    ];
    let mut uncertainty = [
        create(UNCERTAINTY_FILES[0])?,
        create(UNCERTAINTY_FILES[1])?,
        create(UNCERTAINTY_FILES[2])?,
    ];
    let mut labels = NiftiFileWriter::<u8>::create(dir.join(SEGMENTATION_FILE), &geometry, &w)?;
    for _ in (0..geometry.shape_zyx()[0]).step_by(ENSEMBLE_ROWS) {
        let mut block = Vec::with_capacity(members.len());
        for per_member in &mut readers {
            let mut files = Vec::with_capacity(3);
            for r in per_member.iter_mut() {
                files.push(r.read_rows(ENSEMBLE_ROWS)?);
            }
            block.push(files);
        }
        let (means, maps_u) = combine_block(&block)?;
        for (w, m) in maps
            .iter_mut()
            .chain(&mut uncertainty)
            .zip(means.iter().chain(&maps_u))
        {
            w.write_rows(m.view())?;
        }
        labels.write_rows(argmax_labels([&means[0], &means[1], &means[2]]).view())?;
    }
    for m in maps.into_iter().chain(uncertainty) {
        m.finish()?;
    }
    labels.finish()?;
    Ok(())
}

/// Three maps of one block of rows.
type Maps = [Array3<f32>; 3];

/// One block of rows: `block[member][file]` -> the mean maps (each the f64 sum of the members
/// rounded once to f32) and the three uncertainty maps.
fn combine_block(block: &[Vec<Array3<f32>>]) -> Result<(Maps, Maps), EnsembleError> {
    let dim = block.first().ok_or(EnsembleError::NoMembers)?[0].dim();
    let n = block.len() as f64;
    let flat: Vec<[&[f32]; 3]> = block
        .iter()
        .map(|files| {
            let s = |f: usize| files[f].as_slice().ok_or(EnsembleError::NotContiguous);
            Ok([s(0)?, s(1)?, s(2)?])
        })
        .collect::<Result<_, EnsembleError>>()?;
    let len = dim.0 * dim.1 * dim.2;
    let mut out: [Vec<f32>; 6] = std::array::from_fn(|_| vec![0.0; len]);
    let [m0, m1, m2, h, e, mi] = &mut out;
    use rayon::prelude::*;
    (m0.par_iter_mut(), m1.par_iter_mut(), m2.par_iter_mut())
        .into_par_iter()
        .zip((h.par_iter_mut(), e.par_iter_mut(), mi.par_iter_mut()).into_par_iter())
        .enumerate()
        .for_each_init(Vec::new, |voxel, (i, ((a, b, c), (hh, ee, ii)))| {
            voxel.clear();
            voxel.extend(flat.iter().map(|f| [f[0][i], f[1][i], f[2][i]]));
            let sum = voxel.iter().fold([0.0f64; 3], |acc, p| {
                [
                    acc[0] + f64::from(p[0]),
                    acc[1] + f64::from(p[1]),
                    acc[2] + f64::from(p[2]),
                ]
            });
            let mean = sum.map(|s| s / n);
            [*a, *b, *c] = mean.map(|m| m as f32);
            [*hh, *ee, *ii] = voxel_uncertainty(voxel, mean);
        });
    let shape =
        |v: Vec<f32>| Array3::from_shape_vec(dim, v).map_err(|_| EnsembleError::NotContiguous);
    let [m0, m1, m2, h, e, mi] = out;
    Ok((
        [shape(m0)?, shape(m1)?, shape(m2)?],
        [shape(h)?, shape(e)?, shape(mi)?],
    ))
}

/// Writes a prediction directory (probability maps and segmentation).
pub fn write_prediction(
    dir: &Path,
    probs: &[Volume<f32>; 3],
    labels: &Volume<u8>,
) -> Result<(), EnsembleError> {
    std::fs::create_dir_all(dir).map_err(|source| EnsembleError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for (file, p) in PROB_FILES.iter().zip(probs) {
        write_nifti(dir.join(file), p)?;
    }
    write_nifti(dir.join(SEGMENTATION_FILE), labels)?;
    Ok(())
}

/// The original's strategies from model ids `anno<k>_init<seed>_fold<f>`: `ensemble_anno<k>` for
/// each annotator with at least two models, and `ensemble_all` over every model (at least two).
pub fn strategies(model_ids: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in model_ids {
        if let Some(k) = id
            .strip_prefix("anno")
            .and_then(|r| r.split('_').next())
            .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_digit()))
        {
            out.entry(format!("ensemble_anno{k}"))
                .or_default()
                .push(id.clone());
        }
    }
    out.retain(|_, m| m.len() >= 2);
    if model_ids.len() >= 2 {
        out.insert("ensemble_all".into(), model_ids.to_vec());
    }
    for members in out.values_mut() {
        members.sort();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use statapp_volume::{Geometry, read_nifti};

    /// The whole-volume ensemble the streamed one replaced: the reference its bytes are held to.
    fn ensemble(members: &[PathBuf]) -> Result<([Volume<f32>; 3], Volume<u8>), EnsembleError> {
        let first = members.first().ok_or(EnsembleError::NoMembers)?;
        let opts = ReadOptions::default();
        let mut reference: Option<(Geometry, PathBuf)> = None;
        let mut means = Vec::with_capacity(3);
        for file in PROB_FILES {
            let mut acc: Option<Array3<f64>> = None;
            for m in members {
                let path = m.join(file);
                let v = read_nifti(&path, &opts)?.into_f32();
                match &reference {
                    Some((g, p)) => g.ensure_same_grid(p, v.geometry(), &path)?,
                    None => reference = Some((v.geometry().clone(), path.clone())),
                }
                match &mut acc {
                    Some(a) => ndarray::Zip::from(a)
                        .and(v.data())
                        .for_each(|s, x| *s += f64::from(*x)),
                    None => acc = Some(v.data().mapv(f64::from)),
                }
            }
            let n = members.len() as f64;
            let mean = acc.map(|a| a.mapv(|s| (s / n) as f32));
            means.push(mean.unwrap_or_default());
        }
        let geometry = match reference {
            Some((g, _)) => g,
            None => read_nifti(first.join(PROB_FILES[0]), &opts)?.geometry,
        };
        let labels = argmax_labels([&means[0], &means[1], &means[2]]);
        let mut vols = means.into_iter().map(|m| Volume::new(m, geometry.clone()));
        let probs = [
            vols.next().ok_or(EnsembleError::NoMembers)??,
            vols.next().ok_or(EnsembleError::NoMembers)??,
            vols.next().ok_or(EnsembleError::NoMembers)??,
        ];
        Ok((probs, Volume::new(labels, geometry)?))
    }

    fn write_member(dir: &Path, g: &Geometry, seed: u32) {
        let probs: Vec<Volume<f32>> = (0..3)
            .map(|k| {
                let [nz, ny, nx] = g.shape_zyx();
                let data = Array3::from_shape_fn((nz, ny, nx), |(z, y, x)| {
                    let h = (z * 31 + y * 7 + x * 3 + k * 11) as u32 * (seed + 1) % 97;
                    h as f32 / 300.0
                });
                Volume::new(data, g.clone()).unwrap()
            })
            .collect();
        let labels = argmax_labels([probs[0].data(), probs[1].data(), probs[2].data()]);
        let probs = [probs[0].clone(), probs[1].clone(), probs[2].clone()];
        write_prediction(dir, &probs, &Volume::new(labels, g.clone()).unwrap()).unwrap();
    }

    #[test]
    fn one_member_is_itself_and_order_does_not_matter() {
        let tmp = tempfile::tempdir().unwrap();
        let g = Geometry::axis_aligned([37, 4, 5], [2.0, 0.8, 0.8], [0.0; 3]);
        let dirs: Vec<PathBuf> = (0..4).map(|i| tmp.path().join(format!("m{i}"))).collect();
        for (i, d) in dirs.iter().enumerate() {
            write_member(d, &g, i as u32);
        }
        let (p, l) = ensemble(&dirs[..1]).unwrap();
        let read = |f: &str| {
            read_nifti(dirs[0].join(f), &ReadOptions::default())
                .unwrap()
                .into_f32()
        };
        assert_eq!(p[1], read(PROB_FILES[1]));
        let seg = read_nifti(dirs[0].join(SEGMENTATION_FILE), &ReadOptions::default()).unwrap();
        assert_eq!(l, seg.to_labels(3).unwrap());
        let (a, la) = ensemble(&dirs).unwrap();
        let reversed: Vec<PathBuf> = dirs.iter().rev().cloned().collect();
        let (b, lb) = ensemble(&reversed).unwrap();
        // the streamed ensemble writes what ensemble + write_prediction write
        let (whole, streamed) = (tmp.path().join("whole"), tmp.path().join("streamed"));
        write_prediction(&whole, &a, &la).unwrap();
        ensemble_to_dir(&dirs, &streamed).unwrap();
        for f in PROB_FILES.iter().chain([&SEGMENTATION_FILE]) {
            assert!(
                std::fs::read(whole.join(f)).unwrap() == std::fs::read(streamed.join(f)).unwrap(),
                "{f}"
            );
        }
        assert_eq!(a, b);
        assert_eq!(la, lb);
    }

    fn read_map(dir: &Path, file: &str) -> Volume<f32> {
        read_nifti(dir.join(file), &ReadOptions::default())
            .unwrap()
            .into_f32()
    }

    #[test]
    fn uncertainty_maps_bound_each_other_on_the_images_grid() {
        let tmp = tempfile::tempdir().unwrap();
        let g = Geometry::axis_aligned([19, 6, 5], [2.5, 0.7, 0.9], [10.0, -3.0, 4.0]);
        let dirs: Vec<PathBuf> = (0..5).map(|i| tmp.path().join(format!("m{i}"))).collect();
        for (i, d) in dirs.iter().enumerate() {
            write_member(d, &g, i as u32 * 3);
        }
        let out = tmp.path().join("out");
        ensemble_to_dir(&dirs, &out).unwrap();
        let [h, e, mi] = UNCERTAINTY_FILES.map(|f| read_map(&out, f));
        for v in [&h, &e, &mi] {
            g.ensure_same_grid(Path::new("members"), v.geometry(), Path::new("map"))
                .unwrap();
        }
        let mut informative = 0;
        for ((h, e), mi) in h.data().iter().zip(e.data()).zip(mi.data()) {
            assert!(*mi >= 0.0 && mi <= h && *e >= 0.0, "H {h} E {e} MI {mi}");
            assert!(
                (h - (e + mi)).abs() <= 1e-6 * h.max(1.0),
                "H {h} != E {e} + MI {mi}"
            );
            assert!(*h <= 4f32.ln() + 1e-6);
            informative += usize::from(*mi > 1e-3);
        }
        assert!(
            informative > 100,
            "members that disagree give mutual information"
        );
        // identical members: no epistemic uncertainty at all, the entropy is every member's
        let same = vec![dirs[0].clone(); 3];
        let out = tmp.path().join("same");
        ensemble_to_dir(&same, &out).unwrap();
        assert!(
            read_map(&out, UNCERTAINTY_FILES[2])
                .data()
                .iter()
                .all(|v| *v == 0.0)
        );
        assert_eq!(
            read_map(&out, UNCERTAINTY_FILES[0]),
            read_map(&out, UNCERTAINTY_FILES[1])
        );
    }

    #[test]
    fn one_voxel_by_hand() {
        // two members: certain pancreas, certain kidney; mean [0, .5, .5, 0]
        let members = [[1.0f32, 0.0, 0.0], [0.0, 1.0, 0.0]];
        let [h, e, mi] = voxel_uncertainty(&members, [0.5, 0.5, 0.0]);
        let ln2 = 2f32.ln();
        assert!((h - ln2).abs() < 1e-7 && e == 0.0 && (mi - ln2).abs() < 1e-7);
        // two identical uniform members: all aleatoric
        let u = [0.25f32; 3];
        let [h, e, mi] = voxel_uncertainty(&[u, u], [0.25; 3]);
        assert!((h - 4f32.ln()).abs() < 1e-6 && h == e && mi == 0.0);
    }

    #[test]
    fn mismatched_geometry_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        write_member(
            &a,
            &Geometry::axis_aligned([3, 4, 5], [2.0, 0.8, 0.8], [0.0; 3]),
            0,
        );
        write_member(
            &b,
            &Geometry::axis_aligned([3, 4, 5], [2.0, 0.8, 0.9], [0.0; 3]),
            1,
        );
        let err = ensemble(&[a, b]).unwrap_err();
        assert!(err.to_string().contains("spacing"), "{err}");
    }

    #[test]
    fn ties_go_to_the_lower_label() {
        let half = Array3::from_elem((1, 1, 1), 0.5f32);
        let zero = Array3::zeros((1, 1, 1));
        // background 0, pancreas 0.5, kidney 0.5: pancreas (1) wins
        assert_eq!(argmax_labels([&half, &half, &zero])[[0, 0, 0]], 1);
    }

    #[test]
    fn strategies_follow_the_original() {
        let ids: Vec<String> = [
            "anno1_init1_foldall",
            "anno1_init2_foldall",
            "anno2_init1_foldall",
        ]
        .map(String::from)
        .to_vec();
        let s = strategies(&ids);
        assert_eq!(
            s.keys().collect::<Vec<_>>(),
            ["ensemble_all", "ensemble_anno1"]
        );
        assert_eq!(s["ensemble_all"].len(), 3);
    }
}
