//! The throughput harness end to end, briefly: every mode forwards on the same wires, and
//! the tern modes deliver at a low rate exactly what they were offered (`--smoke` checks
//! that itself and fails otherwise). The report files are checked here too.

use std::process::Command;

#[test]
fn harness_smoke_runs_every_mode_and_tern_loses_nothing_at_a_low_rate() {
    let bin = testbed::tern_binary().with_file_name("tern-bench");
    assert!(bin.exists(), "{} not built", bin.display());
    let out_dir = std::env::temp_dir().join(testbed::unique("bench-smoke-"));
    let out = Command::new(&bin)
        .args(["run", "--smoke", "--out"])
        .arg(&out_dir)
        .output()
        .expect("run tern-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tern-bench failed: {stderr}");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("bench.json")).expect("bench.json"),
    )
    .expect("valid JSON");
    let trials = json["trials"].as_array().expect("trials");
    let modes: Vec<&str> = trials.iter().filter_map(|t| t["mode"].as_str()).collect();
    assert_eq!(modes, ["kernel", "tern-afxdp", "tern-tap", "floor"]);
    for t in trials {
        let offered = t["offered"].as_u64().unwrap_or(0);
        assert!(offered >= 30_000, "2 s at 20 000/s were offered: {t}");
        assert!(
            t["dut_cpu_ns"].as_u64().unwrap_or(0) > 0,
            "DUT CPU was measured: {t}"
        );
    }
    for t in trials
        .iter()
        .filter(|t| t["mode"].as_str().is_some_and(|m| m.starts_with("tern")))
    {
        assert_eq!(t["delivered"], t["forwarded"], "{t}");
        assert_eq!(t["forwarded"], t["offered"], "{t}");
    }
    let svg = std::fs::read_to_string(out_dir.join("bench.svg")).expect("bench.svg");
    assert!(svg.starts_with("<svg") && svg.contains("tern-afxdp"));
    let _ = std::fs::remove_dir_all(&out_dir);
}
