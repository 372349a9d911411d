//! Fresh, deterministic names for values and nodes that transforms add.

use std::collections::HashSet;

use super::Graph;

/// Hands out names not used anywhere in the graph (subgraphs included), so
/// inserted tensors never shadow or collide with the model's own.
#[derive(Debug, Clone, Default)]
pub struct NameGenerator {
    taken: HashSet<String>,
}

impl NameGenerator {
    pub fn for_graph(graph: &Graph) -> Self {
        let mut g = NameGenerator::default();
        g.reserve_graph(graph);
        g
    }

    fn reserve_graph(&mut self, graph: &Graph) {
        for v in &graph.values {
            self.taken.insert(v.name.clone());
        }
        for n in &graph.nodes {
            if !n.name.is_empty() {
                self.taken.insert(n.name.clone());
            }
            for s in &n.subgraphs {
                self.reserve_graph(&s.graph);
            }
        }
    }

    /// Claims `name` exactly; false if it is already taken.
    pub fn reserve(&mut self, name: &str) -> bool {
        self.taken.insert(name.to_string())
    }

    /// `base` if free, else `base_1`, `base_2`, ...; the result is reserved.
    pub fn fresh(&mut self, base: &str) -> String {
        let mut candidate = base.to_string();
        let mut k = 0;
        while self.taken.contains(&candidate) {
            k += 1;
            candidate = format!("{base}_{k}");
        }
        self.taken.insert(candidate.clone());
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_names_skip_taken_ones_deterministically() {
        let mut g = NameGenerator::default();
        g.taken.insert("exit".into());
        g.taken.insert("exit_1".into());
        assert_eq!(g.fresh("exit"), "exit_2");
        assert_eq!(g.fresh("exit"), "exit_3");
        assert_eq!(g.fresh("head"), "head");
    }
}
