//! Series keys, paths and read times as Python passes them, converted here
//! so that a read by handle or by (metric, path) runs no Python code.
//!
//! The rules are those of `metricstore._convert`, which re-exports `to_path`
//! from here (one implementation): a series key is a handle (an `int` or a
//! NumPy integer scalar, as iterating an array of handles gives; not a bool
//! or another int subclass) or a `(metric, path)` tuple; a path is a tuple
//! or list of str, or one "/"-joined str ("" and () are the root). A time
//! that is exactly an `int` in the int64 range is taken as ticks here;
//! anything else (datetimes, NumPy scalars, ISO strings, and the errors for
//! bools, floats and timedeltas) goes to `_convert.to_ticks`, so each rule
//! exists once. Every error names the argument, as `series`, `series[i]` or
//! `series[i][1]`.
//!
//! The series of a write (`SeriesList`) are converted here too, in one pass
//! that copies every name of every key into one buffer: a collector's first
//! tick names thousands of new keys, and converting them in Python, then
//! into a `String` per name, cost more than creating the series.

use std::fmt;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyInt, PyList, PyString, PyTuple, PyType};

use crate::engine::{SeriesId, SeriesKeys, Target};

/// A read target as Python gave it: a handle, or (metric, path).
pub enum PyTarget {
    Handle(SeriesId),
    Path(String, Vec<String>),
}

impl PyTarget {
    pub fn as_target(&self) -> Target<'_> {
        match self {
            PyTarget::Handle(id) => Target::Series(*id),
            PyTarget::Path(metric, path) => Target::Path { metric, path },
        }
    }
}

/// The argument a value came in, as errors name it: `series`, or
/// `series[i]` for the i-th key of a list.
#[derive(Clone, Copy)]
pub struct Argument {
    pub name: &'static str,
    pub index: Option<usize>,
}

impl Argument {
    pub const fn named(name: &'static str) -> Self {
        Argument { name, index: None }
    }
}

impl fmt::Display for Argument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "{}[{i}]", self.name),
            None => f.write_str(self.name),
        }
    }
}

/// `type(value).__name__`, as the Python layer's messages show it.
fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "object".to_owned(), |name| name.to_string())
}

/// A path as a list of names. `argument` is only formatted for an error.
pub fn path(value: &Bound<'_, PyAny>, argument: &dyn Fn() -> String) -> PyResult<Vec<String>> {
    let mut names = Vec::new();
    each_name(value, argument, |name| names.push(name.to_owned()))?;
    Ok(names)
}

/// Calls `found` with each name of a path, borrowed from Python's strings.
fn each_name(
    value: &Bound<'_, PyAny>,
    argument: &dyn Fn() -> String,
    mut found: impl FnMut(&str),
) -> PyResult<()> {
    if let Ok(text) = value.cast::<PyString>() {
        let text = text.to_str()?;
        if !text.is_empty() {
            text.split('/').for_each(found);
        }
        return Ok(());
    }
    let mut name = |i: usize, name: Bound<'_, PyAny>| match name.cast::<PyString>() {
        Ok(name) => {
            found(name.to_str()?);
            Ok(())
        }
        Err(_) => Err(PyTypeError::new_err(format!(
            "{}: element {i} is a {}, not a str",
            argument(),
            type_name(&name)
        ))),
    };
    if let Ok(tuple) = value.cast::<PyTuple>() {
        return tuple.iter().enumerate().try_for_each(|(i, n)| name(i, n));
    }
    if let Ok(list) = value.cast::<PyList>() {
        return list.iter().enumerate().try_for_each(|(i, n)| name(i, n));
    }
    Err(PyTypeError::new_err(format!(
        "{}: expected a tuple of names or a '/'-joined str, got {}",
        argument(),
        type_name(value)
    )))
}

static NUMPY_INTEGER: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Whether `value` is a handle's type: exactly an `int`, or a NumPy integer
/// scalar (`numpy.integer` excludes `numpy.bool_`).
fn is_handle(value: &Bound<'_, PyAny>) -> PyResult<bool> {
    if value.is_exact_instance_of::<PyInt>() {
        return Ok(true);
    }
    // Bools and other int subclasses are not handles; a tuple (a key, the
    // other common case) is not worth asking NumPy about.
    if value.is_instance_of::<PyInt>() || value.is_instance_of::<PyTuple>() {
        return Ok(false);
    }
    value.is_instance(NUMPY_INTEGER.import(value.py(), "numpy", "integer")?)
}

/// A handle's value, once `is_handle` said it is one.
fn handle_value(value: &Bound<'_, PyAny>, argument: Argument) -> PyResult<SeriesId> {
    value.extract::<SeriesId>().map_err(|_| {
        PyValueError::new_err(format!(
            "{argument}: {value} is not a series handle of this store"
        ))
    })
}

/// A series handle (an int or a NumPy integer); anything else is a
/// TypeError naming `argument`.
pub fn handle(value: &Bound<'_, PyAny>, argument: Argument) -> PyResult<SeriesId> {
    if is_handle(value)? {
        return handle_value(value, argument);
    }
    Err(PyTypeError::new_err(format!(
        "{argument}: expected a series handle (an int), got {}",
        type_name(value)
    )))
}

/// A series key: a handle or a (metric, path) pair.
pub fn target(value: &Bound<'_, PyAny>, argument: Argument) -> PyResult<PyTarget> {
    if is_handle(value)? {
        return handle_value(value, argument).map(PyTarget::Handle);
    }
    if let Ok(pair) = value.cast::<PyTuple>()
        && pair.len() == 2
    {
        let metric = pair.get_item(0)?;
        if let Ok(metric) = metric.cast::<PyString>() {
            let path = path(&pair.get_item(1)?, &|| format!("{argument}[1]"))?;
            return Ok(PyTarget::Path(metric.to_str()?.to_owned(), path));
        }
    }
    Err(PyTypeError::new_err(format!(
        "{argument}: expected a series handle or a (metric, path) pair, got {}",
        type_name(value)
    )))
}

/// The keys of a multi-series read, and the list of them a result keeps.
/// One key alone is refused rather than read as a list of two.
pub fn targets<'py>(series: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyList>, Vec<PyTarget>)> {
    if (series.is_instance_of::<PyString>() || series.is_instance_of::<PyTuple>())
        && series.len()? == 2
        && series.get_item(0)?.is_instance_of::<PyString>()
    {
        return Err(PyTypeError::new_err(
            "series: expected a list of series keys; wrap one key in a list",
        ));
    }
    let keys = PyList::empty(series.py());
    let mut targets = Vec::new();
    for (i, key) in series.try_iter()?.enumerate() {
        let key = key?;
        targets.push(target(
            &key,
            Argument {
                name: "series",
                index: Some(i),
            },
        )?);
        keys.append(key)?;
    }
    Ok((keys, targets))
}

static TO_TICKS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static TO_FREQUENCY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `value` as an int when it is exactly a Python int that `accept` takes;
/// anything else goes to `function` of `metricstore._convert` (cached in
/// `cell`), which converts it or raises the error that names `argument`.
fn int_or_convert(
    value: &Bound<'_, PyAny>,
    unit: &Bound<'_, PyString>,
    argument: &str,
    accept: fn(i64) -> bool,
    cell: &'static PyOnceLock<Py<PyAny>>,
    function: &str,
) -> PyResult<i64> {
    if value.is_exact_instance_of::<PyInt>()
        && let Ok(ticks) = value.extract::<i64>()
        && accept(ticks)
    {
        return Ok(ticks);
    }
    cell.import(value.py(), "metricstore._convert", function)?
        .call1((value, unit, argument))?
        .extract()
}

/// One timestamp as ticks of `unit`.
pub fn ticks(
    value: &Bound<'_, PyAny>,
    unit: &Bound<'_, PyString>,
    argument: &str,
) -> PyResult<i64> {
    int_or_convert(
        value,
        unit,
        argument,
        |t| t != i64::MIN,
        &TO_TICKS,
        "to_ticks",
    )
}

/// A positive number of ticks of `unit` (an int, or an exact timedelta).
pub fn frequency(
    value: &Bound<'_, PyAny>,
    unit: &Bound<'_, PyString>,
    argument: &str,
) -> PyResult<i64> {
    int_or_convert(
        value,
        unit,
        argument,
        |t| t > 0,
        &TO_FREQUENCY,
        "to_frequency",
    )
}

/// A read's `min_count`: None is 0; otherwise an int (or NumPy integer,
/// not a bool) of at least 0. One above any count a slot can have (2^32 - 1)
/// is taken as that, which no count reaches.
pub fn min_count(value: Option<&Bound<'_, PyAny>>) -> PyResult<u32> {
    let Some(value) = value else {
        return Ok(0);
    };
    let wrong = || {
        PyValueError::new_err(format!(
            "min_count: expected an int of at least 0, got {}",
            value
                .repr()
                .map_or_else(|_| "?".to_owned(), |r| r.to_string())
        ))
    };
    if value.is_instance_of::<PyBool>() {
        return Err(wrong());
    }
    let n: i128 = value.extract().map_err(|_| wrong())?;
    if n < 0 {
        return Err(wrong());
    }
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// `metricstore._convert.to_path`: a path as a list of names, by the rules
/// above; errors name `argument`.
#[pyfunction]
pub fn to_path(path: &Bound<'_, PyAny>, argument: &str) -> PyResult<Vec<String>> {
    self::path(path, &|| argument.to_owned())
}

/// The series of a write as Python gave them (`Store.write`, `write_tick`,
/// `write_points`): a list that mixes handles and (metric, path) keys in any
/// order, checked and converted when built. The keys' series are found or
/// created later, by `Store.series_many`, once the write's other arguments
/// are converted too: a call rejected for any argument creates no series.
///
/// A handle is an `int` (not a bool) or a NumPy integer, from 0 to 2^32 - 1;
/// a key a tuple of a str and a path. Errors name `argument[i]` (`argument`
/// alone when `one`, for `write`'s single key), a key's path
/// `argument[i][1]`.
#[pyclass(frozen, module = "metricstore._core", name = "SeriesList")]
pub struct SeriesList {
    /// One per entry; 0 where a key stands until it is resolved.
    pub handles: Vec<SeriesId>,
    /// The entries that are keys, in order.
    pub at: Vec<usize>,
    pub keys: SeriesKeys,
}

#[pymethods]
impl SeriesList {
    #[new]
    #[pyo3(signature = (series, argument, one = false))]
    fn new(series: &Bound<'_, PyAny>, argument: &str, one: bool) -> PyResult<Self> {
        let count = series.len()?;
        let mut list = SeriesList {
            handles: Vec::with_capacity(count),
            at: Vec::new(),
            // A key is usually a metric and two or three names of a few
            // bytes: enough not to grow for most first ticks.
            keys: SeriesKeys::with_capacity(count, 4 * count, 24 * count),
        };
        let name = |i: usize| {
            if one {
                argument.to_owned()
            } else {
                format!("{argument}[{i}]")
            }
        };
        for (i, entry) in series.try_iter()?.enumerate() {
            let entry = entry?;
            if is_write_handle(&entry)? {
                let handle = entry.extract::<SeriesId>().map_err(|_| {
                    let number = entry
                        .py()
                        .get_type::<PyInt>()
                        .call1((&entry,))
                        .map_or_else(|_| entry.to_string(), |n| n.to_string());
                    PyValueError::new_err(format!(
                        "{}: {number} is not a series handle of this store",
                        name(i)
                    ))
                })?;
                list.handles.push(handle);
                continue;
            }
            if let Ok(pair) = entry.cast::<PyTuple>()
                && pair.len() == 2
                && let Ok(metric) = pair.get_item(0)?.cast_into::<PyString>()
            {
                list.keys.push_metric(metric.to_str()?);
                let keys = &mut list.keys;
                each_name(&pair.get_item(1)?, &|| format!("{}[1]", name(i)), |n| {
                    keys.push_name(n)
                })?;
                list.handles.push(0);
                list.at.push(i);
                continue;
            }
            return Err(PyTypeError::new_err(format!(
                "{}: expected a series handle or a (metric, path) pair, got {}",
                name(i),
                type_name(&entry)
            )));
        }
        Ok(list)
    }

    fn __len__(&self) -> usize {
        self.handles.len()
    }
}

/// Whether a write takes `value` as a handle: an `int` that is not a bool
/// (so an `IntEnum` too), or a NumPy integer scalar.
fn is_write_handle(value: &Bound<'_, PyAny>) -> PyResult<bool> {
    if value.is_exact_instance_of::<PyInt>() {
        return Ok(true);
    }
    if value.is_instance_of::<PyInt>() {
        return Ok(!value.is_instance_of::<PyBool>());
    }
    if value.is_instance_of::<PyTuple>() {
        return Ok(false);
    }
    value.is_instance(NUMPY_INTEGER.import(value.py(), "numpy", "integer")?)
}
