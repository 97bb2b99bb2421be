//! `cargo xtask bench datapath --only profile`: where the per-packet cycles go, from the
//! CPU's own cycle counter sampled by `perf` (no BPF statistics: the kernel's per-run
//! timing, which `cost` reads, adds its own two clock reads to every run and so weighs
//! most on the cheapest program). The flow programs and both references run at the same
//! hooks on the same packets, so their shares of the samples are their per-run costs'
//! ratios; their share of the busy cycles (idle left out) says what they cost the stream,
//! and the cycles per bit carried with and without the observer, by symbol, where the
//! rest of a throughput loss goes.

use anyhow::{Context, Result, bail};

use super::datapath::{Stream, Traffic, median};

/// The programs whose samples are counted, by the name the JIT gives their symbol.
const PROGRAMS: [&str; 4] = ["flow_ingress", "flow_egress", "parse_only_tc", "empty_tc"];

/// One sampled run: samples by program, all samples, samples by symbol, and the stream's
/// received bits per second.
struct Sampled {
    programs: [u64; 4],
    all: u64,
    symbols: Vec<(String, u64)>,
    bits_per_second: f64,
}

/// Samples every CPU over one run of `traffic`.
fn sample(stream: &Stream, seconds: u32, traffic: Traffic) -> Result<Sampled> {
    let data = stream.dir.join("perf.data");
    let mut perf = std::process::Command::new("perf")
        .args(["record", "-a", "-e", "cycles", "-F", "9999", "-q", "-o"])
        .arg(&data)
        .args(["--", "sleep", &seconds.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting perf record (the Debian package linux-perf)")?;
    let bits_per_second = stream.iperf(seconds.saturating_sub(1).max(1), traffic)?;
    let status = perf.wait()?;
    if !status.success() {
        bail!("perf record failed ({status})");
    }
    let report = std::process::Command::new("perf")
        .args([
            "report",
            "--stdio",
            "-F",
            "sample,comm,sym",
            "--sort",
            "comm,sym",
            "-i",
        ])
        .arg(&data)
        .output()
        .context("perf report")?;
    let text = String::from_utf8_lossy(&report.stdout);
    let mut by_program = [0u64; 4];
    let mut all = 0u64;
    let mut symbols = Vec::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut words = line.split_whitespace();
        let (Some(samples), Some(comm)) = (
            words.next().and_then(|w| w.parse::<u64>().ok()),
            words.next(),
        ) else {
            continue;
        };
        // An idle CPU is not work: the halt loop's samples are left out.
        if comm == "swapper" {
            continue;
        }
        all += samples;
        let symbol = line.rsplit(' ').next().unwrap_or_default();
        match symbols
            .iter_mut()
            .find(|(n, _): &&mut (String, u64)| n == symbol)
        {
            Some((_, n)) => *n += samples,
            None => symbols.push((symbol.to_string(), samples)),
        }
        // JIT symbols are `bpf_prog_<tag>_<name>`.
        if let Some(i) = PROGRAMS
            .iter()
            .position(|p| symbol.starts_with("bpf_prog_") && symbol.ends_with(&format!("_{p}")))
        {
            by_program[i] += samples;
        }
    }
    Ok(Sampled {
        programs: by_program,
        all,
        symbols,
        bits_per_second,
    })
}

/// The symbols whose samples per bit carried grew most from `without` to `with` the
/// observer: where a stream's extra cycles per packet go.
fn grown(without: &Sampled, with: &Sampled, top: usize) -> Vec<(String, f64)> {
    let per_bit = |s: &Sampled, name: &str| {
        let n = s
            .symbols
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, c)| *c);
        n as f64 / s.bits_per_second.max(1.0)
    };
    // Normalised to the samples per bit of the whole run without the observer.
    let scale = 100.0 / (without.all as f64 / without.bits_per_second.max(1.0));
    let mut names: Vec<&String> = with.symbols.iter().map(|(n, _)| n).collect();
    names.extend(without.symbols.iter().map(|(n, _)| n));
    names.sort();
    names.dedup();
    let mut grown: Vec<(String, f64)> = names
        .into_iter()
        .map(|n| (n.clone(), (per_bit(with, n) - per_bit(without, n)) * scale))
        .collect();
    grown.sort_by(|a, b| b.1.total_cmp(&a.1));
    grown.truncate(top);
    grown
}

/// Rounds of each traffic, medians of the ratios.
pub fn profile(stream: &Stream, seconds: u32, rounds: u32) -> Result<()> {
    println!(
        "\n## per-packet cycles by program (perf cycles samples, 9,999 Hz on every CPU, no \
         BPF statistics), {rounds} rounds of {seconds} s; references attached at the same \
         hooks, alternately after and before the flow programs"
    );
    for traffic in [Traffic::Tcp, Traffic::Udp64] {
        let (mut to_parse, mut to_empty, mut share, mut parse_share) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 1..=rounds.max(1) {
            let mut args = vec!["--attach-empty-program"];
            if round % 2 == 0 {
                args.push("--attach-references-first");
            }
            let observer = stream.observer(&args)?;
            let with = sample(stream, seconds, traffic)?;
            observer.stop()?;
            let ([ingress, egress, parse, empty], all) = (with.programs, with.all);
            let flow = ingress + egress;
            if parse == 0 || all == 0 {
                bail!(
                    "perf saw no sample of the parse-only program: are JIT symbols on (net.core.bpf_jit_kallsyms)?"
                );
            }
            println!(
                "  round {round}, {}: samples flow programs {flow}, parse-only {parse}, empty \
                 {empty}, all {all}: flow {:.2}× the parse-only, {:.1}× the empty; flow \
                 programs {:.2} % of the busy cycles, parse-only {:.2} %",
                traffic.name(),
                flow as f64 / parse as f64,
                flow as f64 / empty.max(1) as f64,
                100.0 * flow as f64 / all as f64,
                100.0 * parse as f64 / all as f64,
            );
            to_parse.push(flow as f64 / parse as f64);
            to_empty.push(flow as f64 / empty.max(1) as f64);
            share.push(100.0 * flow as f64 / all as f64);
            parse_share.push(100.0 * parse as f64 / all as f64);
        }
        // Where a stream's cycles per bit grow with the observer (flow programs only, no
        // references), against the same stream without it, run just before.
        let without = sample(stream, seconds, traffic)?;
        let observer = stream.observer(&[])?;
        let with = sample(stream, seconds, traffic)?;
        observer.stop()?;
        println!(
            "  {}: cycles per bit carried, with the observer (flow programs only) against \
             without, run after each other: {:+.1} % ({:.3} → {:.3} Gbit/s); the symbols \
             that grew most, in % of the cycles per bit without:",
            traffic.name(),
            100.0
                * ((with.all as f64 / with.bits_per_second)
                    / (without.all as f64 / without.bits_per_second)
                    - 1.0),
            without.bits_per_second / 1e9,
            with.bits_per_second / 1e9
        );
        for (symbol, percent) in grown(&without, &with, 8) {
            println!("    {percent:+.2} %  {symbol}");
        }
        println!(
            "  {}: medians: flow programs {:.2}× the parse-only, {:.1}× the empty; {:.2} % of \
             the machine's cycles (the parse-only {:.2} %)",
            traffic.name(),
            median(&mut to_parse),
            median(&mut to_empty),
            median(&mut share),
            median(&mut parse_share)
        );
    }
    Ok(())
}
