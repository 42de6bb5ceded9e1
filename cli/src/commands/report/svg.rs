//! The report's state diagram, as inline SVG: every state of the policy, every transition
//! it allows (grey; dashed amber where a confidence gate may send a run to review), and
//! the path the run took, drawn over them and numbered in order.
//!
//! The picture is deterministic (the same policy and path give the same bytes) and no
//! text overlaps: states are layered left to right by their longest path from the
//! initial state (edges that close a cycle are reversed for layering only), an edge that
//! spans layers is routed through a lane of its own in each layer between, so that no
//! edge crosses a state, and each layer is ordered by a few barycentre sweeps. Every name
//! drawn is escaped.

use std::collections::BTreeMap;
use std::fmt::{self, Write};

use warden::{Policy, StateKind};

use super::html::{Esc, columns};

/// Height of a state's box.
const NODE_H: f64 = 42.0;
/// Vertical room of a state in its layer (the box, a self-loop and its badge).
const NODE_SLOT: f64 = 80.0;
/// Vertical room of an edge passing through a layer.
const LANE_SLOT: f64 = 20.0;
/// Horizontal gap between layers, where edges bend and badges sit.
const COL_GAP: f64 = 70.0;
const MARGIN: f64 = 16.0;
/// Advance of one character of a state's name (13 px monospace) and of its caption (10 px).
const NAME_CHAR: f64 = 7.9;
const CAPTION_CHAR: f64 = 6.1;
const PAD: f64 = 14.0;
const MIN_W: f64 = 84.0;
const SWEEPS: usize = 6;

/// What the run did, for the diagram.
#[derive(Debug)]
pub(crate) struct Path<'a> {
    /// The state the run started in.
    pub initial: &'a str,
    /// Every transition, in order: (from, to).
    pub moves: Vec<(&'a str, &'a str)>,
    /// The state the run stands in.
    pub current: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Working,
    Review,
    Terminal,
    /// Named by the run's records but not a state of the policy (or no policy).
    Unknown,
}

#[derive(Debug)]
struct Node {
    name: String,
    caption: String,
    kind: Kind,
    gated: bool,
    visited: bool,
    current: bool,
    width: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Declared,
    /// From a state that may ask for a gated state to the gate's review state.
    Gate,
    /// Taken by the run but not declared (only a journal at odds with its policy).
    Undeclared,
}

#[derive(Debug)]
struct Edge {
    from: usize,
    to: usize,
    style: Style,
    /// The numbers of the path's moves along this edge.
    taken: Vec<usize>,
}

#[derive(Debug)]
struct Graph {
    nodes: Vec<Node>,
    edges: Vec<Edge>,
    initial: usize,
}

impl Graph {
    fn new(policy: Option<&Policy>, path: &Path<'_>) -> Graph {
        let mut graph = Graph {
            nodes: Vec::new(),
            edges: Vec::new(),
            initial: 0,
        };
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        if let Some(policy) = policy {
            for (name, state) in &policy.states {
                let kind = match state.kind {
                    StateKind::Working => Kind::Working,
                    StateKind::Review => Kind::Review,
                    StateKind::Terminal => Kind::Terminal,
                };
                graph.node(&mut index, name, kind, policy.gate(name).is_some());
            }
        }
        graph.initial = graph.node(&mut index, path.initial, Kind::Unknown, false);
        for (from, to) in &path.moves {
            graph.node(&mut index, from, Kind::Unknown, false);
            graph.node(&mut index, to, Kind::Unknown, false);
        }
        if let Some(policy) = policy {
            for (name, state) in &policy.states {
                for to in &state.transitions {
                    graph.edge(&index, name, to, Style::Declared);
                }
            }
            // A reviewer's decision is not gated: only working states escalate.
            for gate in &policy.gates {
                for (name, state) in &policy.states {
                    if state.kind == StateKind::Working
                        && state.transitions.contains(&gate.to)
                        && *name != gate.otherwise
                    {
                        graph.edge(&index, name, &gate.otherwise, Style::Gate);
                    }
                }
            }
        }
        for (number, (from, to)) in path.moves.iter().enumerate() {
            if let Some(edge) = graph.edge(&index, from, to, Style::Undeclared) {
                graph.edges[edge].taken.push(number + 1);
            }
        }
        for (i, node) in graph.nodes.iter_mut().enumerate() {
            node.visited = i == graph.initial
                || path
                    .moves
                    .iter()
                    .any(|(from, to)| *from == node.name || *to == node.name);
            node.current = node.name == path.current;
            let mut caption = Vec::new();
            if i == graph.initial {
                caption.push("initial");
            }
            caption.push(match node.kind {
                Kind::Working => "",
                Kind::Review => "review",
                Kind::Terminal => "terminal",
                Kind::Unknown => "not in the policy",
            });
            if node.gated {
                caption.push("gated");
            }
            caption.retain(|c| !c.is_empty());
            node.caption = caption.join(" \u{b7} ");
            let name = columns(&node.name) as f64 * NAME_CHAR;
            let caption = columns(&node.caption) as f64 * CAPTION_CHAR;
            node.width = (name.max(caption) + 2.0 * PAD).max(MIN_W);
        }
        graph
    }

    /// The node named `name`, added if new.
    fn node(
        &mut self,
        index: &mut BTreeMap<String, usize>,
        name: &str,
        kind: Kind,
        gated: bool,
    ) -> usize {
        if let Some(&i) = index.get(name) {
            return i;
        }
        self.nodes.push(Node {
            name: name.to_string(),
            caption: String::new(),
            kind,
            gated,
            visited: false,
            current: false,
            width: MIN_W,
        });
        index.insert(name.to_string(), self.nodes.len() - 1);
        self.nodes.len() - 1
    }

    /// The edge `from -> to`, added with `style` if new.
    fn edge(
        &mut self,
        index: &BTreeMap<String, usize>,
        from: &str,
        to: &str,
        style: Style,
    ) -> Option<usize> {
        let (&from, &to) = (index.get(from)?, index.get(to)?);
        if let Some(i) = self.edges.iter().position(|e| e.from == from && e.to == to) {
            return Some(i);
        }
        self.edges.push(Edge {
            from,
            to,
            style,
            taken: Vec::new(),
        });
        Some(self.edges.len() - 1)
    }
}

/// Where a state or a lane is drawn.
#[derive(Debug, Clone, Copy, Default)]
struct Place {
    x: f64,
    y: f64,
    /// Half the width of the state's box (of the column, for a lane).
    half: f64,
    /// Half the width of its column: edges bend only between columns.
    column: f64,
}

/// Where everything is drawn.
#[derive(Debug)]
struct Layout {
    /// Per item: nodes first, then lanes.
    items: Vec<Place>,
    /// Per edge: its items from the lower layer to the higher, and whether that is
    /// against the edge's direction. Empty for a self-loop.
    chains: Vec<(Vec<usize>, bool)>,
    width: f64,
    height: f64,
}

/// Layers by longest path from the initial state; edges that close a cycle reversed.
fn layers(graph: &Graph) -> (Vec<usize>, Vec<bool>) {
    let n = graph.nodes.len();
    let mut out: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
    for (e, edge) in graph.edges.iter().enumerate() {
        if edge.from != edge.to {
            out[edge.from].push((edge.to, e));
        }
    }
    for targets in &mut out {
        targets.sort_unstable();
    }
    // Depth-first from the initial state, then from every other state: an edge into a
    // state on the stack closes a cycle.
    let mut reversed = vec![false; graph.edges.len()];
    let mut color = vec![0u8; n];
    let roots = std::iter::once(graph.initial).chain(0..n);
    for root in roots {
        if color[root] != 0 {
            continue;
        }
        color[root] = 1;
        let mut stack = vec![(root, 0usize)];
        while let Some(&(node, next)) = stack.last() {
            match out[node].get(next) {
                Some(&(to, e)) => {
                    if let Some(top) = stack.last_mut() {
                        top.1 += 1;
                    }
                    match color[to] {
                        0 => {
                            color[to] = 1;
                            stack.push((to, 0));
                        }
                        1 => reversed[e] = true,
                        _ => {}
                    }
                }
                None => {
                    color[node] = 2;
                    stack.pop();
                }
            }
        }
    }
    // Longest path over the acyclic orientation (Kahn, lowest index first).
    let mut indegree = vec![0usize; n];
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (e, edge) in graph.edges.iter().enumerate() {
        if edge.from == edge.to {
            continue;
        }
        let (a, b) = if reversed[e] {
            (edge.to, edge.from)
        } else {
            (edge.from, edge.to)
        };
        succ[a].push(b);
        indegree[b] += 1;
    }
    let mut layer = vec![0usize; n];
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| indegree[i] == 0).collect();
    while let Some(a) = ready.pop_first() {
        for &b in &succ[a] {
            layer[b] = layer[b].max(layer[a] + 1);
            indegree[b] -= 1;
            if indegree[b] == 0 {
                ready.insert(b);
            }
        }
    }
    // Outcomes line up on the right.
    let last = layer.iter().copied().max().unwrap_or(0);
    for (i, node) in graph.nodes.iter().enumerate() {
        if node.kind == Kind::Terminal && succ[i].is_empty() {
            layer[i] = last;
        }
    }
    (layer, reversed)
}

fn layout(graph: &Graph) -> Layout {
    let (layer_of, reversed) = layers(graph);
    let depth = layer_of.iter().copied().max().map_or(1, |m| m + 1);
    // Items: every node, then one lane per layer an edge passes through.
    let mut item_layer: Vec<usize> = layer_of.clone();
    let mut chains = Vec::with_capacity(graph.edges.len());
    for (e, edge) in graph.edges.iter().enumerate() {
        if edge.from == edge.to {
            chains.push((Vec::new(), false));
            continue;
        }
        let (a, b) = if reversed[e] {
            (edge.to, edge.from)
        } else {
            (edge.from, edge.to)
        };
        let mut chain = vec![a];
        for l in layer_of[a] + 1..layer_of[b] {
            item_layer.push(l);
            chain.push(item_layer.len() - 1);
        }
        chain.push(b);
        chains.push((chain, reversed[e]));
    }
    let nodes = graph.nodes.len();
    // Initial order: states in depth-first discovery order (by index here, the
    // initial state first), lanes after them in edge order.
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); depth];
    let mut order: Vec<usize> = (0..item_layer.len()).collect();
    order.sort_by_key(|&i| (i >= nodes, i != graph.initial, i));
    for i in order {
        rows[item_layer[i]].push(i);
    }
    let segments: Vec<(usize, usize)> = chains
        .iter()
        .flat_map(|(chain, _)| chain.windows(2).map(|w| (w[0], w[1])))
        .collect();
    let mut position = vec![0.0f64; item_layer.len()];
    let place = |rows: &Vec<Vec<usize>>, position: &mut Vec<f64>| {
        for row in rows {
            for (p, &item) in row.iter().enumerate() {
                position[item] = p as f64;
            }
        }
    };
    place(&rows, &mut position);
    for sweep in 0..SWEEPS {
        let down = sweep % 2 == 0;
        let order: Vec<usize> = if down {
            (1..depth).collect()
        } else {
            (0..depth.saturating_sub(1)).rev().collect()
        };
        for l in order {
            let mut keyed: Vec<(f64, usize)> = rows[l]
                .iter()
                .map(|&item| {
                    let neighbours: Vec<f64> = segments
                        .iter()
                        .filter_map(|&(a, b)| match (down, a == item, b == item) {
                            (true, _, true) => Some(position[a]),
                            (false, true, _) => Some(position[b]),
                            _ => None,
                        })
                        .collect();
                    let key = if neighbours.is_empty() {
                        position[item]
                    } else {
                        neighbours.iter().sum::<f64>() / neighbours.len() as f64
                    };
                    (key, item)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
            rows[l] = keyed.into_iter().map(|(_, item)| item).collect();
            place(&rows, &mut position);
        }
    }
    // Coordinates: columns as wide as their widest state, rows centred vertically.
    let slot = |item: usize| if item < nodes { NODE_SLOT } else { LANE_SLOT };
    let col_width: Vec<f64> = rows
        .iter()
        .map(|row| {
            row.iter()
                .filter(|&&i| i < nodes)
                .map(|&i| graph.nodes[i].width)
                .fold(24.0, f64::max)
        })
        .collect();
    let tallest = rows
        .iter()
        .map(|row| row.iter().map(|&i| slot(i)).sum::<f64>())
        .fold(0.0, f64::max);
    let mut items = vec![Place::default(); item_layer.len()];
    let mut x = MARGIN;
    for (row, width) in rows.iter().zip(&col_width) {
        let total: f64 = row.iter().map(|&i| slot(i)).sum();
        let mut y = MARGIN + (tallest - total) / 2.0;
        for &item in row {
            let half = if item < nodes {
                graph.nodes[item].width / 2.0
            } else {
                width / 2.0
            };
            items[item] = Place {
                x: x + width / 2.0,
                y: y + slot(item) / 2.0,
                half,
                column: width / 2.0,
            };
            y += slot(item);
        }
        x += width + COL_GAP;
    }
    Layout {
        items,
        chains,
        width: x - COL_GAP + MARGIN,
        height: tallest + 2.0 * MARGIN,
    }
}

/// The SVG path of an edge through its chain of items, and the midpoint of the curve
/// next to the edge's source (where its badge goes).
fn route(layout: &Layout, chain: &[usize], reversed: bool) -> (String, (f64, f64)) {
    let mut d = String::new();
    let mut mid = (0.0, 0.0);
    let segments = chain.len().saturating_sub(1);
    for (k, pair) in chain.windows(2).enumerate() {
        let (a, b) = (layout.items[pair[0]], layout.items[pair[1]]);
        let (x0, x1) = (a.x + a.column, b.x - b.column);
        if k == 0 {
            let _ = write!(d, "M{:.1},{:.1} L{x0:.1},{:.1}", a.x + a.half, a.y, a.y);
        }
        // Straight out of the column, a curve across the gap, straight on: no bend
        // passes a state's box.
        let c = (x1 - x0) / 2.0;
        let _ = write!(
            d,
            " C{:.1},{:.1} {:.1},{:.1} {x1:.1},{:.1} L{:.1},{:.1}",
            x0 + c,
            a.y,
            x1 - c,
            b.y,
            b.y,
            b.x + if k + 1 < segments { b.half } else { -b.half },
            b.y
        );
        if (!reversed && k == 0) || (reversed && k + 1 == segments) {
            mid = ((x0 + x1) / 2.0, (a.y + b.y) / 2.0);
        }
    }
    (d, mid)
}

/// An arrowhead at `(x, y)`, pointing right (`dir` 1) or left (-1).
fn arrow(out: &mut String, x: f64, y: f64, dir: f64, class: &str) -> fmt::Result {
    write!(
        out,
        "<path class=\"{class} head\" d=\"M{x:.1},{y:.1} L{:.1},{:.1} L{:.1},{:.1} Z\"/>",
        x - 9.0 * dir,
        y - 4.5,
        x - 9.0 * dir,
        y + 4.5
    )
}

/// A badge with the numbers of the moves along an edge.
fn badge(out: &mut String, (x, y): (f64, f64), taken: &[usize]) -> fmt::Result {
    let text = taken
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let w = (text.len() as f64 * 7.0 + 10.0).max(19.0);
    write!(
        out,
        "<rect class=\"badge\" x=\"{:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"19\" rx=\"9.5\"/>\
         <text class=\"badge-text\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{text}</text>",
        x - w / 2.0,
        y - 9.5,
        y + 4.0
    )
}

/// Writes the diagram of `policy` (or, without one, of the states the path names) with
/// `path` drawn over it.
pub(crate) fn diagram(out: &mut String, policy: Option<&Policy>, path: &Path<'_>) -> fmt::Result {
    let graph = Graph::new(policy, path);
    let layout = layout(&graph);
    let route_names: Vec<&str> = std::iter::once(path.initial)
        .chain(path.moves.iter().map(|(_, to)| *to))
        .collect();
    write!(
        out,
        "<svg class=\"states\" role=\"img\" aria-labelledby=\"diagram-title\" viewBox=\"0 0 {w:.0} {h:.0}\" width=\"{w:.0}\" height=\"{h:.0}\">\
         <title id=\"diagram-title\">State diagram of the policy; the run's path: {}</title>",
        Esc(&route_names.join(" \u{2192} ")),
        w = layout.width,
        h = layout.height
    )?;
    // Allowed transitions first, the path over them, states and badges on top.
    for taken in [false, true] {
        for (e, edge) in graph.edges.iter().enumerate() {
            if edge.taken.is_empty() == taken {
                continue;
            }
            let class = match (taken, edge.style) {
                (true, _) => "edge taken",
                (false, Style::Gate) => "edge gate",
                (false, _) => "edge",
            };
            let (chain, reversed) = &layout.chains[e];
            if chain.is_empty() {
                self_loop(out, &layout, edge.from, class)?;
                continue;
            }
            let (d, _) = route(&layout, chain, *reversed);
            write!(out, "<path class=\"{class}\" d=\"{d}\"/>")?;
            let (tip, dir) = if *reversed {
                (chain[0], -1.0)
            } else {
                (chain[chain.len() - 1], 1.0)
            };
            let place = layout.items[tip];
            arrow(out, place.x - place.half * dir, place.y, dir, class)?;
        }
    }
    for (i, node) in graph.nodes.iter().enumerate() {
        node_svg(out, node, layout.items[i])?;
    }
    for (e, edge) in graph.edges.iter().enumerate() {
        if edge.taken.is_empty() {
            continue;
        }
        let (chain, reversed) = &layout.chains[e];
        let at = if chain.is_empty() {
            let place = layout.items[edge.from];
            (place.x, place.y - NODE_H / 2.0 - 20.0)
        } else {
            route(&layout, chain, *reversed).1
        };
        badge(out, at, &edge.taken)?;
    }
    out.push_str("</svg>");
    Ok(())
}

fn self_loop(out: &mut String, layout: &Layout, node: usize, class: &str) -> fmt::Result {
    let Place { x, y, .. } = layout.items[node];
    let top = y - NODE_H / 2.0;
    write!(
        out,
        "<path class=\"{class}\" d=\"M{:.1},{top:.1} C{:.1},{:.1} {:.1},{:.1} {:.1},{top:.1}\"/>",
        x - 14.0,
        x - 30.0,
        top - 30.0,
        x + 30.0,
        top - 30.0,
        x + 14.0
    )?;
    write!(
        out,
        "<path class=\"{class} head\" d=\"M{:.1},{top:.1} L{:.1},{:.1} L{:.1},{:.1} Z\"/>",
        x + 14.0,
        x + 12.0,
        top - 9.0,
        x + 20.0,
        top - 7.0
    )
}

fn node_svg(out: &mut String, node: &Node, Place { x, y, half, .. }: Place) -> fmt::Result {
    let mut class = String::from(match node.kind {
        Kind::Working => "node",
        Kind::Review => "node review",
        Kind::Terminal => "node terminal",
        Kind::Unknown => "node unknown",
    });
    if node.visited {
        class.push_str(" visited");
    }
    if node.current {
        class.push_str(" current");
    }
    let rx = if node.kind == Kind::Terminal {
        NODE_H / 2.0
    } else {
        4.0
    };
    write!(
        out,
        "<g class=\"{class}\"><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{NODE_H}\" rx=\"{rx}\"/>",
        x - half,
        y - NODE_H / 2.0,
        2.0 * half
    )?;
    if node.caption.is_empty() {
        write!(
            out,
            "<text class=\"name\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            y + 4.5,
            Esc(&node.name)
        )?;
    } else {
        write!(
            out,
            "<text class=\"name\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
             <text class=\"caption\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            y - 1.5,
            Esc(&node.name),
            y + 12.5,
            Esc(&node.caption)
        )?;
    }
    out.push_str("</g>");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
[policy]
name = "p"
version = "1"
initial = "start"

[capabilities]
models = ["risk"]

[states.start]
models = ["risk"]
transitions = ["start", "working", "approved", "done"]

[states.working]
transitions = ["start", "done"]

[states.approved]
terminal = true

[states.done]
terminal = true

[states.review]
review = true
transitions = ["approved", "done"]

[states.review.decisions.approved]
roles = ["approver"]

[states.review.decisions.done]
roles = ["approver"]

[[gates]]
to = "approved"
model = "risk"
label = "safe"
min_confidence = 0.9
otherwise = "review"
require_reconciled = false
"#;

    fn draw(moves: Vec<(&str, &str)>) -> String {
        let policy = Policy::parse(POLICY, "test").expect("policy");
        let mut out = String::new();
        let current = moves.last().map_or("start", |(_, to)| *to);
        diagram(
            &mut out,
            Some(&policy),
            &Path {
                initial: "start",
                moves,
                current,
            },
        )
        .expect("draws");
        out
    }

    #[test]
    fn same_policy_and_path_same_picture() {
        let moves = vec![("start", "start"), ("start", "review"), ("review", "done")];
        assert_eq!(draw(moves.clone()), draw(moves));
    }

    #[test]
    fn every_state_is_drawn_and_the_path_numbered() {
        let svg = draw(vec![
            ("start", "working"),
            ("working", "start"),
            ("start", "review"),
            ("review", "approved"),
        ]);
        for state in ["start", "working", "approved", "done", "review"] {
            assert!(svg.contains(&format!(">{state}</text>")), "{state}: {svg}");
        }
        for number in 1..=4 {
            assert!(svg.contains(&format!(">{number}</text>")), "{number}");
        }
        assert!(
            draw(Vec::new()).contains("edge gate"),
            "the gate's escalation edge, where the path does not take it"
        );
        assert!(svg.contains("node terminal visited current"));
    }

    #[test]
    fn states_in_one_layer_do_not_overlap() {
        let policy = Policy::parse(POLICY, "test").expect("policy");
        let path = Path {
            initial: "start",
            moves: Vec::new(),
            current: "start",
        };
        let graph = Graph::new(Some(&policy), &path);
        let layout = layout(&graph);
        let boxes = &layout.items[..graph.nodes.len()];
        for (i, a) in boxes.iter().enumerate() {
            for b in &boxes[i + 1..] {
                let apart_x = (a.x - b.x).abs() >= a.half + b.half;
                let apart_y = (a.y - b.y).abs() >= NODE_H;
                assert!(apart_x || apart_y, "{a:?} overlaps {b:?}");
            }
        }
    }
}
