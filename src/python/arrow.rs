//! A read's result as Arrow data, handed over through the Arrow PyCapsule
//! interface (`__arrow_c_stream__`, `__arrow_c_array__`) without a copy.
//!
//! The table is a `time` column (`timestamp[unit, tz=UTC]`) and one
//! float32 column per row of `values`, named as `to_pandas()` names it.
//! Each float32 column is an Arrow buffer over that row of the NumPy array
//! itself: the buffer holds a reference to the array and gives it back
//! when the last consumer releases it. Only the time column (the grid
//! `start + i * step`, computed) and, when NaN is asked to be null, the
//! validity bitmaps are new memory.
//!
//! Invariant: every buffer handed out points into an array it keeps alive;
//! nothing here writes to the values.

use std::ptr::NonNull;
use std::sync::Arc;

use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use arrow_array::ffi_stream::FFI_ArrowArrayStream;
use arrow_array::types::{
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow_array::{
    Array, ArrayRef, Float32Array, PrimitiveArray, RecordBatch, RecordBatchIterator, StructArray,
};
use arrow_buffer::{BooleanBuffer, Buffer, MutableBuffer, NullBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Field, Schema, TimeUnit};
use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict, PyTuple};

/// Capsule names fixed by the Arrow PyCapsule interface.
const STREAM_CAPSULE: &std::ffi::CStr = c"arrow_array_stream";
const SCHEMA_CAPSULE: &std::ffi::CStr = c"arrow_schema";
const ARRAY_CAPSULE: &std::ffi::CStr = c"arrow_array";

/// A NumPy array that Arrow buffers point into, kept alive until Arrow
/// frees the last of them.
struct Owner(Option<Py<PyAny>>);

// Arrow asks its allocations to be unwind-safe; the owner is only a
// reference count, untouched until it is dropped.
impl std::panic::RefUnwindSafe for Owner {}

impl Drop for Owner {
    fn drop(&mut self) {
        // A consumer may release the data on a thread of its own. Attach
        // (as pyarrow does for its NumPy-backed buffers) so the array is
        // freed now; while the interpreter shuts down, PyO3 defers the
        // decrement instead.
        let mut array = self.0.take();
        let _ = Python::try_attach(|_| drop(array.take()));
    }
}

/// What a result's table is built from, read off the `ReadResult`.
pub struct Columns<'py> {
    /// 1-D (one series) or 2-D (a row per series); made C-contiguous
    /// float32 first if it is not (only then copied).
    pub values: Bound<'py, PyAny>,
    /// The tick of each value of a row (int64 ticks of `unit`).
    pub ticks: Bound<'py, PyAny>,
    /// "s", "ms", "us" or "ns".
    pub unit: String,
    /// One column name per series.
    pub names: Vec<String>,
}

fn arrow_error(error: ArrowError) -> PyErr {
    PyRuntimeError::new_err(format!("cannot build the Arrow table: {error}"))
}

/// `array` as float32 (or int64), C-contiguous and aligned: the array itself
/// when it already is, as every array a read returns is.
fn required<'py>(array: &Bound<'py, PyAny>, dtype: &str) -> PyResult<Bound<'py, PyAny>> {
    let py = array.py();
    let kwargs = PyDict::new(py);
    kwargs.set_item("dtype", dtype)?;
    kwargs.set_item("requirements", "CA")?;
    py.import("numpy")?
        .getattr("require")?
        .call((array,), Some(&kwargs))
}

/// An Arrow buffer over `len` bytes of `array` from `offset`, sharing them.
fn shared<T: numpy::Element>(
    array: &Bound<'_, PyArrayDyn<T>>,
    offset: usize,
    len: usize,
) -> PyResult<Buffer> {
    let size = std::mem::size_of::<T>();
    let total = array.len() * size;
    if offset + len > total {
        return Err(PyValueError::new_err(
            "cannot share an array shorter than its shape says",
        ));
    }
    let base = array.data().cast::<u8>();
    let owner = Arc::new(Owner(Some(array.clone().into_any().unbind())));
    // A zero-length array may have a null data pointer; Arrow wants a
    // dangling, aligned one then.
    let Some(start) = NonNull::new(base) else {
        return Ok(MutableBuffer::new(0).into());
    };
    // SAFETY: `start + offset .. + len` lies inside the array's data (checked
    // above), which lives as long as `owner`, and nothing here writes to it.
    Ok(unsafe { Buffer::from_custom_allocation(start.add(offset), len, owner) })
}

fn time_unit(unit: &str) -> PyResult<TimeUnit> {
    Ok(match unit {
        "s" => TimeUnit::Second,
        "ms" => TimeUnit::Millisecond,
        "us" => TimeUnit::Microsecond,
        "ns" => TimeUnit::Nanosecond,
        other => {
            return Err(PyValueError::new_err(format!(
                "unit: expected 's', 'ms', 'us' or 'ns', got {other:?}"
            )));
        }
    })
}

/// The time column: the ticks as `timestamp[unit, tz=UTC]`, sharing their array.
fn time_column(ticks: &Bound<'_, PyAny>, unit: TimeUnit) -> PyResult<ArrayRef> {
    let ticks = required(ticks, "int64")?;
    let ticks = ticks.cast::<PyArrayDyn<i64>>()?;
    if ticks.ndim() != 1 {
        return Err(PyValueError::new_err("ticks: expected a 1-D array"));
    }
    let n = ticks.len();
    let values = ScalarBuffer::<i64>::new(shared(ticks, 0, n * 8)?, 0, n);
    fn column<T: arrow_array::types::ArrowTimestampType>(values: ScalarBuffer<i64>) -> ArrayRef {
        Arc::new(PrimitiveArray::<T>::new(values, None).with_timezone("UTC"))
    }
    Ok(match unit {
        TimeUnit::Second => column::<TimestampSecondType>(values),
        TimeUnit::Millisecond => column::<TimestampMillisecondType>(values),
        TimeUnit::Microsecond => column::<TimestampMicrosecondType>(values),
        TimeUnit::Nanosecond => column::<TimestampNanosecondType>(values),
    })
}

/// The result as one record batch: `time`, then one float32 column per
/// series. With `nan_as_null`, NaN values are also marked null (a new
/// validity bitmap; the values stay shared).
pub fn record_batch(columns: &Columns<'_>, nan_as_null: bool) -> PyResult<RecordBatch> {
    let unit = time_unit(&columns.unit)?;
    let values = required(&columns.values, "float32")?;
    let values = values.cast::<PyArrayDyn<f32>>()?;
    let (rows, len) = match values.shape() {
        [len] => (1, *len),
        [rows, len] => (*rows, *len),
        shape => {
            return Err(PyValueError::new_err(format!(
                "values: expected a 1-D or 2-D array, got {} dimensions",
                shape.len()
            )));
        }
    };
    if columns.names.len() != rows {
        return Err(PyValueError::new_err(format!(
            "keys: {} names for {rows} rows of values",
            columns.names.len()
        )));
    }
    let time = time_column(&columns.ticks, unit)?;
    if time.len() != len {
        return Err(PyValueError::new_err(format!(
            "ticks: {} times for {len} values per row",
            time.len()
        )));
    }
    let mut fields = vec![Field::new(
        "time",
        DataType::Timestamp(unit, Some("UTC".into())),
        false,
    )];
    let mut arrays = vec![time];
    for (row, name) in columns.names.iter().enumerate() {
        let buffer = shared(values, row * len * 4, len * 4)?;
        let data = ScalarBuffer::<f32>::new(buffer, 0, len);
        let nulls = if nan_as_null {
            let valid = NullBuffer::new(BooleanBuffer::collect_bool(len, |i| !data[i].is_nan()));
            (valid.null_count() > 0).then_some(valid)
        } else {
            None
        };
        fields.push(Field::new(name, DataType::Float32, nan_as_null));
        arrays.push(Arc::new(Float32Array::new(data, nulls)));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(arrow_error)
}

/// The batch as an `arrow_array_stream` capsule (one batch).
pub fn stream_capsule<'py>(py: Python<'py>, batch: RecordBatch) -> PyResult<Bound<'py, PyCapsule>> {
    let schema = batch.schema();
    let reader = RecordBatchIterator::new([Ok(batch)], schema);
    let stream = FFI_ArrowArrayStream::new(Box::new(reader));
    // The consumer moves the stream out (leaving a released one behind);
    // the capsule's destructor drops what is left, releasing it if unused.
    PyCapsule::new_with_value(py, stream, STREAM_CAPSULE)
}

/// The batch as a struct array: an (`arrow_schema`, `arrow_array`) pair of capsules.
pub fn array_capsules<'py>(py: Python<'py>, batch: RecordBatch) -> PyResult<Bound<'py, PyTuple>> {
    let array = StructArray::from(batch);
    let schema = FFI_ArrowSchema::try_from(array.data_type()).map_err(arrow_error)?;
    let array = FFI_ArrowArray::new(&array.to_data());
    let schema = PyCapsule::new_with_value(py, schema, SCHEMA_CAPSULE)?;
    let array = PyCapsule::new_with_value(py, array, ARRAY_CAPSULE)?;
    PyTuple::new(py, [schema.into_any(), array.into_any()])
}
