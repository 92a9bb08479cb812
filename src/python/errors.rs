//! Engine errors to Python exceptions. The classes are defined in
//! `metricstore/exceptions.py` (so they pickle under their public name and
//! can also be ValueError or KeyError); this maps each variant to one.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::engine::EngineError;

/// The class in `metricstore.exceptions`; `None` means a plain ValueError.
fn class_name(error: &EngineError) -> Option<&'static str> {
    Some(match error {
        EngineError::InvalidArgument { .. } => return None,
        EngineError::InvalidName { .. } => "InvalidNameError",
        EngineError::UnknownMetric { .. } => "UnknownMetricError",
        EngineError::MetricConflict { .. } => "MetricConflictError",
        EngineError::UnknownSeries { .. } => "UnknownSeriesError",
        EngineError::NoAggregation { .. } => "AggregationError",
        EngineError::Closed => "ClosedError",
    })
}

impl From<EngineError> for PyErr {
    fn from(error: EngineError) -> PyErr {
        let message = error.to_string();
        let Some(name) = class_name(&error) else {
            return PyValueError::new_err(message);
        };
        Python::attach(|py| {
            let class = py
                .import("metricstore.exceptions")
                .and_then(|module| module.getattr(name));
            match class {
                Ok(class) => match class.call1((message,)) {
                    Ok(instance) => PyErr::from_value(instance),
                    Err(err) => err,
                },
                Err(err) => err,
            }
        })
    }
}
