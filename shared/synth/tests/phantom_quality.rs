//! The phantoms look like abdominal CT with CURVAS-like rater disagreement: organ HU in clinical
//! ranges, and inter-rater Dice high for liver and kidneys, clearly lower for the pancreas.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use statapp_synth::{CaseStats, Size, generate};

#[test]
fn organs_raters_and_intensities_are_realistic() {
    let stats: Vec<CaseStats> = (0..5)
        .map(|i| CaseStats::of(&generate(11, i, Size::Small)))
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let mut per_organ = [vec![], vec![], vec![]];
    for s in &stats {
        assert!(
            s.hu_mean_image < -300.0,
            "{}: air dominates the FOV corners",
            s.case_id
        );
        for (o, acc) in s.organs.iter().zip(per_organ.iter_mut()) {
            let (lo, hi) = match o.name {
                "pancreas" => (60.0, 140.0),
                "kidney" => (100.0, 230.0),
                _ => (80.0, 140.0),
            };
            assert!(
                (lo..hi).contains(&o.hu_mean),
                "{} {} HU {}",
                s.case_id,
                o.name,
                o.hu_mean
            );
            assert!(
                o.volume_ml.iter().all(|v| *v > 0.0),
                "{} {} empty",
                s.case_id,
                o.name
            );
            // systematic styles: annotator 1 over-segments every organ
            assert!(
                o.volume_ml[0] > o.volume_ml[2],
                "{} {} {:?}",
                s.case_id,
                o.name,
                o.volume_ml
            );
            if o.name == "pancreas" {
                // annotator 2 under-segments the pancreas
                assert!(o.volume_ml[1] < o.volume_ml[0] && o.volume_ml[1] < o.volume_ml[2]);
            }
            acc.extend(o.dice_pairs);
        }
    }
    let [panc, kidney, liver] = per_organ.map(|d| mean(&d));
    eprintln!("mean pairwise Dice: pancreas {panc:.3}, kidney {kidney:.3}, liver {liver:.3}");
    assert!(
        liver > 0.9 && per_organ_min(&stats, "liver") > 0.9,
        "liver {liver}"
    );
    assert!(kidney > 0.9, "kidney {kidney}");
    assert!((0.6..0.9).contains(&panc), "pancreas {panc}");
    assert!(per_organ_min(&stats, "pancreas") > 0.55);
    assert!(kidney - panc > 0.1 && liver - panc > 0.1);
}

fn per_organ_min(stats: &[CaseStats], name: &str) -> f64 {
    stats
        .iter()
        .flat_map(|s| {
            s.organs
                .iter()
                .filter(|o| o.name == name)
                .flat_map(|o| o.dice_pairs)
        })
        .fold(f64::INFINITY, f64::min)
}
