//! Ingest: text from collectors, parsed into store ops.
//!
//! Today that is InfluxDB line protocol in cc-backend's dialect
//! (`lineproto.rs`). A call's accepted lines become one `WritePoints` op,
//! so they are logged and applied as one; a bad line is reported, never
//! fatal to the others.
//!
//! Uses: `store/` (its public API), `memory/` (series handles), `model/`.

pub(crate) mod lineproto;

pub use lineproto::{IngestReport, Ingester};
