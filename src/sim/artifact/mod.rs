//! CodeArts Artifact routes: repository list and detail, file tree, recycle-bin delete and
//! restore, storage usage and trend, and audit logs, after the vendor's API reference and the
//! SDK-derived facts.
//!
//! Seeded data: active repositories of several formats with human size strings (thousands
//! separators included), trashed repositories and trashed files inside active repositories with
//! modified times spread over months, a daily storage trend, and audit logs. Audit records are
//! computed from their position, so a log of hundreds of thousands of records costs no memory;
//! appended records (tests append while a walk runs) extend the log at its newest end.
//!
//! Checks: authentication (401), `{tenant_id}`/`{project_id}` naming this account and CodeArts
//! project (403 `CR.4102`, the documented code), the repository existing (404), then the
//! parameters (400). Times are written `yyyy-MM-dd HH:mm:ss` in UTC+8, the service's home zone.
//!
//! - `model.rs`: the data (repositories, recycle bin, audit logs) and its seed; it knows nothing
//!   of HTTP or of the simulator's shared state, which holds it.
//! - `common.rs`: the answer envelope, the documented error codes, the checks every route runs.
//! - `repos.rs`, `trash.rs`, `storage.rs`, `audit.rs`: the routes, one file per group.

pub(crate) mod audit;
pub(crate) mod common;
pub(crate) mod model;
pub(crate) mod repos;
pub(crate) mod storage;
pub(crate) mod trash;

pub use common::MAX_PAGE_SIZE;
pub use model::{art_time, human_size, DeleteResultShape, TrashEntry, FORMATS};

// The documented error bodies, which faults reuse.
pub(crate) use common::{art_error, BAD_TOKEN, NO_PERMISSION, NO_REPOSITORY, UNKNOWN_ERROR};
