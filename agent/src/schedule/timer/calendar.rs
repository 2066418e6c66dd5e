//! cron schedules → systemd `OnCalendar` expressions, for the forms people
//! write (`*/N`, fixed values, ranges, lists, steps over ranges, month and
//! weekday names, the `@` shorthands). Anything whose meaning would change
//! is refused with the reason, never approximated: cron ORs a restricted
//! day-of-month with a restricted weekday, systemd ANDs them.

/// Which cron field a value belongs to: its bounds and the first value of
/// `*/N`.
#[derive(Clone, Copy)]
enum Field {
    Minute,
    Hour,
    Day,
    Month,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::Day => "day of month",
            Field::Month => "month",
        }
    }

    fn bounds(self) -> (u32, u32) {
        match self {
            Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::Day => (1, 31),
            Field::Month => (1, 12),
        }
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
/// cron numbering: 0 = Sunday (7 is Sunday too).
const CRON_DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
/// systemd's names, Monday first.
const SYSTEMD_DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Converts a cron schedule (5 fields or `@shorthand`) to `OnCalendar`.
/// Times are the node's local time, as cron's are.
pub fn cron_to_oncalendar(expr: &str) -> Result<String, String> {
    let expr = expr.trim();
    if expr.starts_with('@') {
        return match expr {
            "@hourly" => Ok("*-*-* *:00:00".into()),
            "@daily" | "@midnight" => Ok("*-*-* 00:00:00".into()),
            // cron's @weekly is Sunday (systemd's `weekly` would be Monday).
            "@weekly" => Ok("Sun *-*-* 00:00:00".into()),
            "@monthly" => Ok("*-*-01 00:00:00".into()),
            "@yearly" | "@annually" => Ok("*-01-01 00:00:00".into()),
            "@reboot" => Err("@reboot is not a time of day (use OnBootSec= in a timer)".into()),
            other => Err(format!("unknown shorthand '{other}'")),
        };
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let [minute, hour, day, month, weekday] = fields[..] else {
        return Err(format!(
            "expected 5 fields (minute hour day-of-month month weekday), got {}",
            fields.len()
        ));
    };
    if day != "*" && weekday != "*" {
        return Err(
            "both day of month and weekday are restricted: cron runs when either matches, \
             systemd only when both do"
                .into(),
        );
    }
    let minute = field(minute, Field::Minute)?;
    let hour = field(hour, Field::Hour)?;
    let day = field(day, Field::Day)?;
    let month = field(month, Field::Month)?;
    let days = weekdays(weekday)?;
    let prefix = match days {
        Some(d) => format!("{d} "),
        None => String::new(),
    };
    Ok(format!("{prefix}*-{month}-{day} {hour}:{minute}:00"))
}

/// One numeric field: `*`, `*/N`, `A`, `A-B`, `A-B/N`, and lists of those.
fn field(text: &str, kind: Field) -> Result<String, String> {
    if text == "*" {
        return Ok("*".into());
    }
    let (lo, hi) = kind.bounds();
    let mut out = Vec::new();
    for item in text.split(',') {
        let bad = |why: &str| format!("{} field '{text}': {why}", kind.name());
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let s: u32 = s.parse().map_err(|_| bad(&format!("bad step '{s}'")))?;
                if s == 0 {
                    return Err(bad("step 0"));
                }
                (r, Some(s))
            }
            None => (item, None),
        };
        let value = |v: &str| -> Result<u32, String> {
            let n = match kind {
                Field::Month => MONTHS
                    .iter()
                    .position(|m| m.eq_ignore_ascii_case(v))
                    .map(|i| i as u32 + 1),
                _ => None,
            };
            let n = match n {
                Some(n) => n,
                None => v.parse().map_err(|_| bad(&format!("bad value '{v}'")))?,
            };
            if n < lo || n > hi {
                return Err(bad(&format!("{n} is outside {lo}-{hi}")));
            }
            Ok(n)
        };
        let converted = match (range, step) {
            ("*", Some(s)) => format!("{lo:02}/{s}"),
            ("*", None) => return Ok("*".into()),
            (r, step) => {
                let base = match r.split_once('-') {
                    Some((a, b)) => {
                        let (a, b) = (value(a)?, value(b)?);
                        if a > b {
                            return Err(bad(&format!("range {a}-{b} runs backwards")));
                        }
                        format!("{a:02}..{b:02}")
                    }
                    // `A/N` means different things to different crons.
                    None if step.is_some() => return Err(bad("a step needs * or a range")),
                    None => format!("{:02}", value(r)?),
                };
                match step {
                    Some(s) => format!("{base}/{s}"),
                    None => base,
                }
            }
        };
        out.push(converted);
    }
    Ok(out.join(","))
}

/// The weekday field as systemd day names (`None` for every day). Ranges,
/// steps and lists are expanded: systemd's week starts on Monday, cron's on
/// Sunday, so a range like `0-3` has no systemd spelling.
fn weekdays(text: &str) -> Result<Option<String>, String> {
    if text == "*" {
        return Ok(None);
    }
    let bad = |why: &str| format!("weekday field '{text}': {why}");
    let value = |v: &str| -> Result<u32, String> {
        if let Some(i) = CRON_DAYS.iter().position(|d| d.eq_ignore_ascii_case(v)) {
            return Ok(i as u32);
        }
        match v.parse::<u32>() {
            Ok(n) if n <= 7 => Ok(n),
            _ => Err(bad(&format!("bad value '{v}'"))),
        }
    };
    let mut set = [false; 7];
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => match s.parse::<u32>() {
                Ok(s) if s > 0 => (r, s),
                _ => return Err(bad(&format!("bad step '{s}'"))),
            },
            None => (item, 1),
        };
        let (a, b) = match range.split_once('-') {
            _ if range == "*" => (0, 6),
            Some((a, b)) => (value(a)?, value(b)?),
            None if item.contains('/') => return Err(bad("a step needs * or a range")),
            None => {
                let v = value(range)?;
                (v, v)
            }
        };
        if a > b {
            return Err(bad(&format!("range {a}-{b} runs backwards")));
        }
        for d in (a..=b).step_by(step as usize) {
            set[(d % 7) as usize] = true;
        }
    }
    // Monday first, as systemd prints them.
    let names: Vec<&str> = (0..7)
        .filter(|&i| set[(i + 1) % 7])
        .map(|i| SYSTEMD_DAYS[i])
        .collect();
    Ok(Some(names.join(",")))
}
