//! eexc: an early-exit compiler for ONNX classifiers.
//!
//! Stages, one module each: [`onnx`] reads and writes model files, [`ir`] is the
//! graph the analyses work on, [`analysis`] infers shapes, costs and exit-point
//! candidates, [`report`] turns results into tables and JSON.

pub mod analysis;
pub mod calibrate;
pub mod cli;
pub mod compile;
mod error;
pub mod eval;
pub mod exits;
pub mod fit;
pub mod fuse;
pub mod ir;
pub mod numeric;
pub mod onnx;
pub mod report;
pub mod runtime;
pub mod transform;

pub use error::Error;
