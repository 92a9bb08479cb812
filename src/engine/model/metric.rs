//! Metric definitions: a name, a frequency in ticks, how series of the
//! metric combine when a read asks for a level above where they are stored,
//! and the unit of its values (a label the store keeps, never converts).

use crate::engine::bytes::{ByteReader, put_str};
use crate::engine::error::EngineError;

/// Longest unit, in bytes ("GF/s", "MB/s" and "degC" are a handful).
pub const MAX_UNIT_LEN: usize = 64;

/// How a read above the stored level combines the series below it. Both
/// skip NaN: a slot is NaN only when no series has a value there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    /// Such reads are an error unless exactly one series is below the path.
    None,
    Sum,
    Avg,
}

impl Aggregation {
    pub fn parse(text: &str) -> Result<Self, EngineError> {
        match text {
            "none" => Ok(Aggregation::None),
            "sum" => Ok(Aggregation::Sum),
            "avg" => Ok(Aggregation::Avg),
            other => Err(EngineError::argument(
                "aggregation",
                format!("unknown aggregation {other:?}; use \"sum\", \"avg\" or \"none\""),
            )),
        }
    }

    /// The byte that stands for this aggregation in the log and snapshots.
    pub fn code(self) -> u8 {
        match self {
            Aggregation::None => 0,
            Aggregation::Sum => 1,
            Aggregation::Avg => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Aggregation::None,
            1 => Aggregation::Sum,
            2 => Aggregation::Avg,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Aggregation::None => "none",
            Aggregation::Sum => "sum",
            Aggregation::Avg => "avg",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricDef {
    pub name: String,
    /// Ticks between samples, at least 1.
    pub frequency: i64,
    pub aggregation: Aggregation,
    /// The unit of the values ("GF/s"), or None when nobody said.
    pub unit: Option<String>,
}

/// Checks a unit: 1 to `MAX_UNIT_LEN` bytes of printable characters (it is
/// shown in axis labels and reprs, and logged as a name is).
pub fn validate_unit(unit: &str) -> Result<(), EngineError> {
    let problem = if unit.is_empty() {
        Some("it is empty; give None for no unit".to_owned())
    } else if unit.len() > MAX_UNIT_LEN {
        Some(format!(
            "{unit:?} is {} bytes long; the limit is {MAX_UNIT_LEN}",
            unit.len()
        ))
    } else {
        unit.chars()
            .find(|c| c.is_control())
            .map(|c| format!("{unit:?} holds the control character {c:?}"))
    };
    match problem {
        Some(message) => Err(EngineError::argument("unit", message)),
        None => Ok(()),
    }
}

/// Appends a unit as a name, no unit as the empty name (a unit is never
/// empty): the one encoding the log and snapshots share.
pub fn put_unit(out: &mut Vec<u8>, unit: Option<&str>) {
    put_str(out, unit.unwrap_or(""));
}

/// A unit as [`put_unit`] wrote it.
pub fn read_unit(r: &mut ByteReader<'_>) -> Result<Option<String>, String> {
    let unit = r.string()?;
    Ok((!unit.is_empty()).then_some(unit))
}
