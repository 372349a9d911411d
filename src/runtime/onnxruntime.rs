//! ONNX Runtime, the runtime users deploy to, loaded at run time from the
//! shared library the user already has: nothing is linked or downloaded at
//! build time, and a machine without it falls back on tract.
//!
//! Where the library is looked for, first found wins:
//! 1. `--ort-library PATH` (the caller's `explicit`);
//! 2. `ORT_DYLIB_PATH`, the variable the `ort` crate and its users know;
//! 3. the `onnxruntime` Python package of `EEXC_PYTHON`, else of `python3`
//!    on PATH (its wheel ships `capi/libonnxruntime.so.<version>`).
//!
//! Sessions use ONNX Runtime's default options (CPU, `ORT_ENABLE_ALL`), as
//! a deployment would; only the thread count is set, so that a measurement
//! says what it ran on.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::session::{Session, SessionInputValue};
use ort::value::Tensor;

use super::RunError;

/// The loaded library: where it came from and its version.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OrtLibrary {
    pub path: PathBuf,
    pub version: String,
}

struct Loaded {
    library: OrtLibrary,
    environment: ort::environment::Environment,
}

/// One environment per process (ONNX Runtime's rule), made on first use.
static LOADED: OnceLock<Result<Loaded, String>> = OnceLock::new();

/// Finds the ONNX Runtime library; `Err` says where it looked.
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("--ort-library {}: no such file", p.display()))
        };
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("ORT_DYLIB_PATH={}: no such file", p.display()))
        };
    }
    let pythons: Vec<PathBuf> = std::env::var_os("EEXC_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("python3")])
        .collect();
    for python in &pythons {
        if let Some(lib) = library_of_python(python) {
            return Ok(lib);
        }
    }
    Err(
        "no ONNX Runtime library found (looked at --ort-library, ORT_DYLIB_PATH, and the onnxruntime \
         Python package of EEXC_PYTHON and python3)"
            .into(),
    )
}

/// The `libonnxruntime` shipped inside `python`'s onnxruntime package.
fn library_of_python(python: &Path) -> Option<PathBuf> {
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import os, onnxruntime; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'))",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let capi = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let prefix = format!("{}onnxruntime", std::env::consts::DLL_PREFIX);
    let mut found: Vec<PathBuf> = std::fs::read_dir(&capi)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(&prefix)
                    && n[prefix.len()..].starts_with(std::env::consts::DLL_SUFFIX)
                    && !n.contains("providers")
            })
        })
        .collect();
    found.sort();
    found.pop()
}

/// Loads ONNX Runtime (once per process) and returns what was loaded.
pub fn load(explicit: Option<&Path>) -> Result<OrtLibrary, RunError> {
    let loaded = LOADED.get_or_init(|| {
        let path = find_library(explicit)?;
        let builder = ort::init_from(&path).map_err(|e| format!("loading {}: {e}", path.display()))?;
        let environment = builder
            .with_name("eexc")
            .build()
            .map_err(|e| format!("starting ONNX Runtime from {}: {e}", path.display()))?;
        Ok(Loaded {
            library: OrtLibrary {
                version: library_version(&path).unwrap_or_else(|| build_version(ort::info())),
                path,
            },
            environment,
        })
    });
    match loaded {
        Ok(l) => Ok(l.library.clone()),
        Err(e) => Err(RunError::Ort(e.clone())),
    }
}

/// ONNX Runtime's own version string, from `OrtGetApiBase()->GetVersionString()`
/// (a C ABI that ONNX Runtime keeps stable across releases; `ort` does not
/// expose it when it loads the library dynamically).
fn library_version(path: &Path) -> Option<String> {
    #[repr(C)]
    struct ApiBase {
        _get_api: unsafe extern "C" fn(u32) -> *const std::ffi::c_void,
        get_version_string: unsafe extern "C" fn() -> *const std::ffi::c_char,
    }
    // SAFETY: `path` is the ONNX Runtime library that `ort` has just loaded
    // (so this only takes another reference to it); `OrtGetApiBase` takes
    // nothing and returns a pointer to a static struct of the layout above,
    // whose version string is static and NUL-terminated. The string is
    // copied before the reference is dropped.
    unsafe {
        let lib = libloading::Library::new(path).ok()?;
        let get_base: libloading::Symbol<unsafe extern "C" fn() -> *const ApiBase> = lib.get(b"OrtGetApiBase").ok()?;
        let base = get_base();
        if base.is_null() {
            return None;
        }
        let version = ((*base).get_version_string)();
        if version.is_null() {
            return None;
        }
        Some(std::ffi::CStr::from_ptr(version).to_string_lossy().into_owned())
    }
}

/// "1.32.0" from a build string ("ORT Build Info: git-branch=rel-1.32.0, ..."),
/// else the whole string.
fn build_version(info: &str) -> String {
    info.split([',', ' '])
        .find_map(|part| part.strip_prefix("git-branch=rel-"))
        .map_or_else(|| info.to_string(), str::to_string)
}

/// A model loaded into ONNX Runtime.
pub struct OrtSession {
    session: Session,
}

/// One named input: its data and shape.
pub struct Feed<'a> {
    pub name: &'a str,
    pub shape: Vec<i64>,
    pub data: super::Elements,
}

impl<'a> Feed<'a> {
    /// A float scalar (a knob).
    pub fn scalar(name: &'a str, value: f32) -> Feed<'a> {
        Feed {
            name,
            shape: Vec::new(),
            data: super::Elements::Float(vec![value]),
        }
    }
}

/// The feeds of one batch: each of the model's data `inputs` with its part
/// of `batch` (bound in that order, [`super::Samples::bind`]).
pub fn feeds<'a>(inputs: &'a [super::DataInput], batch: &super::Batch) -> Vec<Feed<'a>> {
    inputs
        .iter()
        .zip(&batch.inputs)
        .map(|(input, part)| Feed {
            name: &input.name,
            shape: part.shape.iter().map(|&d| d as i64).collect(),
            data: part.elements.clone(),
        })
        .collect()
}

/// One output as read back.
pub enum Fetched {
    Float(Vec<f32>),
    Int(Vec<i64>),
}

impl Fetched {
    pub fn as_f32(&self) -> Vec<f32> {
        match self {
            Fetched::Float(v) => v.clone(),
            Fetched::Int(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    pub fn first_i64(&self) -> Option<i64> {
        match self {
            Fetched::Float(v) => v.first().map(|&x| x as i64),
            Fetched::Int(v) => v.first().copied(),
        }
    }
}

impl OrtSession {
    /// A session with default options and `threads` intra-op threads.
    pub fn open(model: &Path, threads: usize, explicit_library: Option<&Path>) -> Result<OrtSession, RunError> {
        load(explicit_library)?;
        let Some(Ok(loaded)) = LOADED.get() else {
            return Err(RunError::Ort("not loaded".into()));
        };
        let fail = |e: &dyn std::fmt::Display| RunError::Model {
            path: model.to_path_buf(),
            reason: e.to_string(),
        };
        let session = Session::builder(&loaded.environment)
            .map_err(|e| fail(&e))?
            .with_intra_threads(threads)
            .map_err(|e| fail(&e))?
            .commit_from_file(model)
            .map_err(|e| fail(&e))?;
        Ok(OrtSession { session })
    }

    /// Runs once; returns `outputs` (by name, in that order). The feeds'
    /// data moves into the input tensors: nothing is copied on the way in.
    pub fn run(&mut self, feeds: Vec<Feed>, outputs: &[String]) -> Result<Vec<Fetched>, RunError> {
        let fail = |e: ort::Error| RunError::Ort(e.to_string());
        let mut inputs: Vec<(std::borrow::Cow<'_, str>, SessionInputValue<'_>)> = Vec::with_capacity(feeds.len());
        for f in feeds {
            let value: SessionInputValue<'_> = match f.data {
                super::Elements::Float(data) => Tensor::from_array((f.shape, data)).map_err(fail)?.into(),
                super::Elements::Int(data) => Tensor::from_array((f.shape, data)).map_err(fail)?.into(),
            };
            inputs.push((f.name.into(), value));
        }
        let result = self.session.run(inputs).map_err(fail)?;
        outputs
            .iter()
            .map(|name| {
                let v = result
                    .get(name)
                    .ok_or_else(|| RunError::Ort(format!("no output '{name}'")))?;
                if let Ok((_, data)) = v.try_extract_tensor::<f32>() {
                    Ok(Fetched::Float(data.to_vec()))
                } else {
                    let (_, data) = v
                        .try_extract_tensor::<i64>()
                        .map_err(|e| RunError::Ort(format!("output '{name}': {e}")))?;
                    Ok(Fetched::Int(data.to_vec()))
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_from_build_info() {
        assert_eq!(
            build_version("ORT Build Info: git-branch=rel-1.32.0, git-commit-id=abc, build type=Release"),
            "1.32.0"
        );
        assert_eq!(build_version("something else"), "something else");
    }

    #[test]
    fn explicit_library_must_exist() {
        let e = find_library(Some(Path::new("/no/such/libonnxruntime.so"))).unwrap_err();
        assert!(e.contains("/no/such/libonnxruntime.so"), "{e}");
    }
}
