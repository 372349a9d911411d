//! Reports: what the commands print, as text tables and versioned JSON.

pub mod inspect;
pub mod plot;
pub mod summary;
pub mod table;
