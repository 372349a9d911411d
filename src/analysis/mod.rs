pub mod classifier;
pub mod cost;
pub mod cuts;
pub mod shapes;

use crate::ir::{DimError, DimValues, Model};

/// Infers `model`'s shapes and gives each of its symbols a value (`given`
/// from `--dim`, else the model's declarations): what every step that counts
/// costs starts from.
pub fn infer_for_costs(
    model: &mut Model,
    given: &[(String, u64)],
) -> Result<(shapes::ShapeReport, DimValues), DimError> {
    let report = shapes::infer_model(model);
    let dims = DimValues::bind(&model.graph, given, &report.declared_dims)?;
    Ok((report, dims))
}
