//! How things read for people: GPU-equivalents, devices, container ids.
//! One place, so every command says them the same way.

use crate::inventory::{Inventory, UnitKind};
use crate::record::Record;

/// GPU-equivalents for people: 1.0, 0.5, 0.143.
pub fn gpueq_text(x: f64) -> String {
    // An empty sum is -0.0; people read 0.0.
    let x = if x == 0.0 { 0.0 } else { x };
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0');
    if s.ends_with('.') {
        format!("{s}0")
    } else {
        s.to_string()
    }
}

/// How a record's devices read: `full GPU 0`, `MIG 1g.10gb on GPU 1`.
pub fn describe(inv: &Inventory, r: &Record) -> String {
    let parts: Vec<String> = r
        .devices
        .iter()
        .map(|uuid| match inv.unit(uuid) {
            Some(u) if u.kind == UnitKind::Full => format!("full GPU {}", u.gpu.index),
            Some(u) => format!("MIG {} on GPU {}", u.profile(), u.gpu.index),
            None => uuid.clone(),
        })
        .collect();
    parts.join(", ")
}

/// Docker's short id.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
