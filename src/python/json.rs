//! JSON float arrays in cc-metric-store's number format, for the network
//! front door (`metricstore.serve`): formatting a large query answer is
//! the one CPU-heavy step of a read, so it runs here with the GIL released.

use numpy::{PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::engine::{MAX_DECIMALS, float_rows_into, float64_array};

/// Rows formatted per release of the GIL: their text (about 700 KB for
/// a day at 60 s) stays in cache until it is copied into `bytes`.
const ROWS_AT_ONCE: usize = 64;

fn check_decimals(decimals: usize) -> PyResult<()> {
    if decimals > MAX_DECIMALS {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "decimals: at most {MAX_DECIMALS}, got {decimals}"
        )));
    }
    Ok(())
}

/// One JSON array per row of a 2-D float32 or float64 array: `decimals`
/// places, `null` for NaN and infinities.
#[pyfunction]
#[pyo3(signature = (values, decimals = 3))]
pub fn json_float_rows<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyAny>,
    decimals: usize,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    check_decimals(decimals)?;
    if let Ok(array) = values.extract::<PyReadonlyArray2<'py, f32>>() {
        let (rows, width) = (array.shape()[0], array.shape()[1]);
        let flat = array.as_slice().map_err(|_| contiguous())?;
        let (mut text, mut ends) = (Vec::new(), Vec::new());
        let mut answer = Vec::with_capacity(rows);
        for first in (0..rows).step_by(ROWS_AT_ONCE) {
            let count = ROWS_AT_ONCE.min(rows - first);
            let block = &flat[first * width..(first + count) * width];
            py.detach(|| float_rows_into(&mut text, &mut ends, block, count, decimals));
            let mut start = 0;
            for &end in &ends {
                answer.push(PyBytes::new(py, &text[start..end]));
                start = end;
            }
        }
        return Ok(answer);
    }
    let Ok(array) = values.extract::<PyReadonlyArray2<'py, f64>>() else {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "values: expected a 2-D float32 or float64 NumPy array",
        ));
    };
    let (rows, width) = (array.shape()[0], array.shape()[1]);
    let flat = array.as_slice().map_err(|_| contiguous())?;
    let texts: Vec<Vec<u8>> = py.detach(|| {
        (0..rows)
            .map(|r| {
                let mut out = Vec::new();
                float64_array(&mut out, &flat[r * width..(r + 1) * width], decimals);
                out
            })
            .collect()
    });
    Ok(texts.iter().map(|row| PyBytes::new(py, row)).collect())
}

fn contiguous() -> PyErr {
    pyo3::exceptions::PyValueError::new_err("values: the array must be C-contiguous and aligned")
}
