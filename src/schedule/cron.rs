//! Crontab expressions: the five-field syntax (with names, ranges, lists and
//! steps) and the `@daily`-style macros. This module reads and words them;
//! `croner` computes the fire times from the numeric form written here, so
//! what is accepted is exactly standard crontab, not croner's extensions
//! (`L`, `W`, `#`, `?`, seconds, years).

struct FieldKind {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const MINUTE: usize = 0;
const HOUR: usize = 1;
const DAY_OF_MONTH: usize = 2;
const MONTH: usize = 3;
const DAY_OF_WEEK: usize = 4;

const FIELDS: [FieldKind; 5] = [
    FieldKind {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    FieldKind {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    FieldKind {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
    },
    FieldKind {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTH_NAMES,
    },
    // 7 is Sunday too, as in every crontab.
    FieldKind {
        name: "day-of-week",
        min: 0,
        max: 7,
        names: &DAY_NAMES,
    },
];

/// The macros crontab knows, with the five fields each stands for.
pub(crate) const MACROS: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// One comma-separated item of a field: `*`, `N`, `N-M`, each with an optional `/STEP`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    star: bool,
    lo: u32,
    hi: u32,
    step: u32,
}

impl Item {
    fn single(&self) -> Option<u32> {
        (!self.star && self.lo == self.hi).then_some(self.lo)
    }
}

/// A crontab expression that passed every check, in numeric five-field form.
#[derive(Debug, Clone)]
pub(crate) struct CronExpr {
    fields: Vec<Vec<Item>>,
}

/// Reads a crontab expression or macro. The error is the reason only; the
/// caller puts the expression in front of it.
pub(crate) fn parse(expr: &str) -> Result<CronExpr, String> {
    let trimmed = expr.trim();
    let text = if trimmed.starts_with('@') {
        let lower = trimmed.to_ascii_lowercase();
        match MACROS.iter().find(|(name, _)| *name == lower) {
            Some((_, fields)) => *fields,
            None => {
                let known: Vec<&str> = MACROS.iter().map(|(name, _)| *name).collect();
                return Err(format!(
                    "unknown macro '{trimmed}'; use one of {}",
                    known.join(", ")
                ));
            }
        }
    } else {
        trimmed
    };
    let parts: Vec<&str> = text.split_whitespace().collect();
    if parts.len() != 5 {
        return Err(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
            parts.len()
        ));
    }
    let mut fields = Vec::with_capacity(5);
    for (part, kind) in parts.iter().zip(FIELDS.iter()) {
        let items = part
            .split(',')
            .map(|item| parse_item(item, kind))
            .collect::<Result<Vec<_>, _>>()?;
        fields.push(items);
    }
    Ok(CronExpr { fields })
}

fn parse_item(item: &str, kind: &FieldKind) -> Result<Item, String> {
    let (base, step) = match item.split_once('/') {
        Some((base, step)) => {
            let step: u32 = step.parse().map_err(|_| unreadable(item, kind))?;
            if step == 0 {
                return Err(format!(
                    "step 0 in the {} field must be at least 1",
                    kind.name
                ));
            }
            (base, Some(step))
        }
        None => (item, None),
    };
    if base == "*" {
        return Ok(Item {
            star: true,
            lo: kind.min,
            hi: kind.max,
            step: step.unwrap_or(1),
        });
    }
    let (lo, hi) = match base.split_once('-') {
        Some((lo, hi)) => (value(lo, kind, false, item)?, value(hi, kind, true, item)?),
        None => {
            if step.is_some() {
                return Err(format!(
                    "'{item}' in the {} field needs a range or '*' before the step, \
                     such as '*/{}' or '{base}-{}/{}'",
                    kind.name,
                    step.unwrap_or(1),
                    kind.max,
                    step.unwrap_or(1)
                ));
            }
            let v = value(base, kind, false, item)?;
            (v, v)
        }
    };
    if lo > hi {
        return Err(format!(
            "range {base} in the {} field runs backwards",
            kind.name
        ));
    }
    Ok(Item {
        star: false,
        lo,
        hi,
        step: step.unwrap_or(1),
    })
}

fn value(token: &str, kind: &FieldKind, range_end: bool, item: &str) -> Result<u32, String> {
    if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
        let n: u32 = token.parse().map_err(|_| unreadable(item, kind))?;
        if n < kind.min || n > kind.max {
            return Err(format!(
                "{} {n} is out of range ({}-{})",
                kind.name, kind.min, kind.max
            ));
        }
        return Ok(n);
    }
    let upper = token.to_ascii_uppercase();
    match kind.names.iter().position(|name| *name == upper) {
        // `FRI-SUN` means Friday to Sunday: Sunday closes a range as 7.
        Some(0) if kind.name == "day-of-week" && range_end => Ok(7),
        Some(i) => Ok(i as u32 + if kind.min == 1 { 1 } else { 0 }),
        None => Err(unreadable(item, kind)),
    }
}

fn unreadable(item: &str, kind: &FieldKind) -> String {
    let names = match kind.name {
        "month" => " or names (JAN-DEC)",
        "day-of-week" => " or names (SUN-SAT)",
        _ => "",
    };
    format!(
        "cannot read '{item}' in the {} field; use numbers{names}, '*', ranges (1-5), \
         lists (1,15) and steps (*/10)",
        kind.name
    )
}

impl CronExpr {
    /// The numeric five-field form handed to croner.
    pub(crate) fn numeric(&self) -> String {
        let fields: Vec<String> = self
            .fields
            .iter()
            .map(|items| {
                let items: Vec<String> = items
                    .iter()
                    .map(|item| {
                        let base = match (item.star, item.lo == item.hi) {
                            (true, _) => "*".to_string(),
                            (false, true) => item.lo.to_string(),
                            (false, false) => format!("{}-{}", item.lo, item.hi),
                        };
                        if item.step == 1 {
                            base
                        } else {
                            format!("{base}/{}", item.step)
                        }
                    })
                    .collect();
                items.join(",")
            })
            .collect();
        fields.join(" ")
    }

    fn all(&self, field: usize) -> bool {
        let items = &self.fields[field];
        items.len() == 1 && items[0].star && items[0].step == 1
    }

    fn single(&self, field: usize) -> Option<u32> {
        match self.fields[field].as_slice() {
            [item] => item.single(),
            _ => None,
        }
    }

    /// The expression in words, such as "every day at 02:30" or "every 15
    /// minutes on Monday to Friday"; `None` when it has no short wording.
    pub(crate) fn words(&self) -> Option<String> {
        let fixed = match (self.single(HOUR), self.single(MINUTE)) {
            (Some(h), Some(m)) => Some(format!("{h:02}:{m:02}")),
            _ => None,
        };
        let time = match &fixed {
            Some(_) => None,
            None => Some(self.time_words()?),
        };
        let every_day = self.all(DAY_OF_MONTH) && self.all(MONTH) && self.all(DAY_OF_WEEK);
        let weekdays = self.all(DAY_OF_MONTH) && self.all(MONTH) && !self.all(DAY_OF_WEEK);
        let monthly = !self.all(DAY_OF_MONTH) && self.all(MONTH) && self.all(DAY_OF_WEEK);
        let yearly = self.single(DAY_OF_MONTH).is_some()
            && self.single(MONTH).is_some()
            && self.all(DAY_OF_WEEK);
        let days = if every_day {
            None
        } else if weekdays {
            Some(("every", self.list_words(DAY_OF_WEEK, day_name)?))
        } else if monthly {
            Some((
                "on",
                format!(
                    "{} of every month",
                    self.list_words(DAY_OF_MONTH, day_of_month)?
                ),
            ))
        } else if yearly {
            let month = MONTH_WORDS[self.single(MONTH)? as usize - 1];
            Some((
                "every year on",
                format!("{} {month}", self.single(DAY_OF_MONTH)?),
            ))
        } else {
            return None;
        };
        Some(match (fixed, time, days) {
            (Some(at), _, None) => format!("every day at {at}"),
            (Some(at), _, Some((lead, days))) => format!("{lead} {days} at {at}"),
            (None, Some(time), None) => time,
            (None, Some(time), Some((lead, days))) => {
                let lead = if lead == "every" { "on" } else { lead };
                format!("{time} {lead} {days}")
            }
            (None, None, _) => return None,
        })
    }

    fn time_words(&self) -> Option<String> {
        let minute = self.fields[MINUTE].as_slice();
        let hour_all = self.all(HOUR);
        match (minute, hour_all) {
            ([m], true) if m.star && m.step == 1 => Some("every minute".to_string()),
            ([m], true) if m.star => Some(format!("every {} minutes", m.step)),
            ([m], true) if m.single().is_some() => Some(format!("every hour at minute {}", m.lo)),
            ([m], false) if m.single().is_some() => match self.fields[HOUR].as_slice() {
                [h] if h.star => Some(format!("every {} hours at minute {}", h.step, m.lo)),
                _ => None,
            },
            _ => None,
        }
    }

    fn list_words(&self, field: usize, name: fn(u32) -> String) -> Option<String> {
        let mut parts = Vec::new();
        for item in &self.fields[field] {
            if item.step != 1 || item.star {
                return None;
            }
            parts.push(if item.lo == item.hi {
                name(item.lo)
            } else {
                format!("{} to {}", name(item.lo), name(item.hi))
            });
        }
        Some(match parts.as_slice() {
            [one] => one.clone(),
            [init @ .., last] => format!("{} and {last}", init.join(", ")),
            [] => return None,
        })
    }
}

const MONTH_WORDS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn day_name(n: u32) -> String {
    const WORDS: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
    WORDS[n as usize % 7].to_string()
}

fn day_of_month(n: u32) -> String {
    format!("day {n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(expr: &str) -> String {
        parse(expr).unwrap_err()
    }

    #[test]
    fn names_ranges_lists_and_steps_become_numbers() {
        assert_eq!(
            parse("30 2 * JAN,jul MON-FRI").unwrap().numeric(),
            "30 2 * 1,7 1-5"
        );
        assert_eq!(
            parse("*/15 0-23/2 1,15 * *").unwrap().numeric(),
            "*/15 0-23/2 1,15 * *"
        );
        assert_eq!(parse("0 0 * * FRI-SUN").unwrap().numeric(), "0 0 * * 5-7");
        assert_eq!(parse("0 0 * * 7").unwrap().numeric(), "0 0 * * 7");
    }

    #[test]
    fn macros_expand_to_their_five_fields() {
        for (name, fields) in MACROS {
            assert_eq!(parse(name).unwrap().numeric(), fields, "{name}");
        }
        assert_eq!(parse("@DAILY").unwrap().numeric(), "0 0 * * *");
    }

    #[test]
    fn bad_fields_are_named_with_their_range() {
        assert_eq!(reason("61 * * * *"), "minute 61 is out of range (0-59)");
        assert_eq!(reason("0 24 * * *"), "hour 24 is out of range (0-23)");
        assert_eq!(reason("0 0 0 * *"), "day-of-month 0 is out of range (1-31)");
        assert_eq!(reason("0 0 * 13 *"), "month 13 is out of range (1-12)");
        assert_eq!(reason("0 0 * * 8"), "day-of-week 8 is out of range (0-7)");
        assert_eq!(
            reason("* * * *"),
            "expected 5 fields (minute hour day-of-month month day-of-week), found 4"
        );
        assert_eq!(
            reason("0 0 0 * * *"),
            "expected 5 fields (minute hour day-of-month month day-of-week), found 6"
        );
        assert_eq!(
            reason("*/0 * * * *"),
            "step 0 in the minute field must be at least 1"
        );
        assert_eq!(
            reason("0 5-3 * * *"),
            "range 5-3 in the hour field runs backwards"
        );
        assert_eq!(
            reason("0 0 L * *"),
            "cannot read 'L' in the day-of-month field; use numbers, '*', ranges (1-5), \
             lists (1,15) and steps (*/10)"
        );
        assert_eq!(
            reason("0 0 * * MONDAY"),
            "cannot read 'MONDAY' in the day-of-week field; use numbers or names (SUN-SAT), \
             '*', ranges (1-5), lists (1,15) and steps (*/10)"
        );
        assert_eq!(
            reason("5/10 * * * *"),
            "'5/10' in the minute field needs a range or '*' before the step, \
             such as '*/10' or '5-59/10'"
        );
        assert_eq!(
            reason("@reboot"),
            "unknown macro '@reboot'; use one of @yearly, @annually, @monthly, @weekly, \
             @daily, @midnight, @hourly"
        );
    }

    #[test]
    fn common_expressions_read_as_words() {
        let words = |e: &str| parse(e).unwrap().words();
        assert_eq!(words("30 2 * * *").as_deref(), Some("every day at 02:30"));
        assert_eq!(
            words("0 9 * * MON-FRI").as_deref(),
            Some("every Monday to Friday at 09:00")
        );
        assert_eq!(
            words("0 9 * * MON,WED,FRI").as_deref(),
            Some("every Monday, Wednesday and Friday at 09:00")
        );
        assert_eq!(words("@weekly").as_deref(), Some("every Sunday at 00:00"));
        assert_eq!(
            words("@monthly").as_deref(),
            Some("on day 1 of every month at 00:00")
        );
        assert_eq!(
            words("@yearly").as_deref(),
            Some("every year on 1 January at 00:00")
        );
        assert_eq!(words("@hourly").as_deref(), Some("every hour at minute 0"));
        assert_eq!(words("* * * * *").as_deref(), Some("every minute"));
        assert_eq!(words("*/15 * * * *").as_deref(), Some("every 15 minutes"));
        assert_eq!(
            words("*/15 * * * MON-FRI").as_deref(),
            Some("every 15 minutes on Monday to Friday")
        );
        assert_eq!(
            words("5 */2 * * *").as_deref(),
            Some("every 2 hours at minute 5")
        );
        assert_eq!(words("0 9-17 * * *"), None);
        assert_eq!(words("0 0 13 * FRI"), None);
    }
}
