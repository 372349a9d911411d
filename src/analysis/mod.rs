pub mod cost;
pub mod cuts;
pub mod shapes;
