//! The JUnit XML report CI systems read: one `testsuite` per Eval manifest,
//! one `testcase` per case, a `failure` element holding every failed check.

use super::runner::CaseReport;
use std::fmt::Write as _;
use std::time::Duration;

/// The report of `reports` (in their order), which took `total`.
pub fn render(reports: &[CaseReport], min_rate: f64, total: Duration) -> String {
    let mut suites: Vec<(&str, Vec<&CaseReport>)> = Vec::new();
    for r in reports {
        match suites.iter_mut().find(|(name, _)| *name == r.suite) {
            Some((_, list)) => list.push(r),
            None => suites.push((&r.suite, vec![r])),
        }
    }
    let failed = |list: &[&CaseReport]| list.iter().filter(|r| !r.passed(min_rate)).count();
    let all: Vec<&CaseReport> = reports.iter().collect();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"jaros eval\" tests=\"{}\" failures=\"{}\" errors=\"0\" time=\"{}\">",
        reports.len(),
        failed(&all),
        seconds(total)
    );
    for (suite, list) in &suites {
        let time: Duration = list.iter().map(|r| r.duration).sum();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"0\" time=\"{}\">",
            escape(suite),
            list.len(),
            failed(list),
            seconds(time)
        );
        for r in list {
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" time=\"{}\"",
                escape(&r.name),
                escape(suite),
                escape(r.place.split(':').next().unwrap_or_default()),
                seconds(r.duration)
            );
            if r.passed(min_rate) {
                out.push_str("/>\n");
                continue;
            }
            let message = match r.failures.first() {
                Some(f) if r.runs == 1 => format!(
                    "{} failed check{}, first: {}",
                    r.failures.len(),
                    if r.failures.len() == 1 { "" } else { "s" },
                    f.check
                ),
                _ => format!("passed {}/{} runs", r.passed_runs, r.runs),
            };
            let _ = writeln!(
                out,
                ">\n      <failure message=\"{}\" type=\"eval\">{}</failure>\n    </testcase>",
                escape(&message),
                escape(&super::failure_text(r))
            );
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn seconds(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// Escapes text for an XML attribute or element. Characters XML 1.0 cannot
/// hold at all (most control characters) become U+FFFD.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || matches!(c, '\u{FFFE}' | '\u{FFFF}') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::expect::Failure;

    fn report(name: &str, failures: Vec<Failure>) -> CaseReport {
        CaseReport {
            suite: "s<1>".into(),
            name: name.into(),
            place: "manifests/evals/x.yaml:3:7".into(),
            runs: 1,
            passed_runs: u32::from(failures.is_empty()),
            failures,
            duration: Duration::from_millis(12),
        }
    }

    #[test]
    fn markup_and_control_characters_are_escaped() {
        assert_eq!(
            escape("a<b>&\"c'\u{1}"),
            "a&lt;b&gt;&amp;&quot;c&apos;\u{FFFD}"
        );
    }

    #[test]
    fn the_report_counts_failures_per_suite_and_quotes_the_checks() {
        let xml = render(
            &[
                report("ok", vec![]),
                report(
                    "bad & worse",
                    vec![Failure::new(
                        "state",
                        "DONE".into(),
                        "FAILED (<why>)".into(),
                    )],
                ),
            ],
            1.0,
            Duration::from_millis(30),
        );
        assert!(
            xml.contains("<testsuites name=\"jaros eval\" tests=\"2\" failures=\"1\""),
            "{xml}"
        );
        assert!(
            xml.contains("<testsuite name=\"s&lt;1&gt;\" tests=\"2\" failures=\"1\""),
            "{xml}"
        );
        assert!(xml.contains("<testcase name=\"ok\" classname=\"s&lt;1&gt;\" file=\"manifests/evals/x.yaml\" time=\"0.012\"/>"), "{xml}");
        assert!(xml.contains("<testcase name=\"bad &amp; worse\""), "{xml}");
        assert!(
            xml.contains("<failure message=\"1 failed check, first: state\" type=\"eval\">"),
            "{xml}"
        );
        assert!(xml.contains("FAILED (&lt;why&gt;)"), "{xml}");
        assert_eq!(xml.matches("<testcase").count(), 2);
        assert_eq!(xml.matches("</testcase>").count(), 1);
    }
}
