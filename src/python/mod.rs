//! The PyO3 binding layer: the `metricstore._core` extension module.
//!
//! It converts arguments (strictly: float32 and int64/uint32 arrays, the
//! lenient conversions live in `metricstore/_convert.py`), releases the GIL
//! around every call into the engine, and maps engine errors to the
//! exception classes of `metricstore.exceptions`.

mod arrow;
mod ccbackend;
mod errors;
mod json;
mod keys;
mod progress;
mod result;
mod store;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
mod _core {
    #[pymodule_export]
    use super::ccbackend::PyCcHost;
    #[pymodule_export]
    use super::ccbackend::cc_encode_host;
    #[pymodule_export]
    use super::json::json_float_rows;
    #[pymodule_export]
    use super::keys::SeriesList;
    #[pymodule_export]
    use super::keys::to_path;
    #[pymodule_export]
    use super::progress::PyOpenProgress;
    #[pymodule_export]
    use super::progress::recovery_bytes;
    #[pymodule_export]
    use super::result::PyReadResult;
    #[pymodule_export]
    use super::store::PyStore;
    #[pymodule_export]
    use super::store::inspect;

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add("CHUNK_SLOTS", crate::engine::CHUNK_SLOTS)?;
        m.add("MAX_READ_SLOTS", crate::engine::MAX_READ_SLOTS)?;
        Ok(())
    }
}
