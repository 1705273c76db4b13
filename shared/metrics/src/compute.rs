//! Scores one prediction of one case against its three annotations (METRICS.md §1-§11, §18).

use crate::calibration::{AceBins, EceBins, softmax4};
use crate::crps;
use crate::edt::squared_edt;
use crate::hausdorff::{Boxed, HausdorffResult, Surface, directed_sq, edges};
use crate::ranking::{
    self, Group, Item, TieAware, ValuesLoop, groups, item, payload_of, radix_sort,
};
use crate::real::{Real, mean_strict, nan_mean};
use crate::report::*;
use crate::roi::Roi;
use rayon::prelude::*;
use std::collections::BTreeMap;

const ORGANS: [&str; 3] = ["pancreas", "kidney", "liver"];
const SHORT: [&str; 3] = ["panc", "kidn", "livr"];

/// The ROI voxels of one case, flattened in `[z, y, x]` order.
#[derive(Debug, Clone)]
pub struct CaseArrays {
    /// ROI shape `[z, y, x]`.
    pub dims: [usize; 3],
    /// Annotators 1, 2, 3: labels 0..=3.
    pub annotations: [Vec<u8>; 3],
    /// Pancreas, kidney, liver probabilities.
    pub probabilities: [Vec<f32>; 3],
    /// The hard prediction `L`; derived from the probabilities when absent.
    pub prediction: Option<Vec<u8>>,
}

/// What the report says about where the arrays came from.
#[derive(Debug, Clone)]
pub struct CaseMeta {
    pub case: Option<String>,
    pub shape_zyx: [usize; 3],
    pub spacing_zyx_mm: [f64; 3],
    pub roi: Roi,
    /// File name of the prediction, or `None` when `L` is the argmax.
    pub prediction_name: Option<String>,
}

/// Maps fixed-size index chunks in parallel and returns the results in chunk order. Reductions
/// over the results are therefore independent of the thread count and scheduling: the same
/// inputs give the same bits, which keeps re-run outputs byte-identical.
fn chunked<T: Send>(n: usize, f: impl Fn(std::ops::Range<usize>) -> T + Sync) -> Vec<T> {
    const CHUNK: usize = 1 << 16;
    (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| f(c * CHUNK..n.min((c + 1) * CHUNK)))
        .collect()
}

/// Mean over annotators of one field (NaN if any is NaN).
fn mean_over<T>(per: &BTreeMap<String, T>, f: fn(&T) -> Real) -> Real {
    Real(mean_strict(
        &per.values().map(|p| f(p).0).collect::<Vec<_>>(),
    ))
}

/// Runs `f`, logging its wall time at debug level (`RUST_LOG=statapp_metrics=debug`).
pub(crate) fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = std::time::Instant::now();
    let out = f();
    tracing::debug!(seconds = t.elapsed().as_secs_f64(), "{what}");
    out
}

/// `p_0 = 1 - (p_1 + p_2 + p_3)` in f32, as numpy computes it.
fn p0(p: &[Vec<f32>; 3], i: usize) -> f32 {
    1.0 - ((p[0][i] + p[1][i]) + p[2][i])
}

fn argmax4(v: [f32; 4]) -> u8 {
    let mut best = 0;
    for c in 1..4 {
        if v[c] > v[best] {
            best = c;
        }
    }
    best as u8
}

/// Computes every metric of §18 for one case.
pub fn compute(case: &CaseArrays, meta: CaseMeta) -> CaseMetrics {
    let n = case.dims.iter().product::<usize>();
    let p = &case.probabilities;
    let labels: Vec<u8> = match &case.prediction {
        Some(l) => l.clone(),
        None => (0..n)
            .into_par_iter()
            .map(|i| argmax4([p0(p, i), p[0][i], p[1][i], p[2][i]]))
            .collect(),
    };
    let spacing = meta.spacing_zyx_mm;
    let voxel_volume = spacing[0] * spacing[1] * spacing[2];

    let ((organs, compat_hd), global) = rayon::join(
        || {
            rayon::join(
                || {
                    (1..=3u8)
                        .into_par_iter()
                        .map(|k| {
                            timed(&format!("organ {k}"), || {
                                organ_metrics(case, &labels, k, spacing, voxel_volume)
                            })
                        })
                        .collect::<Vec<_>>()
                },
                || timed("compat hausdorff", || compat_hausdorff(case, &labels)),
            )
        },
        || timed("voxel pass", || voxel_pass(case, &labels)),
    );

    let mut compat = serde_json::Map::new();
    let put = |m: &mut serde_json::Map<String, serde_json::Value>, k: &str, v: f64| {
        m.insert(k.to_string(), real_value(v));
    };
    for (i, o) in organs.iter().enumerate() {
        put(
            &mut compat,
            &format!("DICE_{}", SHORT[i]),
            o.organ.dice_monai_linewise.0,
        );
    }
    for (i, o) in organs.iter().enumerate() {
        put(
            &mut compat,
            &format!("CONF_{}", SHORT[i]),
            o.organ.confidence.0,
        );
    }
    put(&mut compat, "Entropy_GT", global.entropy_gt);
    put(&mut compat, "Entropy_Pred", global.entropy_pred);
    for (a, hd) in compat_hd.iter().enumerate() {
        // statapp's directed_hausdorff crashes on an empty set: null here
        let v = if hd.is_finite() { *hd } else { f64::NAN };
        put(&mut compat, &format!("Hausdorff_{}", a + 1), v);
    }
    for a in 0..3 {
        put(&mut compat, &format!("ECE_{}", a + 1), global.ece[a]);
    }
    for a in 0..3 {
        put(&mut compat, &format!("ACE_{}", a + 1), global.ace_compat[a]);
    }
    for (i, o) in organs.iter().enumerate() {
        put(&mut compat, &format!("AUROC_{}", SHORT[i]), o.compat_auroc);
    }
    for (i, o) in organs.iter().enumerate() {
        put(&mut compat, &format!("AURC_{}", SHORT[i]), o.compat_aurc);
    }
    for (i, o) in organs.iter().enumerate() {
        put(&mut compat, &format!("EAURC_{}", SHORT[i]), o.compat_eaurc);
    }
    for (i, o) in organs.iter().enumerate() {
        put(
            &mut compat,
            &format!("CRPS_{}", SHORT[i]),
            o.organ.crps.crps_statapp_numeric_vox.0,
        );
    }
    for (name, v) in ["NCC_GT1-2", "NCC_GT1-3", "NCC_GT2-3"]
        .iter()
        .zip(global.ncc_pairs)
    {
        put(&mut compat, name, v);
    }
    put(&mut compat, "NCC_mean", mean_strict(&global.ncc_pairs));

    let organ_ncc: Vec<f64> = organs.iter().map(|o| o.organ.ncc.0).collect();
    let annotators = (0..3)
        .map(|a| {
            (
                (a + 1).to_string(),
                Annotator {
                    ece: Real(global.ece[a]),
                    ece_softmax_fallback_applied: global.softmax_fallback,
                    ace: Real(global.ace[a]),
                    accuracy_vs_pred: Real(global.accuracy[a]),
                },
            )
        })
        .collect();
    CaseMetrics {
        case: meta.case,
        inputs: Inputs {
            shape_zyx: meta.shape_zyx,
            spacing_zyx_mm: spacing,
            voxel_volume_mm3: voxel_volume,
            pred_source: meta
                .prediction_name
                .unwrap_or_else(|| "argmax([1-sum(p), p1, p2, p3])".into()),
            roi: meta.roi,
            background_prob_negative_voxels: global.negative_p0,
            all_class_probs_in_unit_interval: !global.softmax_fallback,
        },
        organs: organs
            .into_iter()
            .enumerate()
            .map(|(i, o)| ((i + 1).to_string(), o.organ))
            .collect(),
        annotators,
        global: Global {
            entropy_gt_labels: Real(global.entropy_gt),
            entropy_pred_labels: Real(global.entropy_pred),
            mean_predictive_entropy: Real(global.predictive_entropy),
            mean_ncc_organs: Real(nan_mean(&organ_ncc)),
        },
        statapp_compat: compat,
    }
}

/// Per-voxel statistics that do not depend on the organ.
struct GlobalStats {
    negative_p0: u64,
    softmax_fallback: bool,
    ece: [f64; 3],
    ace: [f64; 3],
    ace_compat: [f64; 3],
    accuracy: [f64; 3],
    entropy_gt: f64,
    entropy_pred: f64,
    predictive_entropy: f64,
    ncc_pairs: [f64; 3],
}

#[derive(Default, Clone)]
struct PassAcc {
    ece: EceBins,
    ace: AceBins,
    correct: [u64; 3],
    gt_hist: [u64; 4],
    pred_hist: [u64; 4],
    entropy_sum: f64,
}

fn label_entropy(hist: &[u64]) -> f64 {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return f64::NAN;
    }
    -hist
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let f = *c as f64 / total as f64;
            f * f.ln()
        })
        .sum::<f64>()
}

fn voxel_pass(case: &CaseArrays, labels: &[u8]) -> GlobalStats {
    let n = labels.len();
    let p = &case.probabilities;
    let ann = &case.annotations;
    let (negative_p0, outside) = (0..n)
        .into_par_iter()
        .map(|i| {
            let q = [p0(p, i), p[0][i], p[1][i], p[2][i]];
            (
                u64::from(q[0] < 0.0),
                q.iter().any(|v| !(0.0..=1.0).contains(v)),
            )
        })
        .reduce(|| (0, false), |a, b| (a.0 + b.0, a.1 || b.1));
    let parts = chunked(n, |range| {
        let mut acc = PassAcc::default();
        for i in range {
            let q = [p0(p, i), p[0][i], p[1][i], p[2][i]];
            let a = [ann[0][i], ann[1][i], ann[2][i]];
            acc.ece.add(if outside { softmax4(q) } else { q }, a);
            let conf = q.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
            let l = labels[i];
            acc.ace.add(conf, a.map(|x| x == l));
            for k in 0..3 {
                acc.correct[k] += u64::from(a[k] == l);
                acc.gt_hist[usize::from(a[k])] += 1;
            }
            acc.pred_hist[usize::from(l.min(3))] += 1;
            let clipped = q.map(|v| f64::from(v).clamp(0.0, 1.0));
            let s: f64 = clipped.iter().sum();
            if s > 0.0 {
                acc.entropy_sum -= clipped
                    .iter()
                    .filter(|v| **v > 0.0)
                    .map(|v| (v / s) * (v / s).ln())
                    .sum::<f64>();
            }
        }
        acc
    });
    let acc = parts.into_iter().fold(PassAcc::default(), |mut x, y| {
        x.ece.merge(&y.ece);
        x.ace.merge(&y.ace);
        for k in 0..3 {
            x.correct[k] += y.correct[k];
        }
        for c in 0..4 {
            x.gt_hist[c] += y.gt_hist[c];
            x.pred_hist[c] += y.pred_hist[c];
        }
        x.entropy_sum += y.entropy_sum;
        x
    });
    let pair = |a: usize, b: usize| ncc_by(n, |i| f64::from(ann[a][i]), |i| f64::from(ann[b][i]));
    GlobalStats {
        negative_p0,
        softmax_fallback: outside,
        ece: [0, 1, 2].map(|a| acc.ece.ece(a)),
        ace: [0, 1, 2].map(|a| acc.ace.ace(a, false)),
        ace_compat: [0, 1, 2].map(|a| acc.ace.ace(a, true)),
        accuracy: acc.correct.map(|c| c as f64 / n as f64),
        entropy_gt: label_entropy(&acc.gt_hist),
        entropy_pred: label_entropy(&acc.pred_hist),
        predictive_entropy: acc.entropy_sum / n as f64,
        ncc_pairs: [pair(0, 1), pair(0, 2), pair(1, 2)],
    }
}

/// ValUES NCC: `sum (g - mean g)(u - mean u) / (N s_g s_u)`, `s` with ddof 1; NaN if constant.
pub fn ncc(g: &[f64], u: &[f64]) -> f64 {
    ncc_by(g.len().min(u.len()), |i| g[i], |i| u[i])
}

/// [`ncc`] over values produced on the fly: two passes, no temporary arrays.
fn ncc_by(n: usize, g: impl Fn(usize) -> f64 + Sync, u: impl Fn(usize) -> f64 + Sync) -> f64 {
    if n < 2 {
        return f64::NAN;
    }
    let nf = n as f64;
    let (sg, su) = chunked(n, |r| r.fold((0.0, 0.0), |a, i| (a.0 + g(i), a.1 + u(i))))
        .into_iter()
        .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    let (mg, mu) = (sg / nf, su / nf);
    let (sgg, suu, sgu) = chunked(n, |r| {
        r.fold((0.0, 0.0, 0.0), |a, i| {
            let (x, y) = (g(i) - mg, u(i) - mu);
            (a.0 + x * x, a.1 + y * y, a.2 + x * y)
        })
    })
    .into_iter()
    .fold((0.0, 0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
    if sgg == 0.0 || suu == 0.0 {
        return f64::NAN;
    }
    let (sd_g, sd_u) = ((sgg / (nf - 1.0)).sqrt(), (suu / (nf - 1.0)).sqrt());
    sgu / (nf * sd_g * sd_u)
}

/// Binary entropy in nats of a probability clipped to [0, 1].
fn binary_entropy(p: f32) -> f64 {
    let p = f64::from(p).clamp(0.0, 1.0);
    let h = |x: f64| if x > 0.0 { -x * x.ln() } else { 0.0 };
    h(p) + h(1.0 - p)
}

struct OrganResult {
    organ: Organ,
    compat_auroc: f64,
    compat_aurc: f64,
    compat_eaurc: f64,
}

fn organ_metrics(
    case: &CaseArrays,
    labels: &[u8],
    k: u8,
    spacing: [f64; 3],
    voxel_volume: f64,
) -> OrganResult {
    let ki = usize::from(k) - 1;
    let ann = &case.annotations;
    let prob = &case.probabilities[ki];
    let n = labels.len();
    let [nz, ny, nx] = case.dims;

    // §1-§4 in one pass
    let (mut c_n, mut b_n, mut d_n) = (0u64, 0u64, 0u64);
    let (mut p_n, mut inter) = (0u64, 0u64);
    let (mut sum_org, mut sum_bck) = (0.0f64, 0.0f64);
    let mut vols = [0u64; 3];
    let mut soft = 0.0f64;
    let mut line_dice_sum = 0.0f64;
    let mut line_slices = 0u64;
    for z in 0..nz {
        let (mut slice_sum, mut slice_lines) = (0.0f64, 0u64);
        for y in 0..ny {
            let (mut lp, mut lg, mut li) = (0u64, 0u64, 0u64);
            for x in 0..nx {
                let i = (z * ny + y) * nx + x;
                let says = [ann[0][i] == k, ann[1][i] == k, ann[2][i] == k];
                let votes = says.iter().filter(|s| **s).count();
                for a in 0..3 {
                    vols[a] += u64::from(says[a]);
                }
                let v = prob[i];
                soft += f64::from(v);
                let (cons, bck) = (votes == 3, votes == 0);
                let dis = !cons && !bck;
                c_n += u64::from(cons);
                b_n += u64::from(bck);
                d_n += u64::from(dis);
                if cons {
                    sum_org += f64::from(v);
                }
                if bck {
                    sum_bck += f64::from(v);
                }
                let pk = labels[i] == k && !dis;
                p_n += u64::from(pk);
                inter += u64::from(pk && cons);
                lp += u64::from(pk);
                lg += u64::from(cons);
                li += u64::from(pk && cons);
            }
            // MONAI reads rows as channels and drops channel 0
            if y >= 1 && lg > 0 {
                slice_sum += 2.0 * li as f64 / (lp + lg) as f64;
                slice_lines += 1;
            }
        }
        if slice_lines > 0 {
            line_dice_sum += slice_sum / slice_lines as f64;
            line_slices += 1;
        }
    }
    let dice = if c_n == 0 {
        f64::NAN
    } else {
        2.0 * inter as f64 / (p_n + c_n) as f64
    };
    let linewise = if line_slices == 0 {
        0.0
    } else {
        line_dice_sum / line_slices as f64
    };
    let m_org = if c_n > 0 {
        sum_org / c_n as f64
    } else {
        f64::NAN
    };
    let m_bck = if b_n > 0 {
        sum_bck / b_n as f64
    } else {
        f64::NAN
    };
    let confidence = ((1.0 - m_bck) + m_org) / 2.0;

    // §4 CRPS
    let v = vols.map(|c| c as f64);
    let mu = (v[0] + v[1] + v[2]) / 3.0;
    let sigma = (v.iter().map(|x| (x - mu) * (x - mu)).sum::<f64>() / 3.0).sqrt();
    let mm3 = |x: f64| x * voxel_volume;
    let v_mm3 = v.map(mm3);
    let crps = Crps {
        gt_volumes_vox: vols,
        mu_vox: Real(mu),
        sigma_vox: Real(sigma),
        pred_volume_vox: Real(soft),
        gt_volumes_mm3: v_mm3.map(Real),
        mu_mm3: Real(mm3(mu)),
        sigma_mm3: Real(mm3(sigma)),
        pred_volume_mm3: Real(mm3(soft)),
        crps_mm3: Real(crps::crps_gaussian(mm3(soft), mm3(mu), mm3(sigma))),
        crps_vox: Real(crps::crps_gaussian(soft, mu, sigma)),
        crps_empirical_mm3: Real(crps::crps_ensemble(mm3(soft), &v_mm3)),
        crps_curvas_numeric_vox: Real(crps::crps_curvas_numeric(soft, mu, sigma)),
        crps_statapp_numeric_vox: Real(crps::crps_statapp_numeric(soft, mu, sigma)),
    };

    // §6 NCC of the rater variance map with the binary entropy
    let variance = |i: usize| {
        let c = (0..3).filter(|a| ann[*a][i] == k).count() as f64 / 3.0;
        c * (1.0 - c)
    };
    let organ_ncc = ncc_by(n, variance, |i| binary_entropy(prob[i]));
    let hausdorff = timed(&format!("organ {k} hausdorff"), || {
        organ_hausdorff(case, labels, k, spacing)
    });
    let (auroc, compat_auroc, compat_aurc, compat_eaurc) =
        timed(&format!("organ {k} by probability"), || {
            by_probability(case, k)
        });
    let risk_coverage = timed(&format!("organ {k} by confidence"), || {
        by_decision_confidence(case, labels, k)
    });

    OrganResult {
        organ: Organ {
            name: ORGANS[ki].into(),
            consensus_voxels: c_n,
            consensus_background_voxels: b_n,
            dissensus_voxels: d_n,
            dice: Real(dice),
            dice_monai_linewise: Real(linewise),
            confidence: Real(confidence),
            confidence_mean_prob_consensus_organ: Real(m_org),
            confidence_mean_prob_consensus_background: Real(m_bck),
            crps,
            hausdorff,
            auroc,
            risk_coverage,
            ncc: Real(organ_ncc),
        },
        compat_auroc,
        compat_aurc,
        compat_eaurc,
    }
}

/// §5: per annotator, `L == k` against `A_a == k`, all transforms on the organ's joint box.
fn organ_hausdorff(case: &CaseArrays, labels: &[u8], k: u8, spacing: [f64; 3]) -> Hausdorff {
    let ann = &case.annotations;
    let pair = |r: HausdorffResult| HausdorffPair {
        hd_mm: Real(r.hd),
        hd_vox: Real(r.hd_vox),
        hd95_mm: Real(r.hd95),
        hd_surface_mm: Real(r.hd_surface),
    };
    let any_ann = |i: usize| ann.iter().any(|a| a[i] == k);
    let mut per = BTreeMap::new();
    if let Some(bx) = Boxed::new(case.dims, |i| labels[i] == k, any_ann) {
        // one box holds all four masks, so the prediction's transforms serve every annotator
        let pred = Surface::new(bx.a.clone(), bx.dims, spacing);
        for a in 0..3 {
            let m = bx.extract(case.dims, |i| ann[a][i] == k);
            let r = match (pred.any(), m.iter().any(|v| *v)) {
                (false, false) => HausdorffResult::NAN,
                (true, true) => pred.distances(&Surface::new(m, bx.dims, spacing)),
                _ => HausdorffResult::INF,
            };
            per.insert((a + 1).to_string(), pair(r));
        }
    } else {
        for a in 1..=3 {
            per.insert(a.to_string(), pair(HausdorffResult::NAN));
        }
    }
    let mean = |f: fn(&HausdorffPair) -> Real| mean_over(&per, f);
    Hausdorff {
        mean_hd_mm: mean(|p| p.hd_mm),
        mean_hd_vox: mean(|p| p.hd_vox),
        mean_hd95_mm: mean(|p| p.hd95_mm),
        mean_hd_surface_mm: mean(|p| p.hd_surface_mm),
        per_annotator: per,
    }
}

/// statapp's `Hausdorff_a`: `{A_a > 0}` against `{L > 0}`, full sets, voxel units. One box holds
/// all four masks so the prediction's transform is computed once.
fn compat_hausdorff(case: &CaseArrays, labels: &[u8]) -> [f64; 3] {
    let ann = &case.annotations;
    let any_ann = |i: usize| ann.iter().any(|a| a[i] > 0);
    let Some(bx) = Boxed::new(case.dims, |i| labels[i] > 0, any_ann) else {
        return [f64::NAN; 3];
    };
    let unit = [1.0; 3];
    let pred_edge = edges(&bx.a, bx.dims);
    if !pred_edge.iter().any(|v| *v) {
        return [f64::NAN; 3];
    }
    let to_pred = squared_edt(&pred_edge, bx.dims, unit);
    [0, 1, 2].map(|a| {
        let m = bx.extract(case.dims, |i| ann[a][i] > 0);
        let m_edge = edges(&m, bx.dims);
        if !m_edge.iter().any(|v| *v) {
            return f64::NAN;
        }
        // only voxel units are needed here, so the mm transforms of `Surface` are skipped
        let to_m = squared_edt(&m_edge, bx.dims, unit);
        directed_sq(&bx.a, &m, &to_m)
            .max(directed_sq(&m, &bx.a, &to_pred))
            .sqrt()
    })
}

/// Tie groups of sorted items with their risks.
fn risk_groups(items: &[Item], risk: impl Fn(Item) -> f64) -> impl Iterator<Item = Group> {
    groups(items).map(move |(_, s, e)| Group {
        count: e - s,
        risk_sum: items[s..e].iter().map(|it| risk(*it)).sum(),
        first_risk: risk(items[s]),
    })
}

/// Rankings by `p_k`: per-annotator AUROC, and statapp's AUROC/AURC/EAURC with its bugs
/// (annotator k's any-organ mask as ground truth, risk `|y - p|`, confidence `p`, no end point).
fn by_probability(case: &CaseArrays, k: u8) -> (Auroc, f64, f64, f64) {
    let ki = usize::from(k) - 1;
    let ann = &case.annotations;
    let prob = &case.probabilities[ki];
    let mut items: Vec<Item> = (0..prob.len())
        .map(|i| {
            let mut bits = 0u32;
            for a in 0..3 {
                bits |= u32::from(ann[a][i] == k) << a;
            }
            bits |= u32::from(ann[ki][i] > 0) << 3;
            item(prob[i], bits)
        })
        .collect();
    radix_sort(&mut items);
    let aurocs = ranking::aurocs(&items, 4);
    let per: BTreeMap<String, Real> = (0..3)
        .map(|a| ((a + 1).to_string(), Real(aurocs[a])))
        .collect();
    let mean = Real(nan_mean(&aurocs[..3]));
    let compat_auroc = aurocs[3];

    let risk = |it: Item| {
        let y = (payload_of(it) >> 3 & 1) as f32;
        f64::from((y - ranking::unsortable(ranking::key_of(it))).abs())
    };
    let total: f64 = items.iter().map(|it| risk(*it)).sum();
    let compat_aurc =
        ranking::aurc_values_loop(risk_groups(&items, risk), items.len(), total, false);
    // Geifman's optimum needs the risks in ascending order: `p` for y = 0 ascends with the sort,
    // `1 - p` for y = 1 ascends in reverse, so merging the two runs sorts them without a sort
    let n = items.len();
    let is_zero = |it: &&Item| payload_of(**it) >> 3 & 1 == 0;
    let mut a = items.iter().filter(is_zero).map(|it| risk(*it)).peekable();
    let mut b = items
        .iter()
        .rev()
        .filter(|it| !is_zero(it))
        .map(|it| risk(*it))
        .peekable();
    let merged = std::iter::from_fn(|| match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x <= y => a.next(),
        (Some(_), Some(_)) => b.next(),
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    });
    let opt = ranking::aurc_geifman(merged, n);
    let auroc = Auroc {
        per_annotator: per,
        mean,
    };
    (auroc, compat_auroc, compat_aurc, compat_aurc - opt)
}

/// §11: selective classification of the decision `L == k` with confidence in that decision.
fn by_decision_confidence(case: &CaseArrays, labels: &[u8], k: u8) -> RiskCoverage {
    let ki = usize::from(k) - 1;
    let ann = &case.annotations;
    let prob = &case.probabilities[ki];
    let n = prob.len();
    let mut items: Vec<Item> = (0..n)
        .map(|i| {
            let pos = labels[i] == k;
            let conf = if pos { prob[i] } else { 1.0 - prob[i] };
            let mut bits = u32::from(pos) << 3;
            for a in 0..3 {
                bits |= u32::from(ann[a][i] == k) << a;
            }
            item(conf, bits)
        })
        .collect();
    radix_sort(&mut items);
    // risk for annotator a: the decision (bit 3) disagrees with the annotator (bit a)
    let wrong = |it: Item, a: usize| {
        let b = payload_of(it);
        (b >> 3 & 1) != (b >> a & 1)
    };
    let mut errors = [0usize; 3];
    for it in &items {
        for (a, e) in errors.iter_mut().enumerate() {
            *e += usize::from(wrong(*it, a));
        }
    }
    // all three annotators' curves in one pass over the sorted voxels
    let mut tie: [TieAware; 3] = std::array::from_fn(|a| TieAware::new(n, errors[a] as f64));
    let mut values: [ValuesLoop; 3] = std::array::from_fn(|a| ValuesLoop::new(n, errors[a] as f64));
    for (_, s, e) in groups(&items) {
        let mut sums = [0usize; 3];
        for it in &items[s..e] {
            for (a, c) in sums.iter_mut().enumerate() {
                *c += usize::from(wrong(*it, a));
            }
        }
        for a in 0..3 {
            let g = Group {
                count: e - s,
                risk_sum: sums[a] as f64,
                first_risk: f64::from(u8::from(wrong(items[s], a))),
            };
            tie[a].push(g);
            values[a].push(g);
        }
    }
    let mut per = BTreeMap::new();
    for a in 0..3 {
        let (aurc, value) = (tie[a].finish(), values[a].finish(true));
        let optimal = ranking::aurc_optimal(n, errors[a]);
        let geifman = ranking::aurc_geifman_binary(n, errors[a]);
        per.insert(
            (a + 1).to_string(),
            RiskCoveragePair {
                aurc: Real(aurc),
                eaurc: Real(aurc - optimal),
                aurc_optimal: Real(optimal),
                aurc_values_loop: Real(value),
                eaurc_values_loop: Real(value - geifman),
                error_rate: Real(errors[a] as f64 / n as f64),
            },
        );
    }
    let mean = |f: fn(&RiskCoveragePair) -> Real| mean_over(&per, f);
    RiskCoverage {
        mean_aurc: mean(|p| p.aurc),
        mean_eaurc: mean(|p| p.eaurc),
        per_annotator: per,
    }
}
