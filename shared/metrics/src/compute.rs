//! Scores one prediction of one case against its three annotations (METRICS.md §1-§11, §18).

use crate::calibration::{AceBins, EceBins, softmax4};
use crate::crps;
use crate::curves::{Curves, RiskCoverageCurves};
use crate::hausdorff::{Boxed, HausdorffResult, Mask, Units, both_ways, combine};
use crate::ranking::{self, COVERAGE_STEPS, Group, SortedOrgan, TieAware, ValuesLoop, flag};
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
pub fn compute(mut case: CaseArrays, meta: CaseMeta) -> CaseMetrics {
    let n = case.dims.iter().product::<usize>();
    let p = &case.probabilities;
    let labels: Vec<u8> = match case.prediction.take() {
        Some(l) => l,
        None => {
            let mut l = vec![0u8; n];
            l.par_chunks_mut(1 << 16).enumerate().for_each(|(c, out)| {
                for (j, v) in out.iter_mut().enumerate() {
                    let i = (c << 16) + j;
                    *v = argmax4([p0(p, i), p[0][i], p[1][i], p[2][i]]);
                }
            });
            l
        }
    };
    let spacing = meta.spacing_zyx_mm;
    let voxel_volume = spacing[0] * spacing[1] * spacing[2];

    // one thing at a time, each parallel inside, each organ's probabilities freed once it is
    // scored: an organ's sorted voxels and flags take about 10 bytes per ROI voxel, the
    // Hausdorff transforms 8 per box voxel, which side by side would double a full-size CT's peak
    let global = timed("voxel pass", || voxel_pass(&case, &labels));
    let mut organs = Vec::with_capacity(3);
    for k in 1..=3u8 {
        organs.push(timed(&format!("organ {k}"), || {
            organ_metrics(&case, &labels, k, spacing, voxel_volume)
        }));
        drop(std::mem::take(&mut case.probabilities[usize::from(k) - 1]));
    }
    let compat_hd = timed("compat hausdorff", || compat_hausdorff(&case, &labels));

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
    let curves = Curves {
        calibration: global.calibration,
        risk_coverage: RiskCoverageCurves {
            coverage: (0..=COVERAGE_STEPS)
                .map(|j| j as f64 / COVERAGE_STEPS as f64)
                .collect(),
            organs: organs
                .iter()
                .map(|o| {
                    let grid = &o.organ.risk_coverage.grid;
                    let real = grid.iter().map(|g| g.iter().map(|r| Real(*r)).collect());
                    (o.organ.name.clone(), real.collect())
                })
                .collect(),
        },
    };
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
        curves,
    }
}

/// Per-voxel statistics that do not depend on the organ.
struct GlobalStats {
    negative_p0: u64,
    softmax_fallback: bool,
    ece: [f64; 3],
    calibration: crate::curves::Calibration,
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
    let (negative_p0, outside) = chunked(n, |range| {
        range.fold((0u64, false), |(neg, out), i| {
            let q = [p0(p, i), p[0][i], p[1][i], p[2][i]];
            (
                neg + u64::from(q[0] < 0.0),
                out || q.iter().any(|v| !(0.0..=1.0).contains(v)),
            )
        })
    })
    .into_iter()
    .fold((0, false), |a, b| (a.0 + b.0, a.1 || b.1));
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
        calibration: acc.ece.to_curve(),
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

/// Means and co-moments of a chunk of value pairs (Chan et al.'s pairwise update).
#[derive(Debug, Clone, Copy, Default)]
struct Moments {
    n: f64,
    mean_g: f64,
    mean_u: f64,
    m2_g: f64,
    m2_u: f64,
    c_gu: f64,
}

impl Moments {
    /// Two passes over values already in cache.
    fn of(g: &[f64], u: &[f64]) -> Self {
        let n = g.len() as f64;
        let mean_g = g.iter().sum::<f64>() / n;
        let mean_u = u.iter().sum::<f64>() / n;
        let (mut m2_g, mut m2_u, mut c_gu) = (0.0, 0.0, 0.0);
        for (a, b) in g.iter().zip(u) {
            let (x, y) = (a - mean_g, b - mean_u);
            m2_g += x * x;
            m2_u += y * y;
            c_gu += x * y;
        }
        Self {
            n,
            mean_g,
            mean_u,
            m2_g,
            m2_u,
            c_gu,
        }
    }

    fn merge(self, o: Self) -> Self {
        if self.n == 0.0 {
            return o;
        }
        let n = self.n + o.n;
        let (dg, du) = (o.mean_g - self.mean_g, o.mean_u - self.mean_u);
        let w = self.n * o.n / n;
        Self {
            n,
            mean_g: self.mean_g + dg * (o.n / n),
            mean_u: self.mean_u + du * (o.n / n),
            m2_g: self.m2_g + o.m2_g + dg * dg * w,
            m2_u: self.m2_u + o.m2_u + du * du * w,
            c_gu: self.c_gu + o.c_gu + dg * du * w,
        }
    }
}

/// [`ncc`] over values produced on the fly, each computed once: exact two-pass moments per
/// cache-sized chunk, merged in chunk order (as stable as the global two-pass formula).
fn ncc_by(n: usize, g: impl Fn(usize) -> f64 + Sync, u: impl Fn(usize) -> f64 + Sync) -> f64 {
    if n < 2 {
        return f64::NAN;
    }
    let m = chunked(n, |r| {
        let gv: Vec<f64> = r.clone().map(&g).collect();
        let uv: Vec<f64> = r.map(&u).collect();
        Moments::of(&gv, &uv)
    })
    .into_iter()
    .fold(Moments::default(), Moments::merge);
    if m.m2_g == 0.0 || m.m2_u == 0.0 {
        return f64::NAN;
    }
    let nf = n as f64;
    let (sd_g, sd_u) = ((m.m2_g / (nf - 1.0)).sqrt(), (m.m2_u / (nf - 1.0)).sqrt());
    m.c_gu / (nf * sd_g * sd_u)
}

/// Binary entropy in nats of a probability clipped to [0, 1].
fn binary_entropy(p: f32) -> f64 {
    let p = f64::from(p).clamp(0.0, 1.0);
    let h = |x: f64| if x > 0.0 { -x * x.ln() } else { 0.0 };
    h(p) + h(1.0 - p)
}

/// Sums of one z slice in the organ pass.
#[derive(Debug, Clone, Copy, Default)]
struct SliceAcc {
    c_n: u64,
    b_n: u64,
    p_n: u64,
    inter: u64,
    vols: [u64; 3],
    errors: [u64; 3],
    soft: f64,
    total_risk: f64,
    sum_org: f64,
    sum_bck: f64,
    /// Mean line Dice of the slice, if it has a scored line.
    line_dice: Option<f64>,
    /// Per threshold of [`tdice_thresholds`]: voxels with `p_k > t`, with the annotators' mean
    /// `> t`, and with both.
    tdice: [[u64; 3]; 6],
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
    let [_, ny, nx] = case.dims;

    // §1-§4 in one pass, one task per z slice, slices summed in order
    let plane = ny * nx;
    let mut flags = vec![0u8; n];
    let slices: Vec<SliceAcc> = flags
        .par_chunks_mut(plane.max(1))
        .enumerate()
        .map(|(z, slice_flags)| {
            let mut acc = SliceAcc::default();
            let (mut line_sum, mut lines) = (0.0f64, 0u64);
            for (y, row_flags) in slice_flags.chunks_mut(nx).enumerate() {
                let r = z * plane + y * nx..z * plane + (y + 1) * nx;
                let (a0, a1, a2) = (&ann[0][r.clone()], &ann[1][r.clone()], &ann[2][r.clone()]);
                let (pr, lb, own) = (&prob[r.clone()], &labels[r.clone()], &ann[ki][r]);
                let (mut lp, mut lg, mut li) = (0u64, 0u64, 0u64);
                for x in 0..nx {
                    let says = [a0[x] == k, a1[x] == k, a2[x] == k];
                    let votes = says.iter().filter(|s| **s).count();
                    let v = pr[x];
                    let (cons, bck) = (votes == 3, votes == 0);
                    let decided = lb[x] == k;
                    let mut f = u8::from(decided) << 4;
                    for a in 0..3 {
                        acc.vols[a] += u64::from(says[a]);
                        acc.errors[a] += u64::from(says[a] != decided);
                        f |= u8::from(says[a]) << a;
                    }
                    if own[x] > 0 {
                        f |= flag::ANY_ORGAN;
                    }
                    row_flags[x] = f;
                    acc.soft += f64::from(v);
                    acc.total_risk += compat_risks(v)[usize::from(own[x] > 0)];
                    acc.c_n += u64::from(cons);
                    acc.b_n += u64::from(bck);
                    acc.sum_org += if cons { f64::from(v) } else { 0.0 };
                    acc.sum_bck += if bck { f64::from(v) } else { 0.0 };
                    let pk = decided && (cons || bck);
                    acc.p_n += u64::from(pk);
                    let mean_vote = votes as f64 / 3.0;
                    for (t, c) in tdice_thresholds().iter().zip(&mut acc.tdice) {
                        let (p, g) = (f64::from(v) > *t, mean_vote > *t);
                        c[0] += u64::from(p);
                        c[1] += u64::from(g);
                        c[2] += u64::from(p && g);
                    }
                    acc.inter += u64::from(pk && cons);
                    lp += u64::from(pk);
                    lg += u64::from(cons);
                    li += u64::from(pk && cons);
                }
                // MONAI reads rows as channels and drops channel 0
                if y >= 1 && lg > 0 {
                    line_sum += 2.0 * li as f64 / (lp + lg) as f64;
                    lines += 1;
                }
            }
            acc.line_dice = (lines > 0).then(|| line_sum / lines as f64);
            acc
        })
        .collect();
    let mut t = SliceAcc::default();
    let (mut line_dice_sum, mut line_slices) = (0.0f64, 0u64);
    for s in &slices {
        t.c_n += s.c_n;
        t.b_n += s.b_n;
        t.p_n += s.p_n;
        t.inter += s.inter;
        for a in 0..3 {
            t.vols[a] += s.vols[a];
            t.errors[a] += s.errors[a];
        }
        for (tc, sc) in t.tdice.iter_mut().zip(&s.tdice) {
            for i in 0..3 {
                tc[i] += sc[i];
            }
        }
        t.soft += s.soft;
        t.total_risk += s.total_risk;
        t.sum_org += s.sum_org;
        t.sum_bck += s.sum_bck;
        if let Some(d) = s.line_dice {
            line_dice_sum += d;
            line_slices += 1;
        }
    }
    let (c_n, b_n, p_n, inter, vols) = (t.c_n, t.b_n, t.p_n, t.inter, t.vols);
    let d_n = n as u64 - c_n - b_n;
    let (soft, total_risk, sum_org, sum_bck) = (t.soft, t.total_risk, t.sum_org, t.sum_bck);
    let errors = t.errors.map(|e| e as usize);
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
    let thresholded_dice = thresholded_dice(&t.tdice);

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
    // the transforms first, then the rankings beside the NCC: the transforms (8 bytes per box
    // voxel, the box as large as the ROI for a poor prediction) and the sorted voxels (10 per
    // ROI voxel) side by side would take a full-size CT past 3 GB
    let hausdorff = timed(&format!("organ {k} hausdorff"), || {
        organ_hausdorff(case, labels, k, spacing)
    });
    let (((auroc, compat_auroc, compat_aurc, compat_eaurc), risk_coverage), organ_ncc) =
        rayon::join(
            || {
                let sorted = timed(&format!("organ {k} sort"), || {
                    SortedOrgan::new(prob, &flags)
                });
                rayon::join(
                    || {
                        timed(&format!("organ {k} by probability"), || {
                            by_probability(&sorted, total_risk)
                        })
                    },
                    || {
                        timed(&format!("organ {k} by confidence"), || {
                            by_decision_confidence(&sorted, errors)
                        })
                    },
                )
            },
            || ncc_by(n, variance, |i| binary_entropy(prob[i])),
        );

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
            thresholded_dice: Real(thresholded_dice),
        },
        compat_auroc,
        compat_aurc,
        compat_eaurc,
    }
}

/// CURVAS-PDACVI's thresholds, numpy's `linspace(0.1, 0.8, 6)` to the bit: `start + i * step`,
/// the last one `stop` itself.
fn tdice_thresholds() -> [f64; 6] {
    let step = (0.8 - 0.1) / 5.0;
    std::array::from_fn(|i| if i == 5 { 0.8 } else { i as f64 * step + 0.1 })
}

/// CURVAS-PDACVI's `merged_dice_score` (soft Dice part): per threshold `2 I / (P + G + 1e-6)`,
/// 1 where both masks are empty, averaged over the thresholds.
fn thresholded_dice(counts: &[[u64; 3]; 6]) -> f64 {
    let per: Vec<f64> = counts
        .iter()
        .map(|[p, g, i]| {
            if *p == 0 && *g == 0 {
                1.0
            } else {
                2.0 * *i as f64 / (*p as f64 + *g as f64 + 1e-6)
            }
        })
        .collect();
    per.iter().sum::<f64>() / per.len() as f64
}

/// §5: per annotator, `L == k` against `A_a == k`, all transforms on the organ's joint box; the
/// prediction's transforms serve all three annotators.
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
        let masks =
            [0, 1, 2].map(|a| Mask::new(bx.extract(case.dims, |i| ann[a][i] == k), bx.dims));
        // the box's own masks are not needed beyond the prediction's
        let pred = Mask::new(bx.a, bx.dims);
        drop(bx.b);
        let predicted = pred.any();
        let ways = if predicted {
            both_ways(&pred, &masks, bx.dims, spacing, Units::All, combine)
        } else {
            [None, None, None]
        };
        for (a, way) in ways.into_iter().enumerate() {
            let r = match (predicted, way) {
                (true, Some(r)) => r,
                (false, None) if !masks[a].any() => HausdorffResult::NAN,
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

/// statapp's `Hausdorff_a`: `{A_a > 0}` against `{L > 0}`, full sets, voxel units, on the box of
/// all four masks; null where either set is empty.
fn compat_hausdorff(case: &CaseArrays, labels: &[u8]) -> [f64; 3] {
    let ann = &case.annotations;
    let any_ann = |i: usize| ann.iter().any(|a| a[i] > 0);
    let Some(bx) = Boxed::new(case.dims, |i| labels[i] > 0, any_ann) else {
        return [f64::NAN; 3];
    };
    let masks = [0, 1, 2].map(|a| Mask::new(bx.extract(case.dims, |i| ann[a][i] > 0), bx.dims));
    let pred = Mask::new(bx.a, bx.dims);
    drop(bx.b);
    if !pred.any() {
        return [f64::NAN; 3];
    }
    let ways = both_ways(
        &pred,
        &masks,
        bx.dims,
        [1.0; 3],
        Units::Voxels,
        |from, to| from.full_sq_vox.max(to.full_sq_vox).sqrt(),
    );
    ways.map(|way| way.unwrap_or(f64::NAN))
}

/// Rankings by `p_k`: per-annotator AUROC, and statapp's AUROC/AURC/EAURC with its bugs
/// (annotator k's any-organ mask as ground truth, risk `|y - p|`, confidence `p`, no end point).
fn by_probability(sorted: &SortedOrgan, total_risk: f64) -> (Auroc, f64, f64, f64) {
    let n = sorted.len();
    let truth = |f: u8| f & flag::ANY_ORGAN != 0;
    let mut aurocs = SortedOrgan::auroc_state::<4>();
    let mut values = ValuesLoop::new(n, total_risk);
    sorted.for_each_group(|p, flags| {
        aurocs.push(flags);
        let ones = flags.iter().filter(|f| truth(**f)).count();
        let r = compat_risks(p);
        values.push(Group {
            count: flags.len(),
            risk_sum: (flags.len() - ones) as f64 * r[0] + ones as f64 * r[1],
            first_risk: r[usize::from(truth(flags[0]))],
        });
    });
    let aurocs = aurocs.finish();
    let compat_aurc = values.finish(false);
    // Geifman's optimum needs the risks in ascending order: `p` for y = 0 ascends with the sort,
    // `1 - p` for y = 1 ascends in reverse, so merging the two runs sorts them without a sort
    let risk = |i: usize| compat_risks(sorted.prob(i))[usize::from(truth(sorted.flags(i)))];
    let merged = sorted.merge_ends(|f| !truth(f), risk).map(|(_, r)| r);
    let opt = ranking::aurc_geifman(merged, n);
    let per: BTreeMap<String, Real> = (0..3)
        .map(|a| ((a + 1).to_string(), Real(aurocs[a])))
        .collect();
    let auroc = Auroc {
        per_annotator: per,
        mean: Real(nan_mean(&aurocs[..3])),
    };
    (auroc, aurocs[3], compat_aurc, compat_aurc - opt)
}

/// statapp's risk `|y - p|` in f32 for `y = 0` and `y = 1`.
fn compat_risks(p: f32) -> [f64; 2] {
    [f64::from(p.abs()), f64::from((1.0 - p).abs())]
}

/// §11: selective classification of the decision `L == k` with confidence in that decision.
/// `errors[a]` counts the voxels where annotator a disagrees with the decision.
fn by_decision_confidence(sorted: &SortedOrgan, errors: [usize; 3]) -> RiskCoverage {
    let n = sorted.len();
    // all three annotators' curves in one pass over the confidence order
    let mut tie: [TieAware; 3] = std::array::from_fn(|a| TieAware::new(n, errors[a] as f64));
    let mut values: [ValuesLoop; 3] = std::array::from_fn(|a| ValuesLoop::new(n, errors[a] as f64));
    sorted.decision_groups(|g| {
        for a in 0..3 {
            let group = Group {
                count: g.count,
                risk_sum: g.errors[a] as f64,
                first_risk: f64::from(u8::from(g.first_wrong[a])),
            };
            tie[a].push(group);
            values[a].push(group);
        }
    });
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
        grid: tie.iter().map(|t| t.risk_grid().to_vec()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook global two-pass formula.
    fn two_pass(g: &[f64], u: &[f64]) -> f64 {
        let n = g.len() as f64;
        let (mg, mu) = (g.iter().sum::<f64>() / n, u.iter().sum::<f64>() / n);
        let sgg: f64 = g.iter().map(|x| (x - mg) * (x - mg)).sum();
        let suu: f64 = u.iter().map(|y| (y - mu) * (y - mu)).sum();
        let sgu: f64 = g.iter().zip(u).map(|(x, y)| (x - mg) * (y - mu)).sum();
        sgu / (n * (sgg / (n - 1.0)).sqrt() * (suu / (n - 1.0)).sqrt())
    }

    #[test]
    fn chunked_ncc_matches_the_two_pass_formula_across_chunks() {
        // 3.5 chunks, values with an offset, like an entropy map over a mostly flat volume
        let n = 7 * (1 << 15) + 11;
        let mut state = 99u64;
        let mut rand = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let g: Vec<f64> = (0..n).map(|_| 5.0 + rand()).collect();
        let u: Vec<f64> = g.iter().map(|x| 0.3 * x + rand()).collect();
        let (a, b) = (ncc(&g, &u), two_pass(&g, &u));
        assert!((a - b).abs() <= 1e-12 * b.abs(), "{a} vs {b}");
        // a constant side is undefined
        assert!(ncc(&vec![0.0; n], &u).is_nan());
    }
}
