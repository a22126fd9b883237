//! `chunkstream`, the command-line client: shares a local MP4/MOV as a streaming
//! link at once and uploads it through presigned URLs, as the web page does.
//!
//! `source` reads the file's structure (sizes checked in `boxes`, tables parsed by
//! the `mp4` crate), `planner` cuts it into keyframe-aligned slots with the page's
//! rules, `fragment`/`init`/`segment` write the fMP4 bytes, `api` talks to the
//! server, `upload` runs the priority-aware upload loop, `resume` keeps sessions
//! across runs, `report` shows progress, `commands` ties them together;
//! `videos` lists, deletes and keeps the owner's videos; `track_names` names the
//! audio tracks for players' menus.

pub mod api;
pub mod boxes;
pub mod codec;
pub mod commands;
pub mod error;
pub mod fragment;
pub mod init;
pub mod planner;
pub mod report;
pub mod report_batch;
pub mod request;
pub mod resume;
pub mod segment;
pub mod source;
pub mod track_names;
pub mod upload;
pub mod videos;
pub mod wake;
