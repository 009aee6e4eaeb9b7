//! `advise`: Pareto frontier on hand-made points, the smallest n from the fitted law against a
//! direct solve of the same law, budgets against the analytic FLOPs, extrapolation flags, the
//! cost-table route against the analytic route, and bad input.

use std::path::Path;

use tokenscale_cost::advise::input::{parse_bench_jsonl, parse_cost_csv};
use tokenscale_cost::advise::{
    advise, pareto, select, to_csv, to_json, to_markdown, AdviseOptions, CostModel, Target,
    TargetAdvice,
};
use tokenscale_cost::{read_config, table, to_csv as cost_csv, Workload};
use tokenscale_law::data::{parse_scores, SeriesData};
use tokenscale_law::fit::{fit_series, FitOptions, Space};
use tokenscale_law::{Direction, Law};

fn llava7b() -> CostModel {
    let arch = read_config(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llava-1.5-7b-hf/config.json"),
    )
    .unwrap();
    CostModel::from_config(arch, Workload::default()).unwrap()
}

/// S = c·n^0.1 with a deterministic wobble (so the fit is not exact), at n = 1, 2, 4, …, 64.
fn series(name: &str, c: f64) -> SeriesData {
    let points = (0..7).map(|k| {
        let n = (1u64 << k) as f64;
        (n, c * n.powf(0.1) * (1.0 + 0.004 * if k % 2 == 0 { 1.0 } else { -1.0 }))
    });
    SeriesData { name: name.into(), group: None, benchmark: name.into(), points: points.collect() }
}

fn opts(law: Law, target: Option<Target>) -> AdviseOptions {
    AdviseOptions { law, space: Space::Score, target, lower_is_better: vec![] }
}

fn one(s: &SeriesData, cost: &CostModel, law: Law, target: Target) -> TargetAdvice {
    advise(&[s], cost, None, &opts(law, Some(target))).unwrap().benchmarks.remove(0).target.unwrap()
}

fn fitted(s: &SeriesData, law: Law) -> Vec<f64> {
    let f = fit_series(
        &s.name,
        &s.points,
        &[],
        law,
        &FitOptions { bootstrap: 0, ..Default::default() },
    )
    .unwrap();
    law.param_names().iter().map(|k| f.params[*k]).collect()
}

#[test]
fn pareto_drops_dominated_points() {
    let pts =
        [(1.0, 10.0), (2.0, 9.0), (3.0, 12.0), (3.0, 11.0), (5.0, 12.0), (6.0, 15.0), (6.0, 15.0)];
    // (2, 9) costs more than (1, 10) and scores less; (3, 11) ties on cost, scores less;
    // (5, 12) scores the same as (3, 12) at a higher cost; the two (6, 15) tie and both stay.
    assert_eq!(
        pareto(&pts, Direction::HigherIsBetter),
        vec![true, false, true, false, false, true, true]
    );
    // lower is better: only the cheapest point of the lowest scores survive
    assert_eq!(
        pareto(&pts, Direction::LowerIsBetter),
        vec![true, true, false, false, false, false, false]
    );

    // through advise: a non-monotone measured series priced by the analytic model
    let s = SeriesData {
        name: "b".into(),
        group: None,
        benchmark: "b".into(),
        points: vec![
            (1.0, 30.0),
            (8.0, 29.0),
            (16.0, 31.0),
            (64.0, 31.0),
            (144.0, 35.0),
            (576.0, 34.0),
        ],
    };
    let a = advise(&[&s], &llava7b(), None, &opts(Law::Power, None)).unwrap();
    let on: Vec<u64> =
        a.benchmarks[0].points.iter().filter(|p| p.pareto_flops).map(|p| p.n).collect();
    assert_eq!(on, vec![1, 16, 144]);
    assert!(a.benchmarks[0].points.iter().all(|p| p.pareto_latency.is_none()));
}

#[test]
fn smallest_n_equals_a_direct_solve_of_the_law() {
    let s = series("b", 30.0);
    let cost = llava7b();
    // power law S = c·n^(−α): n* = (goal/c)^(−1/α); the answer is the first integer ≥ n*
    let p = fitted(&s, Law::Power);
    for goal in [31.5, 33.3, 36.0, 48.0] {
        let direct = (goal / p[0]).powf(-1.0 / p[1]).ceil() as u64;
        let t = one(&s, &cost, Law::Power, Target::MinScore(goal));
        let c = t.by_law.as_ref().unwrap();
        assert_eq!(c.n, direct, "goal {goal}: {}", t.summary);
        assert!(c.score >= goal && Law::Power.eval(&p, (c.n - 1) as f64) < goal);
        assert_eq!(c.extrapolated, c.n > 64, "{}", t.summary);
        assert_eq!(goal == 48.0, c.n > 64, "goal 48 needs n ≈ 1.6^10 ≈ 110");
        assert_eq!(t.summary.contains("EXTRAPOLATED"), c.n > 64);
        assert_eq!(c.flops, Some(cost.flops(c.n).unwrap()));
    }
    // log-linear S = a + b·ln n: n* = exp((goal − a)/b)
    let p = fitted(&s, Law::Loglinear);
    let t = one(&s, &cost, Law::Loglinear, Target::MinScore(34.0));
    assert_eq!(t.by_law.unwrap().n, ((34.0 - p[0]) / p[1]).exp().ceil() as u64);
    // the measured answer: the smallest measured n at or above the goal
    let t = one(&s, &cost, Law::Power, Target::MinScore(33.0));
    let measured = s.points.iter().find(|p| p.1 >= 33.0).unwrap().0 as u64;
    assert_eq!(t.by_measurement.unwrap().n, measured);
    // beyond the model's n (LLaVA: 576): no n, said so
    let t = one(&s, &cost, Law::Power, Target::MinScore(60.0));
    assert!(t.by_law.is_none() && t.by_measurement.is_none());
    assert!(t.summary.starts_with("no n in 1 … 576 reaches 60"), "{}", t.summary);
}

#[test]
fn budgets_pick_the_best_affordable_n() {
    let s = series("b", 30.0);
    let cost = llava7b();
    let at = |n| cost.flops(n).unwrap();
    // the law grows with n, so the best n within a budget is the largest affordable one
    assert_eq!(one(&s, &cost, Law::Power, Target::MaxFlops(at(100))).by_law.unwrap().n, 100);
    assert_eq!(one(&s, &cost, Law::Power, Target::MaxFlops(at(100) - 1.0)).by_law.unwrap().n, 99);
    let t = one(&s, &cost, Law::Power, Target::MaxFlops(at(300)));
    assert!(t.by_law.as_ref().unwrap().extrapolated && t.summary.contains("EXTRAPOLATED"));
    assert_eq!(t.by_measurement.unwrap().n, 64);
    let t = one(&s, &cost, Law::Power, Target::MaxFlops(at(1) - 1.0));
    assert!(t.by_law.is_none() && t.summary.contains("n = 1 already costs"), "{}", t.summary);
    // a law that falls with n: the cheapest n is best
    let mut falling = s.clone();
    falling.points.iter_mut().for_each(|p| p.1 = 100.0 - p.1);
    assert_eq!(one(&falling, &cost, Law::Power, Target::MaxFlops(at(300))).by_law.unwrap().n, 1);

    // latency: measured at 1, 16, 64 (seconds 1, 2, 4); within 3 s the best n is 40 (interpolated)
    let lat = parse_bench_jsonl(
        "{\"n\":1,\"vision_s\":0.5,\"ttft_s\":0.5}\n{\"n\":16,\"vision_s\":0.5,\"ttft_s\":1.5}\n{\"n\":64,\"vision_s\":0.5,\"ttft_s\":3.5}\n",
        "bench.jsonl",
    )
    .unwrap();
    let a =
        advise(&[&s], &cost, Some(&lat), &opts(Law::Power, Some(Target::MaxLatency(3.0)))).unwrap();
    let t = a.benchmarks[0].target.as_ref().unwrap();
    assert_eq!(t.searched, Some((1, 64)));
    assert_eq!(t.by_law.as_ref().unwrap().n, 40);
    assert_eq!(t.by_law.as_ref().unwrap().latency_s, Some(3.0));
    // measured n between bench's n get interpolated latencies: 32 → 2.667 s is the best within 3 s
    assert_eq!(t.by_measurement.as_ref().unwrap().n, 32);
    assert!(a.benchmarks[0].points.iter().all(|p| p.pareto_latency == Some(true)));
    let a =
        advise(&[&s], &cost, Some(&lat), &opts(Law::Power, Some(Target::MaxLatency(0.5)))).unwrap();
    assert!(a.benchmarks[0].target.as_ref().unwrap().summary.contains("fastest: 1.000 s"));
    assert!(advise(&[&s], &cost, None, &opts(Law::Power, Some(Target::MaxLatency(3.0))))
        .unwrap_err()
        .to_string()
        .contains("maximum-latency target needs"));
}

#[test]
fn cost_table_route_equals_the_analytic_route() {
    let analytic = llava7b();
    let CostModel::Config { arch, workload, max_n } = &analytic else { panic!() };
    assert_eq!(*max_n, 576);
    let csv = cost_csv(&table(arch, &[1, 64, 144, 576], workload).unwrap());
    let (t, latency) = parse_cost_csv(&csv, "cost.csv").unwrap();
    assert!(latency.is_none() && t.interpolation().contains("exact at all 4"));
    let tabled = CostModel::Table(t);
    for n in [1, 2, 63, 100, 300, 575, 576] {
        assert_eq!(tabled.flops(n), analytic.flops(n), "n = {n}");
    }
    assert!(tabled.flops(577).unwrap_err().contains("outside"));
    let s = series("b", 30.0);
    for target in [Target::MinScore(33.3), Target::MaxFlops(analytic.flops(200).unwrap())] {
        let a = one(&s, &analytic, Law::Paper, target);
        let b = one(&s, &tabled, Law::Paper, target);
        assert_eq!(a.summary, b.summary);
    }
    // a latency column comes along
    let with_latency =
        "n,component,flops,latency_s\n1,total,100,0.5\n2,total,200,0.7\n2,llm_prefill,50,9\n";
    let (t, latency) = parse_cost_csv(with_latency, "c.csv").unwrap();
    assert_eq!(t.points, vec![(1, 100), (2, 200)]);
    assert_eq!(latency.unwrap().points, vec![(1, 0.5), (2, 0.7)]);
}

#[test]
fn every_format_carries_the_answer() {
    let s = series("Overall@MMStar", 30.0);
    let a =
        advise(&[&s], &llava7b(), None, &opts(Law::Paper, Some(Target::MinScore(34.0)))).unwrap();
    let md = to_markdown(&a);
    assert!(
        md.contains("## Overall@MMStar")
            && md.contains("| 64 |")
            && md.contains("Target score ≥ 34"),
        "{md}"
    );
    let json: serde_json::Value = serde_json::from_str(&to_json(&a)).unwrap();
    let n = json["benchmarks"][0]["target"]["by_law"]["n"].as_u64().unwrap();
    assert_eq!(
        json["benchmarks"][0]["target"]["target"],
        serde_json::json!({"kind": "min_score", "value": 34.0})
    );
    let csv = to_csv(&a);
    assert_eq!(csv.lines().count(), 1 + 7 + 2);
    assert!(
        csv.lines().any(|l| l.starts_with(&format!("Overall@MMStar,Overall@MMStar,law,{n},"))),
        "{csv}"
    );
}

#[test]
fn bad_input_is_named() {
    let e = parse_cost_csv("n,component,macs\n1,total,5\n", "cost.csv").unwrap_err().to_string();
    assert!(
        e.contains("cost.csv: no `flops` column") && e.contains("header: n, component, macs"),
        "{e}"
    );
    let e = parse_cost_csv("n,component,flops\n1,total,x\n", "cost.csv").unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("`flops`"), "{e}");
    let e =
        parse_cost_csv("n,component,flops\n1,projector,5\n", "cost.csv").unwrap_err().to_string();
    assert!(e.contains("no total rows"), "{e}");

    let scores = parse_scores("figure,panel,benchmark,n_l,score\nf,1,Overall@MME,1,900\nf,1,Overall@MME,8,1000\nf,2,Overall@POPE,1,80\n".as_bytes()).unwrap();
    assert_eq!(select(&scores, &["MME".into()], "s.csv").unwrap().len(), 1);
    assert_eq!(select(&scores, &[], "s.csv").unwrap().len(), 2);
    let e = select(&scores, &["MMStar".into()], "s.csv").unwrap_err().to_string();
    assert!(e.contains("`MMStar`") && e.contains("benchmarks: Overall@MME, Overall@POPE"), "{e}");

    let half = SeriesData {
        name: "h".into(),
        group: None,
        benchmark: "h".into(),
        points: vec![(1.0, 1.0), (2.5, 2.0)],
    };
    let e = advise(&[&half], &llava7b(), None, &opts(Law::Power, None)).unwrap_err().to_string();
    assert!(e.contains("series `h`: n = 2.5 is not a whole number"), "{e}");
    // too few points for the law: advice from the measurements alone, with a note
    let two = SeriesData {
        name: "t".into(),
        group: None,
        benchmark: "t".into(),
        points: vec![(1.0, 1.0), (4.0, 2.0)],
    };
    let a =
        advise(&[&two], &llava7b(), None, &opts(Law::Paper, Some(Target::MinScore(1.5)))).unwrap();
    let b = &a.benchmarks[0];
    assert!(b.law.is_none() && b.notes.iter().any(|n| n.contains("only the measured points")));
    assert_eq!(b.target.as_ref().unwrap().by_measurement.as_ref().unwrap().n, 4);
}
