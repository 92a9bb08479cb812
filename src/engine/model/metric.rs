//! Metric definitions: a name, a frequency in ticks, and how series of the
//! metric combine when a read asks for a level above where they are stored.

use crate::engine::error::EngineError;

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
}
