//! `statapp inspect`: what is in a NIfTI file.

use anyhow::Result;
use statapp_volume::{ReadOptions, VoxelData, read_nifti};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A .nii or .nii.gz file.
    file: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let img = read_nifti(
        &args.file,
        &ReadOptions {
            allow_non_finite: true,
            ..ReadOptions::default()
        },
    )?;
    let g = &img.geometry;
    let h = &img.header;
    println!("file         {}", args.file.display());
    println!(
        "datatype     {} (code {})",
        img.data.type_name(),
        h.datatype
    );
    println!(
        "shape zyx    {:?}   (NIfTI dim i,j,k = {:?})",
        g.shape_zyx(),
        g.dims_ijk
    );
    println!(
        "spacing zyx  {:?} (xyzt_units {})",
        g.spacing_zyx(),
        g.xyzt_units
    );
    println!(
        "voxel volume {:.6} mm3, {} voxels",
        g.voxel_volume(),
        g.n_voxels()
    );
    println!(
        "qform_code   {}   sform_code {}   qfac {}",
        g.qform_code, g.sform_code, g.qfac
    );
    println!("affine (voxel i,j,k -> world x,y,z):");
    for row in g.affine() {
        println!(
            "  [{:>11.5} {:>11.5} {:>11.5} {:>11.5}]",
            row[0], row[1], row[2], row[3]
        );
    }
    match img.scaling {
        Some(s) => println!("scaling      value = stored * {} + {}", s.slope, s.inter),
        None => println!("scaling      none"),
    }
    let descrip = String::from_utf8_lossy(&h.descrip);
    println!("description  {}", descrip.trim_end_matches('\0').trim());
    match img.value_range() {
        Some((lo, hi)) => println!("value range  {lo} .. {hi}"),
        None => println!("value range  empty"),
    }
    let non_finite = match &img.data {
        VoxelData::F32(a) => a.iter().filter(|v| !v.is_finite()).count(),
        VoxelData::F64(a) => a.iter().filter(|v| !v.is_finite()).count(),
        _ => 0,
    };
    if non_finite > 0 {
        println!("non-finite   {non_finite} voxels are NaN or infinite");
    }
    if let Some(counts) = label_counts(&img.data) {
        println!("labels       value: voxels");
        for (v, n) in counts {
            println!("  {v:>5}: {n}");
        }
    }
    Ok(())
}

/// Voxel counts per value for integer data with at most 16 distinct values (a label map).
fn label_counts(data: &VoxelData) -> Option<BTreeMap<i64, u64>> {
    let mut counts = BTreeMap::new();
    let mut add = |v: i64| {
        *counts.entry(v).or_insert(0u64) += 1;
        counts.len() <= 16
    };
    let ok = match data {
        VoxelData::U8(a) => a.iter().all(|v| add(i64::from(*v))),
        VoxelData::I8(a) => a.iter().all(|v| add(i64::from(*v))),
        VoxelData::I16(a) => a.iter().all(|v| add(i64::from(*v))),
        VoxelData::U16(a) => a.iter().all(|v| add(i64::from(*v))),
        VoxelData::I32(a) => a.iter().all(|v| add(i64::from(*v))),
        VoxelData::U32(a) => a.iter().all(|v| add(i64::from(*v))),
        VoxelData::F32(_) | VoxelData::F64(_) => false,
    };
    ok.then_some(counts)
}
