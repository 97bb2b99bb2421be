//! The classic Prometheus text format (0.0.4) made from the OpenMetrics text
//! prometheus-client writes: a counter family is named with its `_total` (OpenMetrics names
//! the family without it), an info family becomes a gauge named `_info`, `unknown`
//! becomes `untyped`, and the `# UNIT` and `# EOF` lines, which the classic format does
//! not have, are left out. Pure.

/// `openmetrics` in the classic text format.
pub(super) fn classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let lines: Vec<&str> = openmetrics.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        // A family: its comment lines, then its samples.
        let start = i;
        while i < lines.len() && lines[i].starts_with('#') {
            i += 1;
        }
        let comments = &lines[start..i];
        let kind = comments
            .iter()
            .find_map(|l| l.strip_prefix("# TYPE "))
            .and_then(|t| t.split_whitespace().nth(1))
            .unwrap_or("");
        let (suffix, classic_kind) = match kind {
            "counter" => ("_total", "counter"),
            "info" => ("_info", "gauge"),
            "unknown" => ("", "untyped"),
            other => ("", other),
        };
        for line in comments {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(&format!("# HELP {name}{suffix} {help}\n"));
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split_whitespace().next().unwrap_or("");
                out.push_str(&format!("# TYPE {name}{suffix} {classic_kind}\n"));
            }
            // `# UNIT` and `# EOF`: not in the classic format.
        }
        while i < lines.len() && !lines[i].starts_with('#') {
            // `_created` samples are OpenMetrics' own.
            let name_end = lines[i].find(['{', ' ']).unwrap_or(lines[i].len());
            if !lines[i][..name_end].ends_with("_created") {
                out.push_str(lines[i]);
                out.push('\n');
            }
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::classic;

    #[test]
    fn counters_infos_and_units_are_written_the_classic_way() {
        let openmetrics = "# HELP observer_lost_events Events lost.\n\
            # TYPE observer_lost_events counter\n\
            observer_lost_events_total{what=\"x\"} 3\n\
            # HELP process_cpu_seconds CPU time.\n\
            # TYPE process_cpu_seconds counter\n\
            # UNIT process_cpu_seconds seconds\n\
            process_cpu_seconds_total 0.5\n\
            # HELP observer_build The build.\n\
            # TYPE observer_build info\n\
            observer_build_info{version=\"0.1.0\"} 1\n\
            # HELP observer_connections Held.\n\
            # TYPE observer_connections gauge\n\
            observer_connections 7\n\
            # EOF\n";
        assert_eq!(
            classic(openmetrics),
            "# HELP observer_lost_events_total Events lost.\n\
             # TYPE observer_lost_events_total counter\n\
             observer_lost_events_total{what=\"x\"} 3\n\
             # HELP process_cpu_seconds_total CPU time.\n\
             # TYPE process_cpu_seconds_total counter\n\
             process_cpu_seconds_total 0.5\n\
             # HELP observer_build_info The build.\n\
             # TYPE observer_build_info gauge\n\
             observer_build_info{version=\"0.1.0\"} 1\n\
             # HELP observer_connections Held.\n\
             # TYPE observer_connections gauge\n\
             observer_connections 7\n"
        );
    }
}
