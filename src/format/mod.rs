//! The on-disk formats, as pure encoders, decoders and walks over bytes (no
//! I/O here): record frames, segment headers and names, subscribers-log
//! records. docs/format.md documents every byte.

pub(crate) mod catalog;
pub(crate) mod dead_letter;
pub(crate) mod frame;
pub(crate) mod queue_meta;
pub(crate) mod segment;
pub(crate) mod sublog;

pub use segment::SEGMENT_HEADER_LEN;
