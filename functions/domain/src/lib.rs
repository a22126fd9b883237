//! Chunkstream's domain logic, free of AWS and HTTP: the segment plan a client
//! proposes and its validation, the per-slot state machine, the scheduler policy
//! that orders uploads (priority windows first), the DASH manifest and HLS
//! playlists, and the bounded fragmented-MP4 checks the worker runs on untrusted segments.

pub mod fmp4;
pub mod hls;
pub mod init_check;
pub mod manifest;
pub mod plan;
pub mod previews;
pub mod published;
pub mod scheduler;
pub mod segment_check;
pub mod slot_runs;
pub mod state;
pub mod windows;
