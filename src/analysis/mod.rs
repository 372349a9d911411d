pub mod classifier;
pub mod cost;
pub mod cuts;
pub mod shapes;
