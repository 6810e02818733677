//! The sizes and positions of the segment file format (docs/FORMAT.md), in
//! a module that imports nothing, so that configuration, segments and
//! indexes can all depend on it without depending on each other.

/// Length of a segment file's header proper.
pub const HEADER_LEN: usize = 64;
/// File position of a segment's checkpoint (right after the header).
pub const CHECKPOINT_POS: usize = 64;
/// Length of the checkpoint.
pub const CHECKPOINT_LEN: usize = 16;
/// File position of the first record of every segment: after the header,
/// the checkpoint and 48 reserved bytes.
pub const DATA_START: usize = 128;
/// Length of a segment footer.
pub const FOOTER_LEN: usize = 64;
/// The segment format version this build writes: its records are batch frames.
pub const FORMAT_VERSION: u16 = 2;
/// The oldest segment format version this build reads (v1 record frames).
pub const MIN_FORMAT_VERSION: u16 = 1;
