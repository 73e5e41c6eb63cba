//! The Ottofile language: lexer, parser, diagnostics, expansion, conventions and the planner.
//!
//! This crate is pure: it reads files only through the [`source::Source`] trait, does no
//! network I/O and needs no async runtime.

pub mod ast;
pub mod conventions;
pub mod diagnostic;
pub mod explain;
pub mod lexer;
pub mod parser;
pub mod plan;
pub mod planner;
pub mod render;
pub mod source;
pub mod span;
pub mod steps;

pub use parser::parse;
pub use plan::Plan;
pub use planner::{
    Convention, Facts, Failed, Libraries, LibraryPin, Planned, plan, plan_text, plan_with_libraries,
};
pub use source::{EntryKind, FsSource, MemSource, Source, SourceError};
pub use steps::{StepCatalog, StepSpec};
