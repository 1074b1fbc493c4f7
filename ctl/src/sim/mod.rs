//! The changefeed simulator: a seeded model, a feed that speaks CockroachDB's webhook format, and
//! a checker that compares the target with the model.

pub mod check;
pub mod feed;
pub mod model;
