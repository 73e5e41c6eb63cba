//! The Ottofile language: lexer, parser, diagnostics, expansion, conventions and the planner.
//!
//! This crate is pure: it reads files only through the [`source::Source`] trait, does no
//! network I/O and needs no async runtime.

pub mod ast;
pub mod diagnostic;
pub mod span;
