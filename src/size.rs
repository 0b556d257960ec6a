//! Exact conversion between the human-readable sizes the CodeArts Artifact API returns
//! (`"549.62 MB"`, `"1,010.15 KB"`, `"0 MB"`, `""`) and byte counts.
//!
//! Units are 1024-based whatever their spelling (`KB`, `K`, `KiB`, any case all mean 1024 bytes),
//! because that is how the service computes them. Parsing uses integer arithmetic only, so the same
//! text always yields the same byte count on every platform; see [`parse_size`] for the grammar and
//! the rounding rule. [`format_size`] produces the same style for human output.
//!
//! This module is not a general unit library: no SI (1000-based) units, no bits, no negative sizes,
//! no exponents, no locales other than `,` for thousands and `.` for decimals.

/// Why a size string could not be turned into a byte count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// The text is not a well-formed non-negative decimal number followed by an optional unit.
    #[error("invalid size {input:?}: {reason}")]
    Invalid {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The number is followed by something that is not a known unit.
    #[error("invalid size {input:?}: unknown unit {unit:?} (expected B, KB, MB, GB, TB or PB)")]
    UnknownUnit {
        /// The text as given.
        input: String,
        /// The unrecognised unit text.
        unit: String,
    },
    /// The value is larger than `u64::MAX` bytes.
    #[error("invalid size {input:?}: more than 18446744073709551615 bytes")]
    Overflow {
        /// The text as given.
        input: String,
    },
}

/// Unit names for [`format_size`], index = power of 1024.
const UNIT_NAMES: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];

/// Parses a human size such as `"549.62 MB"` into an exact byte count (1024-based units).
///
/// Grammar, after trimming surrounding whitespace:
/// - empty text is 0 bytes (the API sends `""` for "nothing");
/// - a number: digits, optionally with `,` thousands separators, optionally followed by `.` and
///   at least one digit. Separators must be well placed: a first group of 1 to 3 digits, then groups
///   of exactly 3 (`1,234,567` is accepted, `1,0,0` and `1234,567` are not), and never in the
///   fraction. Signs, exponents and a bare `.5` or `5.` are rejected;
/// - optional whitespace, then an optional unit, case-insensitive: `B`; `K`, `KB`, `KiB`; `M`, `MB`,
///   `MiB`; `G`, `GB`, `GiB`; `T`, `TB`, `TiB`; `P`, `PB`, `PiB`. No unit means bytes.
///
/// The value is computed exactly as `mantissa * 1024^k / 10^fraction_digits` and rounded to the
/// nearest byte, halves away from zero (so up, as sizes are never negative): `"549.62 MB"` is
/// 576 318 341.12 bytes and gives 576 318 341; `"1.5 B"` gives 2.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let invalid = |reason: &'static str| SizeError::Invalid {
        input: s.to_string(),
        reason,
    };
    let text = s.trim();
    if text.is_empty() {
        return Ok(0);
    }
    if text.starts_with(['-', '+']) {
        return Err(invalid("a size has no sign"));
    }

    let number_len = text
        .find(|c: char| !(c.is_ascii_digit() || c == ',' || c == '.'))
        .unwrap_or(text.len());
    let (number, rest) = text.split_at(number_len);
    if number.is_empty() {
        return Err(invalid("no number"));
    }
    let unit = rest.trim_start();

    let (int_part, frac_part) = match number.split_once('.') {
        Some((_, frac)) if frac.contains('.') => {
            return Err(invalid("more than one decimal point"))
        }
        Some((_, frac)) if frac.contains(',') => {
            return Err(invalid("thousands separator in the fraction"))
        }
        Some((_, "")) => return Err(invalid("no digits after the decimal point")),
        Some((int, frac)) => (int, frac),
        None => (number, ""),
    };
    if int_part.is_empty() {
        return Err(invalid("no digits before the decimal point"));
    }
    if int_part.contains(',') && !well_grouped(int_part) {
        return Err(invalid(
            "thousands separators must split the digits into groups of three",
        ));
    }

    let power = unit_power(unit).ok_or_else(|| SizeError::UnknownUnit {
        input: s.to_string(),
        unit: unit.to_string(),
    })?;
    let overflow = || SizeError::Overflow {
        input: s.to_string(),
    };
    let multiplier: u128 = 1 << (10 * power);

    let mut whole: u128 = 0;
    for d in int_part.bytes().filter(u8::is_ascii_digit) {
        whole = whole
            .checked_mul(10)
            .and_then(|w| w.checked_add(u128::from(d - b'0')))
            .ok_or_else(overflow)?;
    }
    let whole_bytes = whole.checked_mul(multiplier).ok_or_else(overflow)?;

    // Multiply the fraction 0.d1d2...dn by the multiplier digit by digit from the right, like
    // long multiplication: what carries out of d1 is the whole-byte part of the fraction, and the
    // digit left in d1's place is the first decimal of the leftover, which decides the rounding.
    // Exact for any number of fraction digits; `carry` stays below `multiplier`, so no overflow.
    let mut carry: u128 = 0;
    let mut first_leftover_digit: u128 = 0;
    for d in frac_part.bytes().rev() {
        let t = u128::from(d - b'0') * multiplier + carry;
        first_leftover_digit = t % 10;
        carry = t / 10;
    }
    let round_up = u128::from(first_leftover_digit >= 5);

    let total = whole_bytes
        .checked_add(carry + round_up)
        .ok_or_else(overflow)?;
    u64::try_from(total).map_err(|_| overflow())
}

/// True when `digits` (digits and commas only) is `d{1,3}(,ddd)*`.
fn well_grouped(digits: &str) -> bool {
    let mut groups = digits.split(',');
    let first_ok = groups
        .next()
        .is_some_and(|g| (1..=3).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_digit()));
    first_ok && groups.all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit()))
}

/// The power of 1024 a unit stands for, or `None` when it is not a known unit.
fn unit_power(unit: &str) -> Option<u32> {
    let power = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 1,
        "m" | "mb" | "mib" => 2,
        "g" | "gb" | "gib" => 3,
        "t" | "tb" | "tib" => 4,
        "p" | "pb" | "pib" => 5,
        _ => return None,
    };
    Some(power)
}

/// Formats a byte count as `"549.62 MB"`: 1024-based, two decimals, `"12 B"` below 1 KB.
///
/// The largest unit (up to PB) whose rounded value is at least 1.00 is chosen; the value is rounded
/// to the nearest hundredth, halves up, so parsing the result gives back the byte count within
/// 0.005 of the unit (plus half a byte from rounding to whole bytes).
pub fn format_size(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut power = 1;
    while power + 1 < UNIT_NAMES.len() && bytes >> (10 * (power + 1)) > 0 {
        power += 1;
    }
    let mut hundredths = hundredths_of(bytes, power);
    // 1023.999 KB rounds to 1024.00 KB; show it as 1.00 MB instead.
    if hundredths >= 102_400 && power + 1 < UNIT_NAMES.len() {
        power += 1;
        hundredths = hundredths_of(bytes, power);
    }
    format!(
        "{}.{:02} {}",
        hundredths / 100,
        hundredths % 100,
        UNIT_NAMES[power]
    )
}

/// `bytes / 1024^power` in hundredths, rounded to nearest, halves up.
fn hundredths_of(bytes: u64, power: usize) -> u128 {
    let unit: u128 = 1 << (10 * power);
    (u128::from(bytes) * 100 + unit / 2) / unit
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_api_examples_exactly() {
        let table: &[(&str, u64)] = &[
            // 54962 * 2^20 / 100 = 576_318_341.12
            ("549.62 MB", 576_318_341),
            // 101015 * 1024 / 100 = 1_034_393.6
            ("1,010.15 KB", 1_034_394),
            // 197 * 2^30 / 100 = 2_115_271_393.28
            ("1.97 GB", 2_115_271_393),
            ("0 MB", 0),
            ("", 0),
            ("   ", 0),
            ("12 B", 12),
            ("3 TB", 3 * (1 << 40)),
            ("0.5KB", 512),
            ("1 kb", 1024),
            ("1 Kb", 1024),
            ("1 kB", 1024),
            ("1,234,567 B", 1_234_567),
            ("  2 MB \n", 2 << 20),
            ("\t1.5\tGB ", 3 << 29),
            ("1 PB", 1 << 50),
            ("1 K", 1024),
            ("1 M", 1 << 20),
            ("1 G", 1 << 30),
            ("1 T", 1 << 40),
            ("1 KiB", 1024),
            ("1 MiB", 1 << 20),
            ("1 GiB", 1 << 30),
            ("1 TiB", 1 << 40),
            ("1 pib", 1 << 50),
            ("12", 12),
            ("007 B", 7),
            ("1.50 KB", 1536),
            // Rounding to the nearest byte, halves away from zero.
            ("1.5 B", 2),
            ("2.5 B", 3),
            ("0.4 B", 0),
            ("0.49999 B", 0),
            ("0.001 KB", 1),         // 1.024
            ("0.0005 KB", 1),        // 0.512
            ("0.00048828125 KB", 1), // exactly 0.5
            ("0.00048828124 KB", 0), // just below 0.5
            ("0.00000000000000000000000000000000000000000001 PB", 0),
            ("18446744073709551615 B", u64::MAX),
            ("18,446,744,073,709,551,615", u64::MAX),
            ("16383.99 PB", 18_446_732_814_710_483_190),
        ];
        for (input, expected) in table {
            assert_eq!(parse_size(input), Ok(*expected), "input {input:?}");
        }
    }

    fn assert_invalid(input: &str) {
        match parse_size(input) {
            Err(SizeError::Invalid { input: got, .. }) => assert_eq!(got, input),
            other => panic!("{input:?}: expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn rejects_garbage() {
        for input in [
            "abc",
            "1.2.3 MB",
            "-5 MB",
            "+5 MB",
            "1,0,0 KB",
            "1234,567 B",
            ",123 B",
            "123, B",
            "1,23 B",
            "1.2,3 KB",
            ".5 KB",
            "5. KB",
            "MB",
            ",",
            ".",
        ] {
            assert_invalid(input);
        }
    }

    #[test]
    fn rejects_unknown_units() {
        for (input, unit) in [
            ("5 XB", "XB"),
            ("5 MB extra", "MB extra"),
            ("5 M B", "M B"),
            ("1e3 B", "e3 B"),
            ("5 bytes", "bytes"),
        ] {
            assert_eq!(
                parse_size(input),
                Err(SizeError::UnknownUnit {
                    input: input.to_string(),
                    unit: unit.to_string()
                })
            );
        }
    }

    #[test]
    fn rejects_overflow() {
        for input in [
            "18446744073709551616 B",
            "16384 PB",
            "99999 PB",
            "99999999999999999999999999999999999999999999 B",
            "18014398509481984 KB",
        ] {
            assert_eq!(
                parse_size(input),
                Err(SizeError::Overflow {
                    input: input.to_string()
                }),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn error_messages_name_the_input() {
        let err = parse_size("5 XB").unwrap_err().to_string();
        assert!(err.contains("\"5 XB\""), "{err}");
        let err = parse_size("1,0,0 KB").unwrap_err().to_string();
        assert!(err.contains("\"1,0,0 KB\""), "{err}");
        let err = parse_size("16384 PB").unwrap_err().to_string();
        assert!(err.contains("\"16384 PB\""), "{err}");
    }

    #[test]
    fn formats_examples() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(12), "12 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1024), "1.00 KB");
        assert_eq!(format_size(1_034_394), "1010.15 KB");
        assert_eq!(format_size(576_318_341), "549.62 MB");
        assert_eq!(format_size(2_115_271_393), "1.97 GB");
        assert_eq!(format_size(3 << 40), "3.00 TB");
        assert_eq!(format_size(1_048_575), "1.00 MB");
        assert_eq!(format_size(1 << 50), "1.00 PB");
        assert_eq!(format_size(u64::MAX), "16384.00 PB");
    }

    fn with_commas(n: u64) -> String {
        let digits = n.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    }

    const UNIT_SPELLINGS: [&[&str]; 6] = [
        &["B", "b", ""],
        &["KB", "kb", "Kb", "K", "KiB"],
        &["MB", "mb", "M", "MiB"],
        &["GB", "Gb", "g", "GiB"],
        &["TB", "tb", "T", "TiB"],
        &["PB", "pb", "P", "PiB"],
    ];

    proptest! {
        #[test]
        fn bytes_round_trip(n in 0u64..=(1u64 << 50)) {
            prop_assert_eq!(parse_size(&format!("{n} B")), Ok(n));
        }

        #[test]
        fn whole_units_are_exact(m in 0u64..(1u64 << 30), power in 0usize..6, pick in 0usize..5, space in any::<bool>()) {
            let spellings = UNIT_SPELLINGS[power];
            let unit = spellings[pick % spellings.len()];
            let sep = if space { " " } else { "" };
            let input = format!("{m}{sep}{unit}");
            let expected = u128::from(m) << (10 * power);
            match u64::try_from(expected) {
                Ok(v) => prop_assert_eq!(parse_size(&input), Ok(v)),
                Err(_) => prop_assert_eq!(parse_size(&input), Err(SizeError::Overflow { input: input.clone() })),
            }
        }

        #[test]
        fn thousands_separators_do_not_change_the_value(n in any::<u64>(), frac in proptest::option::of(0u32..1000), power in 0usize..6) {
            let unit = UNIT_SPELLINGS[power][0];
            let frac = frac.map(|f| format!(".{f:03}")).unwrap_or_default();
            let plain = parse_size(&format!("{n}{frac} {unit}"));
            let grouped = parse_size(&format!("{}{frac} {unit}", with_commas(n)));
            match (plain, grouped) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(SizeError::Overflow { .. }), Err(SizeError::Overflow { .. })) => {}
                (a, b) => prop_assert!(false, "plain {:?} vs grouped {:?}", a, b),
            }
        }

        // Up to 0.005 PB below u64::MAX the displayed value may round up past u64::MAX.
        #[test]
        fn formatted_sizes_parse_back_closely(n in 0u64..=(u64::MAX - (1u64 << 50))) {
            let text = format_size(n);
            let parsed = parse_size(&text);
            prop_assert!(parsed.is_ok(), "{} -> {:?}", text, parsed);
            let parsed = parsed.unwrap_or_default();
            let power = UNIT_NAMES
                .iter()
                .position(|u| text.ends_with(&format!(" {u}")))
                .unwrap_or(0);
            let unit = 1u128 << (10 * power);
            let diff = u128::from(parsed.abs_diff(n));
            // |parsed - n| <= unit / 200 + 1/2, scaled by 200 to stay in integers.
            prop_assert!(diff * 200 <= unit + 100, "{} -> {} vs {}", text, parsed, n);
        }
    }
}
