//! Prints the phantom statistics of a few cases: `cargo run --release -p statapp-synth --example stats -- small 4`
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let size: statapp_synth::Size = args
        .get(1)
        .map_or("small", |s| s.as_str())
        .parse()
        .unwrap_or(statapp_synth::Size::Small);
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(4);
    for i in 0..n {
        let t = std::time::Instant::now();
        let p = statapp_synth::generate(42, i, size);
        let s = statapp_synth::CaseStats::of(&p);
        println!(
            "{} {:?} gen {:.2}s image mean {:.0}",
            s.case_id,
            s.spacing_zyx_mm,
            t.elapsed().as_secs_f64(),
            s.hu_mean_image
        );
        for o in &s.organs {
            println!(
                "  {:9} HU {:6.1} vol {:?} dice {:.3?}",
                o.name,
                o.hu_mean,
                o.volume_ml.map(|v| (v * 10.0).round() / 10.0),
                o.dice_pairs
            );
        }
    }
}
