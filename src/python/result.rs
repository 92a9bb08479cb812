//! `metricstore.ReadResult`: what a read returns, built by the core itself.
//!
//! A read used to return a tuple that Python code then wrapped in a result
//! object; that wrapping cost as much as the read of a 1,000-point window.
//! So the class lives here and the core returns it directly. What needs
//! pandas, xarray, matplotlib or HTML stays in Python (`_frames`,
//! `_display`), called from the methods below.

use numpy::{IntoPyArray, PyReadonlyArrayDyn};
use pyo3::PyTraverseError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict, PyList, PyString, PyTuple};

use arrow_array::RecordBatch;

use super::arrow::{self, Columns};

/// Values of a range read on the grid: ``values[..., i]`` is at ``start + i * step``.
///
/// ``values`` is float32 with NaN where nothing is stored; it is 1-D for
/// :meth:`Store.read` and 2-D (one row per series, in the order asked) for
/// :meth:`Store.read_many`. ``start`` and ``step`` are ticks of
/// ``time_unit`` (the store's). ``unit`` is the unit of the values, as the
/// metric was defined with it (``"GF/s"``), or None when it has none or the
/// rows' metrics do not share one. ``series`` is what the read was given
/// (with each pattern key of ``read_many`` replaced by the keys it
/// matched); ``keys`` names each row.
///
/// ``counts`` says how many stored samples are behind each value (see
/// :attr:`counts`), ``sources`` how many series each row combines, and
/// ``method`` how it was resampled (None: the grid itself).
///
/// In a notebook a result shows itself as a table; :meth:`to_pandas`,
/// :meth:`to_xarray` and :meth:`plot` hand it on (pandas, xarray and
/// matplotlib are optional extras). It is also Arrow data (the Arrow
/// PyCapsule interface), so ``pyarrow.table(r)``, ``polars.DataFrame(r)``
/// and DuckDB's ``SELECT ... FROM r`` take it without copying the values.
#[pyclass(module = "metricstore.store", name = "ReadResult")]
pub struct PyReadResult {
    #[pyo3(get, set)]
    values: Py<PyAny>,
    #[pyo3(get, set)]
    start: i64,
    #[pyo3(get, set)]
    step: i64,
    #[pyo3(get, set)]
    time_unit: Py<PyString>,
    #[pyo3(get, set)]
    series: Py<PyAny>,
    /// The unit of the values; None when unknown or not shared.
    #[pyo3(get, set)]
    unit: Option<Py<PyString>>,
    /// Each row's key when whoever built the result knew them.
    keys: Option<Py<PyAny>>,
    /// The time of each value of an LTTB read (not on the grid).
    times: Option<Py<PyAny>>,
    /// The samples behind each value; None: one where `values` holds one.
    counts: Option<Py<PyAny>>,
    /// How many series each row combines; None: one each.
    sources: Option<Py<PyAny>>,
    /// The resampling method: "avg", "min", "max", "lttb", or None for a
    /// read of the grid itself.
    #[pyo3(get)]
    method: Option<Py<PyString>>,
    /// Ticks between the stored samples; None: `step`.
    frequency: Option<i64>,
    /// Values whose count is below this are NaN (0: only those with none).
    #[pyo3(get)]
    min_count: u64,
}

/// What a read saw besides its values (see [`PyReadResult::with_coverage`]).
pub struct Coverage<'py> {
    pub counts: Option<Bound<'py, PyAny>>,
    /// None: one series (a 1-D read of one stored series).
    pub sources: Option<Bound<'py, PyAny>>,
    pub method: Option<&'static str>,
    pub frequency: i64,
    pub min_count: u32,
}

impl PyReadResult {
    /// A result as the core's reads build it.
    pub fn new(
        values: Bound<'_, PyAny>,
        start: i64,
        step: i64,
        time_unit: &Bound<'_, PyString>,
        series: Bound<'_, PyAny>,
        times: Option<Bound<'_, PyAny>>,
        unit: Option<String>,
    ) -> Self {
        let py = values.py();
        PyReadResult {
            values: values.unbind(),
            start,
            step,
            time_unit: time_unit.clone().unbind(),
            series: series.unbind(),
            unit: unit.map(|u| PyString::new(py, &u).unbind()),
            keys: None,
            times: times.map(Bound::unbind),
            counts: None,
            sources: None,
            method: None,
            frequency: None,
            min_count: 0,
        }
    }

    /// The result with what its read saw: counts (None for a read of one
    /// stored series without min_count), sources, method and frequency.
    /// Fields left at their defaults cost a plain read nothing.
    pub fn with_coverage(mut self, py: Python<'_>, coverage: Coverage<'_>) -> Self {
        self.counts = coverage.counts.map(Bound::unbind);
        self.sources = coverage.sources.map(Bound::unbind);
        self.method = coverage.method.map(|m| PyString::intern(py, m).unbind());
        self.frequency = (coverage.frequency != self.step).then_some(coverage.frequency);
        self.min_count = coverage.min_count.into();
        self
    }

    fn len(&self, py: Python<'_>) -> PyResult<usize> {
        self.values
            .bind(py)
            .getattr("shape")?
            .get_item(-1)?
            .extract()
    }

    /// The result as one Arrow record batch (see `arrow.rs`).
    fn arrow_batch(slf: &Bound<'_, Self>, nan_as_null: bool) -> PyResult<RecordBatch> {
        let py = slf.py();
        let names = Self::call(py, "metricstore._frames", "column_names", (slf,), None)?;
        let this = slf.borrow();
        let columns = Columns {
            values: this.values.bind(py).clone(),
            ticks: this.ticks(py)?,
            unit: this.time_unit.bind(py).to_str()?.to_owned(),
            names: names.extract()?,
        };
        arrow::record_batch(&columns, nan_as_null)
    }

    fn call<'py>(
        py: Python<'py>,
        module: &str,
        function: &str,
        args: impl pyo3::call::PyCallArgs<'py>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        py.import(module)?.getattr(function)?.call(args, kwargs)
    }
}

#[pymethods]
impl PyReadResult {
    #[new]
    #[pyo3(signature = (values, start, step, time_unit, series, keys = None, times = None,
                        counts = None, sources = None, method = None, frequency = None,
                        min_count = 0, unit = None))]
    #[allow(clippy::too_many_arguments)]
    fn py_new(
        values: Py<PyAny>,
        start: i64,
        step: i64,
        time_unit: Py<PyString>,
        series: Py<PyAny>,
        keys: Option<Py<PyAny>>,
        times: Option<Py<PyAny>>,
        counts: Option<Py<PyAny>>,
        sources: Option<Py<PyAny>>,
        method: Option<Py<PyString>>,
        frequency: Option<i64>,
        min_count: u64,
        unit: Option<Py<PyString>>,
    ) -> Self {
        PyReadResult {
            values,
            start,
            step,
            time_unit,
            series,
            unit,
            keys,
            times,
            counts,
            sources,
            method,
            frequency,
            min_count,
        }
    }

    /// How many stored samples are behind each value: an unsigned int array
    /// (``uint32``) of the shape of ``values``.
    ///
    /// For a read of the grid, the number of series with a sample in the
    /// slot: 0 or 1 for one series, up to :attr:`sources` for an aggregated
    /// path. For a resampled read (avg, min, max), the samples of the
    /// bucket: the sum of its slots' counts, up to ``sources * step /
    /// frequency``; for LTTB, the count of the slot each kept sample is
    /// from. A value is NaN where its count is below ``min_count`` (the
    /// count itself is kept), and wherever the count is 0.
    #[getter]
    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Some(counts) = &self.counts {
            return Ok(counts.bind(py).clone());
        }
        let values: PyReadonlyArrayDyn<'py, f32> = self.values.bind(py).extract()?;
        let counts = values.as_array().mapv(|v| u32::from(!v.is_nan()));
        Ok(counts.into_pyarray(py).into_any())
    }

    /// How many stored series each row combines: an int for a 1-D result,
    /// a ``uint32`` array with one entry per row for a 2-D one.
    #[getter]
    fn sources<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Some(sources) = &self.sources {
            return Ok(sources.bind(py).clone());
        }
        let shape: Vec<usize> = self.values.bind(py).getattr("shape")?.extract()?;
        Ok(match shape.as_slice() {
            [_] => 1u32.into_pyobject(py)?.into_any(),
            [rows, _] => vec![1u32; *rows].into_pyarray(py).into_any(),
            _ => py.None().into_bound(py),
        })
    }

    /// Ticks between the stored samples read: ``step`` for a read of the
    /// grid, less for a resampled one (``step / frequency`` slots a bucket).
    #[getter]
    fn frequency(&self) -> i64 {
        self.frequency.unwrap_or(self.step)
    }

    /// The (metric, path) of each row, in order (one entry for a 1-D read).
    ///
    /// A row read by handle is the handle (an int) unless whoever built the
    /// result passed the rows' keys as ``keys``.
    #[getter]
    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let rows = match &self.keys {
            Some(keys) => keys.bind(py).clone(),
            None if self.values.bind(py).getattr("ndim")?.extract::<i64>()? == 1 => {
                PyList::new(py, [&self.series])?.into_any()
            }
            None => self.series.bind(py).clone(),
        };
        Self::call(py, "metricstore._frames", "series_keys", (rows,), None)
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.len(py)
    }

    /// The tick just past the last slot (or, for an LTTB read, just past
    /// the last kept sample).
    #[getter]
    fn stop(&self, py: Python<'_>) -> PyResult<i128> {
        if let Some(times) = &self.times {
            let times = times.bind(py);
            if times.len()? == 0 {
                return Ok(self.start.into());
            }
            return Ok(times.get_item(-1)?.extract::<i128>()? + 1);
        }
        Ok(i128::from(self.start) + self.len(py)? as i128 * i128::from(self.step))
    }

    /// The time of each column in ticks of the store unit: the grid
    /// ``start + i * step``, or for an LTTB read the kept samples' times.
    #[getter]
    fn ticks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Some(times) = &self.times {
            return Ok(times.bind(py).clone());
        }
        // Wrapping like NumPy's int64 arithmetic, which the grid never reaches.
        let ticks: Vec<i64> = (0..self.len(py)? as i64)
            .map(|i| self.start.wrapping_add(i.wrapping_mul(self.step)))
            .collect();
        Ok(ticks.into_pyarray(py).into_any())
    }

    /// The time of each column as ``datetime64`` in the store unit.
    #[getter]
    fn timestamps<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let dtype = format!("datetime64[{}]", self.time_unit.bind(py));
        self.ticks(py)?.call_method1("astype", (dtype,))
    }

    fn __repr__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.borrow();
        let shape = this.values.bind(py).getattr("shape")?;
        let shape = shape
            .try_iter()?
            .map(|n| Ok(n?.str()?.to_string()))
            .collect::<PyResult<Vec<String>>>()?
            .join("x");
        let unit = match &this.unit {
            Some(unit) => format!(", unit={}", unit.bind(py).repr()?),
            None => String::new(),
        };
        let head = format!(
            "ReadResult(series={}, start={}, step={}, time_unit={}{unit}, values=<float32 {shape}>",
            series_repr(this.series.bind(py))?,
            this.start,
            this.step,
            this.time_unit.bind(py).repr()?,
        );
        drop(this);
        // Mean, coverage and resampling, worded once for both reprs.
        Self::call(
            py,
            "metricstore._display",
            "read_result_text",
            (slf, head),
            None,
        )
    }

    fn _repr_html_<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::call(
            slf.py(),
            "metricstore._display",
            "read_result_html",
            (slf,),
            None,
        )
    }

    /// A ``pandas.Series`` (1-D read) or ``DataFrame`` (one column per series).
    ///
    /// The index is a ``DatetimeIndex`` named "time" in the store unit,
    /// naive (its times are UTC) unless ``tz`` names a time zone ("UTC",
    /// "Europe/Berlin" or a ``tzinfo``): it is then tz-aware, the same
    /// instants shown in that zone. The values are these float32 values
    /// (NaN where missing); the columns (or the Series name) are
    /// ``"metric:path/parts"``, or the handle for a row read by handle whose
    /// key the result does not know.
    /// With ``counts=True`` it is a DataFrame whose columns are
    /// ``"value"`` and ``"count"`` (1-D read), or a two-level column index
    /// (``"value"``/``"count"``, then the series): ``frame["count"]`` holds
    /// :attr:`counts` as uint32.
    /// Needs ``pip install 'metricstore[pandas]'``.
    #[pyo3(signature = (*, tz = None, counts = false))]
    fn to_pandas<'py>(
        slf: &Bound<'py, Self>,
        tz: Option<Bound<'py, PyAny>>,
        counts: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        Self::call(
            slf.py(),
            "metricstore._frames",
            "to_pandas",
            (slf, tz, counts),
            None,
        )
    }

    /// An ``xarray.DataArray`` with dims ("time",) or ("series", "time"):
    /// the values themselves, not a copy.
    ///
    /// Coordinates: ``time`` (datetime64 in the store unit), ``series``
    /// (names as in :meth:`to_pandas`), and when every row's key is known:
    /// ``metric``, ``path`` ("/"-joined) and one coordinate per name in
    /// ``levels`` holding that part of each path, so with
    /// ``levels=("cluster", "host")``, ``da.where(da.host == "e0102")`` and
    /// ``da.groupby("host")`` work. ``attrs`` hold the CF ``units`` of the
    /// values (when the result has a unit) and the grid: ``step`` and its
    /// ``time_unit``. Coverage rides along: a ``counts`` coordinate of the
    /// values' dims (:attr:`counts`, so ``da.where(da.counts >= 30)``
    /// works), a ``sources`` coordinate per series, and ``attrs``
    /// ``frequency``, ``min_count`` and ``method`` (for a resampled read).
    /// Needs ``pip install 'metricstore[xarray]'``.
    #[pyo3(signature = (levels = None))]
    fn to_xarray<'py>(
        slf: &Bound<'py, Self>,
        levels: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let levels = levels.unwrap_or_else(|| PyTuple::empty(py).into_any());
        Self::call(py, "metricstore._frames", "to_xarray", (slf, levels), None)
    }

    /// Plots each series over a date axis (gaps where values are missing)
    /// on ``ax`` (a matplotlib Axes) or a new figure, and returns the Axes.
    /// ``kwargs`` go to ``Axes.plot``; the legend is drawn for 2 to 12
    /// series unless ``legend`` says otherwise.
    /// ``label`` names the line of a one-series result (a list names each
    /// of many). A new figure is drawn at 100 dpi or more.
    /// Needs ``pip install 'metricstore[plot]'``.
    #[pyo3(signature = (ax = None, *, legend = None, **kwargs))]
    fn plot<'py>(
        slf: &Bound<'py, Self>,
        ax: Option<Bound<'py, PyAny>>,
        legend: Option<Bound<'py, PyAny>>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Self::call(
            slf.py(),
            "metricstore._frames",
            "plot",
            (slf, ax, legend),
            kwargs,
        )
    }

    /// Draws the rows (series by time) as a heatmap on ``ax`` or a new
    /// figure and returns the Axes; rows are labelled by the part of their
    /// path that differs (every k-th label when they would overlap). The
    /// colour scale spans the 2nd to 98th percentile of the values
    /// (``robust=False``: min to max), taken over the values with at least
    /// half the samples of a full bucket, so a short last bucket or a slot
    /// where few series report does not stretch it; ``vmin``/``vmax`` fix it.
    /// ``kwargs`` go to ``Axes.pcolormesh``.
    /// Needs ``pip install 'metricstore[plot]'``.
    #[pyo3(signature = (ax = None, *, robust = true, vmin = None, vmax = None,
                        colorbar = true, **kwargs))]
    fn heatmap<'py>(
        slf: &Bound<'py, Self>,
        ax: Option<Bound<'py, PyAny>>,
        robust: bool,
        vmin: Option<f64>,
        vmax: Option<f64>,
        colorbar: bool,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Self::call(
            slf.py(),
            "metricstore._frames",
            "heatmap",
            (slf, ax, robust, vmin, vmax, colorbar),
            kwargs,
        )
    }

    /// The result as an Arrow stream of one batch: a ``time`` column
    /// (``timestamp[unit, tz="UTC"]``) and one float32 column per series,
    /// named as :meth:`to_pandas` names them (a handle as its digits). The
    /// float32 columns share the memory of ``values``; NaN stays NaN (not
    /// null) unless ``nan_as_null``. ``requested_schema`` is ignored: the
    /// interface lets a producer keep its own schema, and this one has no
    /// other.
    #[pyo3(signature = (requested_schema = None, *, nan_as_null = false))]
    fn __arrow_c_stream__<'py>(
        slf: &Bound<'py, Self>,
        requested_schema: Option<Bound<'py, PyAny>>,
        nan_as_null: bool,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        arrow::stream_capsule(slf.py(), Self::arrow_batch(slf, nan_as_null)?)
    }

    /// The same table as one struct array: a pair of ``arrow_schema`` and
    /// ``arrow_array`` capsules (see :meth:`__arrow_c_stream__`).
    #[pyo3(signature = (requested_schema = None, *, nan_as_null = false))]
    fn __arrow_c_array__<'py>(
        slf: &Bound<'py, Self>,
        requested_schema: Option<Bound<'py, PyAny>>,
        nan_as_null: bool,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let _ = requested_schema;
        arrow::array_capsules(slf.py(), Self::arrow_batch(slf, nan_as_null)?)
    }

    /// A ``pyarrow.Table``: the ``time`` column and one float32 column per
    /// series, the values shared with ``values`` (see
    /// :meth:`__arrow_c_stream__`). With ``nan_as_null``, NaN is also null.
    /// Needs ``pip install 'metricstore[arrow]'``.
    #[pyo3(signature = (*, nan_as_null = false))]
    fn to_arrow<'py>(slf: &Bound<'py, Self>, nan_as_null: bool) -> PyResult<Bound<'py, PyAny>> {
        Self::call(
            slf.py(),
            "metricstore._frames",
            "to_arrow",
            (slf, nan_as_null),
            None,
        )
    }

    /// A ``polars.DataFrame`` of the same columns as :meth:`to_arrow`.
    /// With ``nan_as_null``, NaN is also null.
    /// Needs ``pip install 'metricstore[polars]'``.
    #[pyo3(signature = (*, nan_as_null = false))]
    fn to_polars<'py>(slf: &Bound<'py, Self>, nan_as_null: bool) -> PyResult<Bound<'py, PyAny>> {
        Self::call(
            slf.py(),
            "metricstore._frames",
            "to_polars",
            (slf, nan_as_null),
            None,
        )
    }

    /// Pickles as the constructor call that rebuilds it.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let this = slf.borrow();
        // More fields than a Rust tuple converts at once: the constructor's
        // arguments in its order, as one Python tuple.
        let args = PyTuple::new(
            py,
            [
                this.values.bind(py).clone(),
                this.start.into_pyobject(py)?.into_any(),
                this.step.into_pyobject(py)?.into_any(),
                this.time_unit.bind(py).clone().into_any(),
                this.series.bind(py).clone(),
                (&this.keys).into_pyobject(py)?.into_any(),
                (&this.times).into_pyobject(py)?.into_any(),
                (&this.counts).into_pyobject(py)?.into_any(),
                (&this.sources).into_pyobject(py)?.into_any(),
                (&this.method).into_pyobject(py)?.into_any(),
                this.frequency.into_pyobject(py)?.into_any(),
                this.min_count.into_pyobject(py)?.into_any(),
                (&this.unit).into_pyobject(py)?.into_any(),
            ],
        )?;
        (slf.get_type(), args).into_pyobject(py)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.values)?;
        visit.call(&self.time_unit)?;
        visit.call(&self.unit)?;
        visit.call(&self.series)?;
        visit.call(&self.keys)?;
        visit.call(&self.times)?;
        visit.call(&self.counts)?;
        visit.call(&self.sources)?;
        visit.call(&self.method)
    }

    fn __clear__(&mut self) {
        Python::attach(|py| {
            self.values = py.None();
            self.series = py.None();
        });
        self.keys = None;
        self.times = None;
        self.counts = None;
        self.sources = None;
        self.method = None;
    }
}

/// The keys of a result for its text repr: all of a few, the first and last
/// of many (a 2,000-series repr listed 36 KB of keys).
fn series_repr(series: &Bound<'_, PyAny>) -> PyResult<String> {
    const HEAD: usize = 4;
    const TAIL: usize = 2;
    let Ok(list) = series.cast::<PyList>() else {
        return Ok(series.repr()?.to_string());
    };
    let n = list.len();
    if n <= HEAD + TAIL + 1 {
        return Ok(list.repr()?.to_string());
    }
    let mut parts = Vec::with_capacity(HEAD + TAIL + 1);
    for i in 0..HEAD {
        parts.push(list.get_item(i)?.repr()?.to_string());
    }
    parts.push(format!("... {} more ...", n - HEAD - TAIL));
    for i in n - TAIL..n {
        parts.push(list.get_item(i)?.repr()?.to_string());
    }
    Ok(format!("[{}] ({n} series)", parts.join(", ")))
}
